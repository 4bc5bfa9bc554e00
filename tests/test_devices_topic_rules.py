"""Topic rules: Firehose's default buffering hints, and the demo's short-interval rule."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from dataplane.ingest.service import IngestConfig
from devices.models import DEFAULT_TOPIC_RULE, TopicRule

ROOT = Path(__file__).resolve().parent.parent


def test_buffering_hints_default_to_firehoses_5_mib_and_300_s():
    rule = TopicRule(name="defaults")
    assert (rule.buffer_size_mb, rule.buffer_interval_s) == (5, 300)
    config = IngestConfig("127.0.0.1", 8883, Path("."))
    assert (config.buffer_size_mb, config.buffer_interval_s) == (5, 300)


def test_the_settings_default_interval_is_firehoses_when_the_environment_names_none():
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOTCAST_BUFFER_")}
    env["DJANGO_SETTINGS_MODULE"] = "iotcast.settings"
    code = "from django.conf import settings; print(settings.INGEST_BUFFER_SIZE_MB, settings.INGEST_BUFFER_INTERVAL_S)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["5", "300"]


@pytest.mark.django_db
def test_demo_setup_gives_its_rule_a_short_interval_and_keeps_the_rest(settings, tmp_path, capsys):
    settings.STATE_DIR = tmp_path
    call_command("demo_setup", devices=0)
    rule = TopicRule.objects.get(name=DEFAULT_TOPIC_RULE)
    assert (rule.buffer_interval_s, rule.buffer_size_mb, rule.enabled) == (10, 5, True)
    assert "buffer 5 MiB / 10 s" in capsys.readouterr().out

    TopicRule.objects.filter(pk=rule.pk).update(where="ozone >= 0", buffer_interval_s=300)
    call_command("demo_setup", devices=0, buffer_interval_s=20)
    rule.refresh_from_db()
    assert (rule.buffer_interval_s, rule.where) == (20, "ozone >= 0")
    assert TopicRule.objects.count() == 1
