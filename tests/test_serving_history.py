"""The /serving/ page shows each endpoint's history: newest first, local time with UTC on hover, config, who."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from deployments.models import Endpoint, EndpointConfig, EndpointEvent, EndpointOperation, ProductionVariant
from deployments.services import config_snapshot, event_record
from forecasts.models import TrainedModel

pytestmark = pytest.mark.django_db


def at(event_message: str, when) -> None:
    """Move the history line with that message to when (lines made in one test are microseconds apart)."""
    assert EndpointEvent.objects.filter(message=event_message).update(at=when) == 1


def config_at(config: EndpointConfig, when) -> None:
    EndpointConfig.objects.filter(pk=config.pk).update(created_at=when)


@pytest.fixture
def history(django_user_model):
    """Endpoint air: alice's deploy applied a config, then the command line's, then a status change by none."""
    alice = django_user_model.objects.create_user("alice", is_staff=True)
    model = TrainedModel.objects.create(name="deepar-a", metric="ozone", artifact_key="models/a/model.tar.gz")
    endpoint = Endpoint.objects.create(name="air", status="InService")
    ProductionVariant.objects.create(endpoint=endpoint, name="AllTraffic", model=model)
    start = timezone.now() - timedelta(hours=2)
    by_alice = EndpointOperation.objects.create(kind="deploy", endpoint_name="air", requested_by=alice)
    event_record("air", "variant AllTraffic -> model deepar-a, weight 1")
    first = config_snapshot(endpoint)
    event_record("air", f"applied config {first.name}", "InService")
    EndpointOperation.objects.filter(pk=by_alice.pk).update(created_at=start, finished_at=start + timedelta(minutes=5))
    config_at(first, start + timedelta(minutes=2))
    at("variant AllTraffic -> model deepar-a, weight 1", start + timedelta(minutes=1))
    at(f"applied config {first.name}", start + timedelta(minutes=2))

    cli = EndpointOperation.objects.create(kind="update_weights", endpoint_name="air")
    second = config_snapshot(endpoint)
    event_record("air", "UpdateEndpointWeightsAndCapacities", "Updating")
    EndpointOperation.objects.filter(pk=cli.pk).update(
        created_at=start + timedelta(minutes=30), finished_at=start + timedelta(minutes=35)
    )
    config_at(second, start + timedelta(minutes=31))
    at("UpdateEndpointWeightsAndCapacities", start + timedelta(minutes=32))
    event_record("air", "status InService", "InService")
    at("status InService", start + timedelta(minutes=50))
    return {"first": first.name, "second": second.name, "start": start}


def test_the_serving_page_lists_the_history_newest_first_with_config_and_who(client, history, django_user_model):
    client.force_login(django_user_model.objects.create_user("op"))
    page = client.get("/serving/").content.decode()
    lines = re.findall(r'<li><span class="history-when">(.*?)</li>', page, re.S)
    assert len(lines) == 4, page
    messages = ["status InService", "UpdateEndpointWeightsAndCapacities", f"applied config {history['first']}",
                "variant AllTraffic -&gt; model deepar-a, weight 1"]  # fmt: skip
    for line, message in zip(lines, messages, strict=True):
        assert message in line
    # who: nobody's operation (system), the command line's (no user), alice's through the API
    assert [re.search(r"by ([\w ]+)</span>", line).group(1) for line in lines] == [
        "system", "command line", "alice", "alice"
    ]  # fmt: skip
    assert f"config <code>{history['second']}</code>" in lines[0] and f"<code>{history['first']}</code>" in lines[2]
    assert "config <code>" not in lines[3]  # before the first config was applied
    # a <time> in UTC that dashboard.js turns into the viewer's zone, keeping UTC in its title
    stamp = (history["start"] + timedelta(minutes=50)).strftime("%Y-%m-%d %H:%M:%S")
    time_tag = re.search(r'<time class="ts" datetime="([^"]+)" title="([^"]+)">', lines[0])
    assert time_tag and time_tag.group(2) == f"{stamp} UTC" and time_tag.group(1).startswith(stamp.replace(" ", "T"))
    assert "dashboard/dashboard.js" in page and "deployments/serving.js" in page


def test_an_endpoint_without_history_says_so(client, django_user_model):
    Endpoint.objects.create(name="quiet", status="InService")
    client.force_login(django_user_model.objects.create_user("op"))
    page = client.get("/serving/").content.decode()
    assert "No history yet." in page and 'data-role="shadow"' not in page


def test_the_endpoint_detail_api_returns_the_same_history(history, django_user_model):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=django_user_model.objects.get()).key}")
    lines = api.get("/api/v1/endpoints/air").json()["history"]
    assert [(line["actor"], line["config"]) for line in lines] == [
        ("system", history["second"]), ("command line", history["second"]), ("alice", history["first"]),
        ("alice", ""),
    ]  # fmt: skip
