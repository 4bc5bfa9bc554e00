"""The operator's dashboard: pages, the JSON views their scripts poll, and starting pipeline steps."""

from __future__ import annotations

import gzip
import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from dashboard.templatetags.dashboard_tags import duration, measure, summary, when
from devices.models import Device, DeviceCertificate
from devices.services import device_seen_update
from forecasts.models import CatalogTable, PipelineRun

pytestmark = pytest.mark.django_db
PAGES = ["overview", "devices", "pipeline", "forecasts"]
NO_READINGS = "No readings yet"


@pytest.fixture
def user():
    return get_user_model().objects.create_user("operator", password="pw-operator")


@pytest.fixture
def staff():
    return get_user_model().objects.create_user("lead", password="pw-lead", is_staff=True)


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def device():
    device = Device.objects.create(name="aq-test-01", latitude=56.2, longitude=10.25)
    DeviceCertificate.objects.create(
        device=device,
        certificate_id="cert-0001",
        fingerprint="AB:CD:EF:01:23:45",
        certificate_pem="-----BEGIN CERTIFICATE-----\n...",
        not_after=timezone.now() + timedelta(days=365),
    )
    return device


def write_raw(lake, device_name: str, times: list[datetime], ozone_start: float = 40.0, live: bool = True) -> None:
    """Write one Firehose-style raw object holding one reading per time (all in the first time's hour).

    live: then record the newest reading in the registry as the ingest does after a durable object
    (devices.services.device_seen_update); False is history written to the lake by an import.
    """
    first = times[0].astimezone(UTC)
    key = (
        f"raw/year={first:%Y}/month={first:%m}/day={first:%d}/hour={first:%H}/"
        f"iotcast-telemetry-1-{first:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}"
    )
    lines = []
    for index, moment in enumerate(times):
        stamp = moment.astimezone(UTC)
        lines.append(
            json.dumps(
                {
                    "message_id": str(uuid.uuid4()),
                    "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z",
                    "ozone": ozone_start + index,
                    "particulate_matter": 12.0,
                    "carbon_monoxide": 0.4,
                    "sulfur_dioxide": 3.0,
                    "nitrogen_dioxide": 20.0,
                    "latitude": 56.2,
                    "longitude": 10.25,
                    "device_id": device_name,
                    "received_at": int(stamp.timestamp() * 1000) + 50,
                }
            )
        )
    lake.put_bytes(key, ("\n".join(lines) + "\n").encode())
    if live:
        newest = max((json.loads(line) for line in lines), key=lambda record: record["received_at"])
        device_seen_update({device_name: (newest["received_at"], newest)})


# --- access ----------------------------------------------------------------------


@pytest.mark.parametrize("name", PAGES)
def test_pages_redirect_anonymous_users_to_login(client, name):
    response = client.get(reverse(f"dashboard:{name}"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")


def test_device_page_and_json_views_need_login(client, device):
    page = client.get(reverse("dashboard:device", args=[device.pk]))
    assert page.status_code == 302 and page["Location"].startswith(reverse("login"))
    for url in [
        reverse("dashboard:device_readings", args=[device.pk]),
        reverse("dashboard:pipeline_runs"),
        reverse("dashboard:forecast_data") + "?device=aq-test-01",
    ]:
        response = client.get(url)
        assert response.status_code == 401, url
        assert "sign in" in response.json()["error"]


def test_login_page_renders_and_signs_in(client, user):
    page = client.get(reverse("login"))
    assert page.status_code == 200
    assert b"Sign in" in page.content
    response = client.post(reverse("login"), {"username": "operator", "password": "pw-operator"})
    assert response.status_code == 302 and response["Location"] == reverse("dashboard:overview")
    assert client.get(reverse("dashboard:overview")).status_code == 200


def test_the_nav_logout_form_signs_out(client, user):
    client.post(reverse("login"), {"username": "operator", "password": "pw-operator"})
    page = client.get(reverse("dashboard:overview")).content.decode()
    forms = [(tag, body) for tag, body in re.findall(r"<form([^>]*)>(.*?)</form>", page, re.S) if "Log out" in body]
    assert len(forms) == 1, forms  # the nav's form
    tag, body = forms[0]
    assert f'action="{reverse("logout")}"' in tag and 'method="post"' in tag and "csrfmiddlewaretoken" in body
    response = client.post(reverse("logout"), follow=True)
    assert response.status_code == 200 and response.redirect_chain[-1][0].startswith(reverse("login"))
    assert "Sign in" in response.content.decode() and "_auth_user_id" not in client.session
    assert client.get(reverse("dashboard:overview"))["Location"].startswith(reverse("login"))


# --- pages on an empty system --------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("overview", ["No devices registered yet", "No endpoint yet", "never run"]),
        ("devices", ["No devices registered yet", "provision_device"]),
        ("pipeline", ["No runs yet", "The catalog is empty"]),
        ("forecasts", ["No devices registered yet"]),
    ],
)
def test_pages_show_empty_states(signed_in, lake, name, expected):
    response = signed_in.get(reverse(f"dashboard:{name}"))
    assert response.status_code == 200
    text = response.content.decode()
    for snippet in expected:
        assert snippet in text
    assert "The lake did not answer" not in text
    assert 'aria-current="page"' in text and "Log out" in text


def test_admin_link_only_for_staff(client, user, staff, lake):
    client.force_login(user)
    assert reverse("admin:index") not in client.get(reverse("dashboard:overview")).content.decode()
    client.force_login(staff)
    assert reverse("admin:index") in client.get(reverse("dashboard:overview")).content.decode()


def test_devices_without_readings_say_how_to_start_an_agent(signed_in, lake, device):
    text = signed_in.get(reverse("dashboard:devices")).content.decode()
    assert "aq-test-01" in text and "offline" in text
    assert NO_READINGS in text and "python -m device_agent --kit var/kits/" in text


def test_device_page_shows_device_and_certificate(signed_in, lake, device):
    response = signed_in.get(reverse("dashboard:device", args=[device.pk]))
    assert response.status_code == 200
    text = response.content.decode()
    assert "aq-test-01" in text
    assert "dt/iotcast/aq-test-01/telemetry" in text
    assert "AB:CD:EF:01:23:45" in text
    assert reverse("dashboard:device_readings", args=[device.pk]) in text
    for label in ["1 h", "6 h", "24 h", "7 d"]:
        assert f">{label}</button>" in text


def test_unknown_device_is_404(signed_in, lake):
    assert signed_in.get(reverse("dashboard:device", args=[999])).status_code == 404
    assert signed_in.get(reverse("dashboard:device_readings", args=[999])).status_code == 404


# --- readings --------------------------------------------------------------------


def test_readings_json_is_empty_before_any_reading(signed_in, lake, device):
    response = signed_in.get(reverse("dashboard:device_readings", args=[device.pk]))
    assert response.status_code == 200
    data = response.json()
    assert data["count"] == 0 and data["latest"] is None and data["timestamps"] == []


def test_readings_json_returns_the_window_newest_last(signed_in, lake, device):
    now = timezone.now().replace(microsecond=0)
    write_raw(lake, "aq-test-01", [now - timedelta(minutes=3), now - timedelta(minutes=2), now - timedelta(minutes=1)])
    write_raw(lake, "aq-test-01", [now - timedelta(hours=3)], ozone_start=99.0)  # outside a 1 h window
    write_raw(lake, "aq-other-02", [now - timedelta(minutes=1)], ozone_start=7.0)  # another device

    data = signed_in.get(reverse("dashboard:device_readings", args=[device.pk]) + "?minutes=60").json()

    assert data["count"] == 3
    assert data["values"]["ozone"] == [40.0, 41.0, 42.0]
    assert data["order"][:5] == [
        "ozone",
        "particulate_matter",
        "carbon_monoxide",
        "sulfur_dioxide",
        "nitrogen_dioxide",
    ]
    assert "latitude" not in data["order"]
    assert data["metrics"]["carbon_monoxide"]["unit"] == "mg/m³"
    assert data["metrics"]["ozone"]["unit"] == "µg/m³"
    assert data["timestamps"] == sorted(data["timestamps"])
    assert data["timestamps"][-1].endswith("Z")
    assert data["latest"]["values"]["ozone"] == 42.0

    wide = signed_in.get(reverse("dashboard:device_readings", args=[device.pk]) + "?minutes=360").json()
    assert wide["count"] == 4 and wide["values"]["ozone"][0] == 99.0


def test_readings_json_resamples_a_window_with_more_readings_than_the_limit(signed_in, lake, device, monkeypatch):
    # A small limit stands in for a week of readings: the view must switch to per-bucket means.
    monkeypatch.setattr("dashboard.selectors.READINGS_LIMIT", 4)
    start = (timezone.now() - timedelta(minutes=30)).replace(second=0, microsecond=0)
    write_raw(lake, "aq-test-01", [start + timedelta(seconds=10 * i) for i in range(6)])  # one minute: ozone 40..45

    data = signed_in.get(reverse("dashboard:device_readings", args=[device.pk]) + "?minutes=60").json()

    assert data["resampled"] == "1min"
    assert data["values"]["ozone"] == [42.5]
    assert data["latest"]["values"]["ozone"] == 45.0


def test_overview_and_devices_show_readings_with_units(signed_in, lake, device):
    now = timezone.now()
    write_raw(lake, "aq-test-01", [now - timedelta(seconds=30)], ozone_start=41.5)
    overview = signed_in.get(reverse("dashboard:overview")).content.decode()
    assert "41.5 µg/m³" in overview and "0.4 mg/m³" in overview
    devices = signed_in.get(reverse("dashboard:devices")).content.decode()
    assert "badge-online" in devices and NO_READINGS not in devices


@pytest.mark.parametrize("minutes", ["0", "abc", "20000", "-5"])
def test_readings_json_rejects_a_bad_window(signed_in, lake, device, minutes):
    response = signed_in.get(reverse("dashboard:device_readings", args=[device.pk]) + f"?minutes={minutes}")
    assert response.status_code == 400
    assert "minutes" in response.json()["error"]


def test_a_failing_query_backend_degrades_instead_of_500(signed_in, lake, device, settings):
    backends = dict(settings.CLOUD_BACKENDS)
    backends["query"] = {"BACKEND": "cloud.local.query.NoSuchEngine", "OPTIONS": {}}
    settings.CLOUD_BACKENDS = backends

    readings = signed_in.get(reverse("dashboard:device_readings", args=[device.pk]))
    assert readings.status_code == 503
    assert readings.json()["error"].startswith("Could not read the readings")
    for url in [reverse("dashboard:overview"), reverse("dashboard:devices"), reverse("dashboard:device", args=[1])]:
        page = signed_in.get(url)
        assert page.status_code == 200, url
        assert "The lake did not answer" in page.content.decode()


# --- plotly served locally ---------------------------------------------------------


def test_plotly_js_is_served_by_the_project(signed_in, lake, device):
    page = signed_in.get(reverse("dashboard:device", args=[device.pk])).content.decode()
    sources = re.findall(r'<script src="([^"]+)"', page)
    assert sources and all(src.startswith("/") for src in sources), sources  # nothing from a CDN
    plotly_src = next(src for src in sources if "plotly" in src)

    plain = signed_in.get(plotly_src)
    assert plain.status_code == 200
    body = plain.content
    assert body.startswith(b"/**") and b"plotly.js v" in body[:200]
    assert "max-age=31536000" in plain["Cache-Control"]
    zipped = signed_in.get(plotly_src, HTTP_ACCEPT_ENCODING="gzip, br")
    assert zipped["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped.content) == body
    assert signed_in.get(plotly_src.replace("plotly-", "plotly-0.0.0-")).status_code == 404


# --- pipeline ---------------------------------------------------------------------


def test_starting_etl_queues_a_run_and_sends_the_task_after_commit(signed_in, lake, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = signed_in.post(reverse("dashboard:pipeline_start", args=["etl"]))
    assert response.status_code == 302 and response["Location"] == reverse("dashboard:pipeline")
    run = PipelineRun.objects.get()
    assert (run.kind, run.status) == ("etl", "queued")
    assert len(callbacks) == 1
    page = signed_in.get(reverse("dashboard:pipeline")).content.decode()
    assert f"Queued etl run #{run.pk}" in page
    assert 'data-active="true"' in page


def test_non_staff_cannot_start_training_or_deploy(signed_in, lake, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        for kind in ["train", "deploy"]:
            assert signed_in.post(reverse("dashboard:pipeline_start", args=[kind])).status_code == 403
    assert not PipelineRun.objects.exists() and not callbacks
    page = signed_in.get(reverse("dashboard:pipeline")).content.decode()
    assert 'title="Only admins may start train runs"' in page


def test_staff_can_start_training(client, staff, lake, django_capture_on_commit_callbacks):
    client.force_login(staff)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert client.post(reverse("dashboard:pipeline_start", args=["train"])).status_code == 302
    assert PipelineRun.objects.get().kind == "train" and len(callbacks) == 1


def test_pipeline_start_rejects_get_and_unknown_steps(signed_in, lake):
    assert signed_in.get(reverse("dashboard:pipeline_start", args=["etl"])).status_code == 405
    assert signed_in.post(reverse("dashboard:pipeline_start", args=["bake"])).status_code == 404
    assert not PipelineRun.objects.exists()


def test_pipeline_page_and_json_show_runs_and_catalog(signed_in, lake):
    started = timezone.now() - timedelta(seconds=90)
    PipelineRun.objects.create(
        kind="crawl", status="running", progress=40.0, message="scanning raw/", started_at=started
    )
    PipelineRun.objects.create(
        kind="etl",
        status="failed",
        message="ValueError: bad row",
        error="ValueError: bad row\n\nTraceback ...",
        started_at=started,
        finished_at=started + timedelta(seconds=2),
    )
    CatalogTable.objects.create(
        name="raw", location="raw/", columns=[{"name": "ozone", "type": "double"}], objects_scanned=3
    )

    page = signed_in.get(reverse("dashboard:pipeline")).content.decode()
    assert "scanning raw/" in page and "Traceback" in page and "2.0 s" in page
    assert "iotcast.raw" in page and "ozone" in page and "µg/m³" in page

    data = signed_in.get(reverse("dashboard:pipeline_runs")).json()
    assert data["active"] is True
    crawl = next(run for run in data["runs"] if run["kind"] == "crawl")
    assert crawl["progress"] == 40.0 and crawl["status"] == "running" and crawl["duration_s"] >= 90


# --- forecasts -----------------------------------------------------------------------


def test_forecasts_page_offers_devices_and_metrics(signed_in, lake, device):
    text = signed_in.get(reverse("dashboard:forecasts") + "?metric=carbon_monoxide").content.decode()
    assert '<option value="aq-test-01" selected>' in text
    assert '<option value="carbon_monoxide" selected>' in text
    assert reverse("dashboard:forecast_data") in text
    assert 'id="metrics-meta"' in text


def test_forecast_json_explains_that_no_model_is_deployed(signed_in, lake, device):
    response = signed_in.get(reverse("dashboard:forecast_data") + "?device=aq-test-01&metric=ozone")
    assert response.status_code == 503
    data = response.json()
    assert data["error"]
    assert data["hint"].startswith("No model deployed yet")


def test_forecast_json_unknown_device_is_404(signed_in, lake):
    response = signed_in.get(reverse("dashboard:forecast_data") + "?device=nope&metric=ozone")
    assert response.status_code == 404 and "nope" in response.json()["error"]


def record_forecast(variant: str, model: str, first: datetime, mean: list[float], spread: float = 2.0, **fields):
    """Store a recorded hourly forecast of aq-test-01's ozone whose first point is `first` (as forecast_for_device
    records one); p10/p90 sit `spread` under/over the mean."""
    from deployments.accuracy import forecast_record_create

    stamps = [(first + timedelta(hours=i)).isoformat() for i in range(len(mean))]
    quantiles = {"0.1": [m - spread for m in mean], "0.5": list(mean), "0.9": [m + spread for m in mean]}
    return forecast_record_create(
        fields.get("endpoint", "iotcast-forecast"), variant, model, "aq-test-01", "ozone", "h", stamps, mean, quantiles
    )


def test_past_forecasts_draw_actuals_over_them_and_score_each_variant(signed_in, lake, device):
    from cloud.deepar.metrics import mean_weighted_quantile_loss

    first = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)
    write_raw(lake, "aq-test-01", [first + timedelta(minutes=10)], ozone_start=40.0)  # hour 0: 40
    write_raw(lake, "aq-test-01", [first + timedelta(hours=1, minutes=10)], ozone_start=41.0)  # 41; hour 2: none
    record_forecast("blue", "model-a", first, [44.0, 41.0, 50.0])
    record_forecast("blue", "model-a", first, [44.0, 41.0, 50.0])  # the page reloaded: the same forecast again
    record_forecast("green", "model-b", first, [40.0, 41.0, 50.0], spread=1.0)
    record_forecast("green", "model-b", first + timedelta(hours=8), [1.0, 1.0])  # not begun yet: not shown

    url = reverse("dashboard:forecast_past") + "?device=aq-test-01&metric=ozone"
    data = signed_in.get(url).json()
    assert [(r["variant"], r["matured"]) for r in data["records"]] == [("green", 2), ("blue", 2)]
    assert data["records"][1]["p50"] == [44.0, 41.0, 50.0] and data["records"][1]["p10"] == [42.0, 39.0, 48.0]
    assert data["actuals"]["values"] == [40.0, 41.0]
    assert data["actuals"]["timestamps"][0].startswith(first.strftime("%Y-%m-%dT%H:00"))
    scores = {row["variant"]: row for row in data["accuracy"]}
    assert scores["blue"]["records"] == 1 and scores["blue"]["points"] == 2
    assert scores["blue"]["mape"] == pytest.approx(0.05)  # |40-44|/40 and 0, averaged
    expected = mean_weighted_quantile_loss([40.0, 41.0], {0.1: [42.0, 39.0], 0.5: [44.0, 41.0], 0.9: [46.0, 43.0]})
    assert scores["blue"]["wql"] == pytest.approx(expected)
    assert scores["green"]["mape"] == 0.0 and scores["green"]["wql"] < scores["blue"]["wql"]

    only_blue = signed_in.get(url + "&variant=blue").json()
    assert [r["variant"] for r in only_blue["records"]] == ["blue"]
    assert len(only_blue["accuracy"]) == 2  # the table still compares every variant


def test_past_forecasts_are_empty_until_one_matures(signed_in, lake, device):
    url = reverse("dashboard:forecast_past") + "?device=aq-test-01&metric=ozone"
    assert signed_in.get(url).json() == {
        "device": "aq-test-01", "metric": "ozone", "records": [], "actuals": {"timestamps": [], "values": []},
        "accuracy": [],
    }  # fmt: skip
    record_forecast("blue", "model-a", datetime.now(UTC) - timedelta(hours=2), [40.0, 40.0])  # no actuals arrived
    data = signed_in.get(url).json()
    assert data["records"] == [] and data["accuracy"][0]["points"] == 0  # only matured forecasts are drawn
    assert data["accuracy"][0]["wql"] is None and data["actuals"]["values"] == []
    page = signed_in.get(reverse("dashboard:forecasts")).content.decode()
    assert "Past forecasts and what happened" in page
    assert "No forecast has matured yet: actuals arrive as the horizon passes." in page
    assert reverse("dashboard:forecast_past") in page


def test_past_forecasts_json_checks_its_input_and_login(client, signed_in, lake, device):
    url = reverse("dashboard:forecast_past")
    assert signed_in.get(url + "?device=nope&metric=ozone").status_code == 404
    assert signed_in.get(url + "?device=aq-test-01").status_code == 400
    client.logout()
    assert client.get(url + "?device=aq-test-01&metric=ozone").status_code in (401, 403)


def test_forecasts_page_offers_the_variants_that_answer_clients(signed_in, lake, device, settings):
    from deployments.models import Endpoint, ProductionVariant
    from forecasts.models import TrainedModel

    endpoint = Endpoint.objects.create(name=settings.DEFAULT_ENDPOINT_NAME, status="InService")
    for name, shadow in (("blue", False), ("green", False), ("canary", True)):
        model = TrainedModel.objects.create(name=f"model-{name}", metric="ozone", artifact_key=f"models/{name}")
        ProductionVariant.objects.create(endpoint=endpoint, name=name, model=model, shadow=shadow)
    text = signed_in.get(reverse("dashboard:forecasts") + "?variant=green").content.decode()
    assert '<option value="">By weight, as clients get</option>' in text
    assert '<option value="blue" >blue · model-blue</option>' in text
    assert '<option value="green" selected>green · model-green</option>' in text
    assert "canary" not in text  # a shadow never answers a client
    response = signed_in.get(reverse("dashboard:forecast_data") + "?device=aq-test-01&metric=ozone&variant=canary")
    assert response.status_code == 503 and "no variant canary" in response.json()["error"]


# --- template helpers ----------------------------------------------------------------


def test_template_helpers_format_values_units_and_times():
    assert measure(41.25, "ozone") == "41.25 µg/m³"
    assert measure(0.4, "carbon_monoxide") == "0.4 mg/m³"
    assert measure(None, "ozone") == "\u2013"
    assert measure(float("nan"), "ozone") == "\u2013"
    assert measure(7, "humidity") == "7"
    assert duration(None) == "\u2013" and duration(4.25) == "4.2 s" and duration(185) == "3 min 5 s"
    assert duration(7800) == "2 h 10 min" and duration(120) == "2 min" and duration(21600) == "6 h"
    result = {"rows_written": 10, "partitions_written": ["a", "b"]}
    assert summary(result) == "rows written: 10, partitions written: 2 items"
    html = when(datetime(2026, 11, 27, 21, 0, tzinfo=UTC))
    assert 'datetime="2026-11-27T21:00:00Z"' in html and "2026-11-27 21:00:00 UTC" in html
    assert "never" in when(None)


# --- roles -------------------------------------------------------------------------


def test_roles_admin_is_staff_superuser_or_admin_group(user, staff):
    from django.contrib.auth.models import AnonymousUser, Group

    from dashboard.roles import is_admin, is_operator, role_name

    assert (is_operator(user), is_admin(user), role_name(user)) == (True, False, "operator")
    assert (is_admin(staff), role_name(staff)) == (True, "admin")
    assert role_name(AnonymousUser()) == "" and not is_operator(AnonymousUser())
    assert Group.objects.filter(name__in=["operator", "admin"]).count() == 2  # created by the migration
    user.groups.add(Group.objects.get(name="admin"))
    assert is_admin(get_user_model().objects.get(pk=user.pk))


# --- alarms --------------------------------------------------------------------------


def pm_rule(**fields):
    from alarms.models import AlarmRule

    values = {"name": "PM high", "metric": "particulate_matter", "threshold": 50.0, "duration_minutes": 10}
    return AlarmRule.objects.create(**{**values, **fields})


def write_pm(lake, device_name: str, minutes_ago_to_value: dict[int, float]) -> None:
    from tests.telemetry_helpers import put_raw, reading

    now = timezone.now()
    put_raw(
        lake,
        [
            reading(device_name, now - timedelta(minutes=m), particulate_matter=v)
            for m, v in minutes_ago_to_value.items()
        ],
    )


def test_a_threshold_alarm_needs_the_whole_duration_and_clears_when_it_ends(lake, device):
    from alarms.models import Alarm
    from alarms.services import alarms_evaluate

    rule = pm_rule()
    write_pm(lake, device.name, {12: 20.0, 6: 70.0, 3: 75.0, 0: 80.0})  # crossing for 6 minutes only
    assert alarms_evaluate()["raised"] == 0
    write_pm(lake, device.name, {11: 60.0, 9: 65.0})  # now crossing since 11 minutes ago
    assert alarms_evaluate() == {"rules": 1, "raised": 1, "cleared": 0, "errors": 0}
    alarm = Alarm.objects.get()
    assert alarm.status == "active_unack" and alarm.value == 80.0
    assert alarm.message == "Particulate matter (PM) 80 µg/m³ > 50 µg/m³ for 10 min"
    assert alarms_evaluate()["raised"] == 0 and Alarm.objects.count() == 1  # evaluating again changes nothing

    write_pm(lake, device.name, {0: 10.0})
    assert alarms_evaluate()["cleared"] == 1
    alarm.refresh_from_db()
    assert alarm.status == "cleared_unack" and alarm.cleared_by is None
    rule.refresh_from_db()
    assert rule.last_evaluated_at is not None and rule.last_error == ""


def test_a_device_without_fresh_readings_is_not_judged(lake, device):
    from alarms.services import threshold_verdict

    rule = pm_rule(duration_minutes=0)
    write_pm(lake, device.name, {30: 99.0})  # stale: older than 5 minutes
    assert threshold_verdict(rule, device.name, timezone.now()).holds is None
    write_pm(lake, device.name, {1: 99.0})
    assert threshold_verdict(rule, device.name, timezone.now()).holds is True
    assert threshold_verdict(pm_rule(operator="lt"), device.name, timezone.now()).holds is False


def test_a_forecast_rule_without_a_model_records_why_it_cannot_judge(lake, device):
    from alarms.models import Alarm
    from alarms.services import alarms_evaluate

    rule = pm_rule(kind="forecast", metric="ozone", quantile="0.9")
    assert alarms_evaluate() == {"rules": 1, "raised": 0, "cleared": 0, "errors": 1}
    rule.refresh_from_db()
    assert rule.last_error.startswith("aq-test-01: ") and not Alarm.objects.exists()


def test_operators_acknowledge_and_clear_but_only_admins_manage_rules(client, user, staff, lake, device):
    from alarms.models import Alarm, AlarmRule

    rule = pm_rule()
    alarm = Alarm.objects.create(rule=rule, device=device, severity="major", value=80.0, message="PM high")
    client.force_login(user)
    page = client.get(reverse("dashboard:alarms")).content.decode()
    assert "PM high" in page and "New rule" not in page and "Acknowledge" in page
    form = {"name": "x", "kind": "threshold", "metric": "ozone", "operator": "gt", "threshold": "1",
            "duration_minutes": "0", "quantile": "0.9", "severity": "minor"}  # fmt: skip
    assert client.post(reverse("dashboard:alarm_rule_create"), form).status_code == 403
    assert client.post(reverse("dashboard:alarm_rule_delete", args=[rule.pk])).status_code == 403
    assert client.post(reverse("dashboard:alarm_rule_toggle", args=[rule.pk])).status_code == 403
    device_page = reverse("dashboard:device", args=[device.pk])
    response = client.post(reverse("dashboard:alarm_acknowledge", args=[alarm.pk]), {"next": device_page})
    assert response.status_code == 302 and response["Location"] == device_page
    evil = client.post(reverse("dashboard:alarm_clear", args=[alarm.pk]), {"next": "https://evil.example/"})
    assert evil["Location"] == reverse("dashboard:alarms")
    alarm.refresh_from_db()
    assert alarm.status == "cleared_ack" and alarm.acknowledged_by == user and alarm.cleared_by == user

    client.force_login(staff)
    assert "New rule" in client.get(reverse("dashboard:alarms")).content.decode()
    assert client.post(reverse("dashboard:alarm_rule_create"), {**form, "threshold": "abc"}).status_code == 400
    assert client.post(reverse("dashboard:alarm_rule_create"), form).status_code == 302
    assert AlarmRule.objects.filter(name="x", metric="ozone").exists()


def test_alarm_pages_need_login_and_beat_evaluates_them(client, settings):
    assert client.get(reverse("dashboard:alarms"))["Location"].startswith(reverse("login"))
    assert client.post(reverse("dashboard:alarms_evaluate")).status_code == 302
    entry = settings.CELERY_BEAT_SCHEDULE["alarms-evaluate"]
    assert entry["task"] == "alarms.tasks.evaluate_alarms"
    from alarms.tasks import evaluate_alarms

    assert evaluate_alarms.time_limit > evaluate_alarms.soft_time_limit


# --- devices list, device page extras, overview ----------------------------------------


def test_devices_page_lists_rate_and_maps_located_devices(signed_in, lake, device):
    write_raw(lake, "aq-test-01", [timezone.now() - timedelta(seconds=30 * i) for i in range(1, 7)])
    text = signed_in.get(reverse("dashboard:devices")).content.decode()
    assert "0.10 /min" in text and 'id="device-search"' in text and 'data-sort="number"' in text
    assert '"name": "aq-test-01", "lat": 56.2, "lon": 10.25, "online": true' in text
    response = signed_in.get(reverse("dashboard:topojson", args=["world_50m"]))
    topojson = json.loads(b"".join(response.streaming_content))
    assert topojson["type"] == "Topology" and topojson["objects"]["coastlines"]["geometries"]
    assert signed_in.get(reverse("dashboard:topojson", args=["mars_110m"])).status_code == 404


def test_device_page_shows_alarms_export_link_and_json_aggregates(signed_in, lake, device):
    now = timezone.now()
    write_raw(lake, "aq-test-01", [now - timedelta(minutes=3), now - timedelta(minutes=2), now - timedelta(minutes=1)])
    text = signed_in.get(reverse("dashboard:device", args=[device.pk])).content.decode()
    assert f'href="/api/v1/devices/{device.pk}/readings?format=csv"' in text and 'id="device-alarms"' in text
    assert f'href="/api/v1/devices/{device.pk}/readings?format=parquet"' in text
    parquet = signed_in.get(f"/api/v1/devices/{device.pk}/readings?format=parquet")
    assert (
        parquet.status_code == 200
        and b"".join(parquet.streaming_content if parquet.streaming else [parquet.content])[:4] == b"PAR1"
    )
    data = signed_in.get(reverse("dashboard:device_readings", args=[device.pk])).json()
    assert data["aggregates"]["ozone"] == {"min": 40.0, "max": 42.0, "mean": 41.0, "count": 3}


def test_overview_shows_online_counts_rate_health_and_alarms(signed_in, lake, device):
    from alarms.models import Alarm

    Alarm.objects.create(rule=pm_rule(), device=device, severity="critical", value=90.0, message="PM 90 > 50")
    write_raw(lake, "aq-test-01", [timezone.now() - timedelta(seconds=30)])
    text = signed_in.get(reverse("dashboard:overview")).content.decode()
    assert '1<span class="stat-of"> / 1</span>' in text and "(0 offline" in text
    assert 'id="overview-alarms"' in text and "PM 90 &gt; 50" in text
    assert f'data-health-url="{reverse("healthz")}"' in text and "newest live reading reached the lake" in text
    assert '<span class="count" title="active alarms">1</span>' in text


def test_last_seen_and_online_come_from_the_registry_not_the_lake(signed_in, lake, device):
    now = timezone.now()
    quiet = Device.objects.create(name="aq-quiet-02")
    fresh, stale = now - timedelta(seconds=40), now - timedelta(minutes=9)
    device_seen_update({device.name: (int(fresh.timestamp() * 1000), {"device_id": device.name})})
    device_seen_update({quiet.name: (int(stale.timestamp() * 1000), {"device_id": quiet.name})})

    # The lake holds no reading at all: online and last seen are the ingest's registry fields alone.
    devices = signed_in.get(reverse("dashboard:devices")).content.decode()
    assert devices.count("badge badge-online") == 1 and devices.count("badge badge-offline") == 1
    assert f'data-value="{int(fresh.timestamp())}"' in devices and f'data-value="{int(stale.timestamp())}"' in devices
    assert "Readings, total" not in devices and "0.00 /min" in devices
    overview = signed_in.get(reverse("dashboard:overview")).content.decode()
    assert '1<span class="stat-of"> / 2</span>' in overview and "(1 offline" in overview
    assert fresh.strftime("%Y-%m-%d %H:%M:%S UTC") in overview  # the newest live arrival
    page = signed_in.get(reverse("dashboard:device", args=[device.pk])).content.decode()
    assert 'id="online-badge">online<' in page and "no live reading yet" not in page


def test_a_device_with_imported_history_only_says_no_live_reading_yet(signed_in, lake, device):
    imported = timezone.now() - timedelta(days=3)
    write_raw(lake, device.name, [imported - timedelta(minutes=1), imported], live=False)

    devices = signed_in.get(reverse("dashboard:devices")).content.decode()
    assert "no live reading yet" in devices and "badge badge-online" not in devices
    page = signed_in.get(reverse("dashboard:device", args=[device.pk])).content.decode()
    assert 'id="online-badge">offline<' in page
    assert "no live reading yet; newest in the lake" in page and imported.strftime("%Y-%m-%d %H:%M:%S UTC") in page
    device.refresh_from_db()
    assert device.last_seen_at is None


def test_readings_rate_counts_only_the_last_hour_of_the_lake(lake, device):
    from forecasts.selectors import devices_readings_last_hour

    now = timezone.now()
    write_raw(lake, device.name, [now - timedelta(minutes=m) for m in (50, 40, 30)])
    write_raw(lake, device.name, [now - timedelta(hours=2)])
    write_raw(lake, "aq-other-03", [now - timedelta(days=2)])
    assert devices_readings_last_hour(now) == {device.name: 3}
    assert devices_readings_last_hour(now - timedelta(hours=1, minutes=30)) == {device.name: 1}


def test_overview_shows_ingest_lag_since_the_newest_object_and_from_device_to_lake(signed_in, lake, device):
    from dashboard.selectors import ingest_lag, latest_readings_safe
    from tests.telemetry_helpers import put_raw, reading

    assert "no raw object in the last two days" in signed_in.get(reverse("dashboard:overview")).content.decode()
    now = timezone.now()
    sent = now - timedelta(seconds=100)
    late = reading(device.name, sent, received_at=int((sent + timedelta(seconds=2.5)).timestamp() * 1000))
    put_raw(lake, [reading(device.name, sent - timedelta(seconds=60))], arrived=now - timedelta(hours=3))
    put_raw(lake, [late], arrived=now - timedelta(seconds=95))  # the newest object: its key says 95 s ago
    device_seen_update({device.name: (late["received_at"], late)})  # as the ingest does after that object

    lag = ingest_lag(latest_readings_safe([device.name])[0], now)
    assert lag["object_at"] == (now - timedelta(seconds=95)).replace(microsecond=0)
    assert 95 <= lag["since_object_s"] < 96 and lag["transport_s"] == pytest.approx(2.5, abs=0.001)
    text = signed_in.get(reverse("dashboard:overview")).content.decode()
    assert re.search(r'newest raw object landed within the last <strong class="lag-object"[^>]*>1 min 3[5-9] s<', text)
    assert '<strong class="lag-transport" title="its arrival time minus its own timestamp">2.5 s</strong>' in text


def test_only_admins_change_the_schedule_and_the_page_shows_it(client, user, staff, lake, settings):
    from dashboard.models import PipelineSchedule

    settings.PIPELINE_INTERVAL_S, settings.TRAIN_INTERVAL_S = 120, 3600
    url = reverse("dashboard:pipeline_schedule")
    client.force_login(user)
    page = client.get(reverse("dashboard:pipeline")).content.decode()
    assert 'id="crawl-interval">2 min</strong>' in page and 'id="train-interval">1 h</strong>' in page
    assert "Only admins may change the schedule" in page
    assert client.post(url, {"crawl_interval_s": "600", "train_interval_s": ""}).status_code == 403
    assert not PipelineSchedule.objects.exists()

    client.force_login(staff)
    bad = client.post(url, {"crawl_interval_s": "1", "train_interval_s": ""})
    assert bad.status_code == 400 and "greater than or equal to 5" in bad.content.decode()
    assert client.post(url, {"crawl_interval_s": "600", "train_interval_s": ""}).status_code == 302
    row = PipelineSchedule.objects.get(pk=1)
    assert (row.crawl_interval_s, row.train_interval_s, row.updated_by) == (600, None, staff)
    page = client.get(reverse("dashboard:pipeline")).content.decode()
    assert 'id="crawl-interval">10 min</strong>' in page and 'value="600"' in page and "by lead" in page


def test_pipeline_page_counts_the_errors_zone_by_type_with_the_newest_bad_records(signed_in, lake):
    import base64

    firehose = {"errorCode": "InvalidJSON", "errorMessage": "payload is not JSON", "rawData": ""}
    hour = "year=2026/month=11/day=02/hour=10"
    for stamp, payload in [("10-00-00", b"{broken"), ("10-05-00", b"not json at all")]:
        doc = {**firehose, "rawData": base64.b64encode(payload).decode()}
        lake.put_bytes(
            f"errors/processing-failed/{hour}/iotcast-telemetry-1-2026-11-02-{stamp}-x", json.dumps(doc).encode()
        )
    reject = {"reason": "ozone out of range", "raw_key": "raw/x", "record": {"device_id": "aq-1", "ozone": 9999}}
    lake.put_bytes(f"errors/etl-failed/{hour}/iotcast-etl-failed-1", (json.dumps(reject) + "\n").encode() * 3)

    page = signed_in.get(reverse("dashboard:pipeline")).content.decode()
    etl, ingest = re.findall(r'<tr class="error-type" data-type="([^"]+)">(.*?)</tr>', page, re.S)
    assert etl[0] == "etl-failed" and ingest[0] == "processing-failed"
    assert re.search(r'<td class="num">3</td>', etl[1]) and "ozone out of range" in etl[1]
    assert "&quot;ozone&quot;: 9999" in etl[1]
    assert re.search(r'<td class="num">2</td>', ingest[1]) and "payload is not JSON" in ingest[1]
    assert ingest[1].index("not json at all") < ingest[1].index("{broken")  # newest first


def test_an_empty_errors_zone_says_so(signed_in, lake):
    assert "No rejected records." in signed_in.get(reverse("dashboard:pipeline")).content.decode()


def test_device_page_links_the_fleet_page_and_offers_admins_the_kit(client, user, staff, lake, device):
    url = reverse("dashboard:device", args=[device.pk])
    client.force_login(user)
    page = client.get(url).content.decode()
    assert f'href="/fleet/{device.pk}/"' in page and "kit-download" not in page
    client.force_login(staff)
    assert f'action="/fleet/{device.pk}/kit/"' in client.get(url).content.decode()
