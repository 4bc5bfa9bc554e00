"""Topic rules in the registry: validation of WHERE and Firehose's buffering hints, and how run_ingest reads them."""

from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import CommandError

from devices.management.commands.run_ingest import _rule_settings
from devices.models import TopicRule

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"buffer_size_mb": 0}, "buffer_size_mb"),
        ({"buffer_size_mb": 129}, "buffer_size_mb"),
        ({"buffer_interval_s": 901}, "buffer_interval_s"),
        ({"where": "ozone >"}, "where"),
    ],
)
def test_rules_refuse_hints_outside_firehoses_ranges_and_bad_where(fields, bad):
    with pytest.raises(ValidationError) as caught:
        TopicRule(name="r", **fields).full_clean()
    assert list(caught.value.message_dict) == [bad]


def test_a_valid_rule_shows_its_sql():
    rule = TopicRule(name="r", where="ozone >= 0", buffer_size_mb=128, buffer_interval_s=0)
    rule.full_clean()
    assert rule.sql.endswith("FROM 'dt/iotcast/+/telemetry' WHERE ozone >= 0")


def _options(**given):
    return {"rule": "iotcast-telemetry", "buffer_size_mb": None, "buffer_interval_s": None, **given}


def test_run_ingest_takes_the_rules_settings_unless_given_on_the_command_line():
    assert _rule_settings(_options()) == {
        "buffer_size_mb": settings.INGEST_BUFFER_SIZE_MB,
        "buffer_interval_s": settings.INGEST_BUFFER_INTERVAL_S,
    }
    TopicRule.objects.create(name="iotcast-telemetry", where="ozone > 1", buffer_size_mb=8, buffer_interval_s=30)
    found = _rule_settings(_options())
    assert (found["where"], found["buffer_size_mb"], found["buffer_interval_s"]) == ("ozone > 1", 8, 30)
    assert _rule_settings(_options(buffer_interval_s=0))["buffer_interval_s"] == 0
    TopicRule.objects.update(enabled=False)
    assert "where" not in _rule_settings(_options())
    with pytest.raises(CommandError, match="Firehose"):
        _rule_settings(_options(buffer_interval_s=901))


def test_run_ingest_help_documents_the_rule_option():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "manage.py", "run_ingest", "--help"],
        cwd=Path(settings.BASE_DIR),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and "--rule" in result.stdout and "unknown-device" in result.stdout
