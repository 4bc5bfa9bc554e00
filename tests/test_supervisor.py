"""The demo's process supervisor and set-up command, with real child processes."""

import sys
import time

import pytest
from django.core.management import call_command

from dataplane.demo import Plan, child_env
from dataplane.ports import free_port
from dataplane.supervisor import ProcessSpec, Supervisor


def test_a_crashed_service_stops_the_rest(tmp_path, capsys):
    supervisor = Supervisor({"PATH": "/usr/bin:/bin"}, str(tmp_path))
    sleeper = supervisor.start(ProcessSpec("sleeper", ["sleep", "60"]))
    supervisor.start(ProcessSpec("crasher", [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"]))
    started = time.monotonic()
    supervisor.watch()
    supervisor.stop_all()
    assert time.monotonic() - started < 10
    assert sleeper.process.poll() is not None
    output = capsys.readouterr().out
    assert "crasher exited with 3: stopping everything" in output
    assert "boom" in output


def test_one_shot_steps_report_their_exit_code(tmp_path):
    supervisor = Supervisor({"PATH": "/usr/bin:/bin"}, str(tmp_path))
    assert supervisor.run_to_completion(ProcessSpec("ok", ["true"])) == 0
    assert supervisor.run_to_completion(ProcessSpec("bad", ["false"])) == 1


def test_waiting_for_a_port_fails_fast_when_the_process_dies(tmp_path):
    supervisor = Supervisor({"PATH": "/usr/bin:/bin"}, str(tmp_path))
    running = supervisor.start(ProcessSpec("dies", ["false"]))
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="dies exited with 1 before listening"):
        supervisor.wait_until_listening(running, free_port(), timeout=30)
    assert time.monotonic() - started < 5


def test_children_get_the_plan_ports(tmp_path):
    plan = Plan(tmp_path, 6390, False, 8884, 8081, 8001, "s3", 8334)
    env = child_env(plan)
    assert env["REDIS_URL"] == "redis://127.0.0.1:6390/0"
    assert env["IOTCAST_BROKER_PORT"] == "8884"
    assert env["IOTCAST_ENDPOINT_SERVER_URL"] == "http://127.0.0.1:8081"
    assert env["IOTCAST_LAKE_URL"] == "s3://iotcast-lake?endpoint=http://127.0.0.1:8334"


@pytest.mark.django_db
def test_demo_setup_creates_admin_devices_kits_and_broker_config(settings, tmp_path, capsys):
    from devices.models import Device

    settings.STATE_DIR = tmp_path
    call_command("demo_setup")
    first = capsys.readouterr().out
    password = (tmp_path / "admin-password.txt").read_text().strip()
    assert f"admin login: admin / {password}" in first
    assert Device.objects.count() == 3
    assert all((tmp_path / "kits" / device.name / "kit.json").exists() for device in Device.objects.all())
    assert "require_certificate true" in (tmp_path / "broker" / "mosquitto.conf").read_text()
    assert (tmp_path / "services" / "iotcast-ingest" / "cert.pem").exists()

    call_command("demo_setup")  # a second run keeps the password, devices and kits
    assert f"admin / {password}" in capsys.readouterr().out
    assert Device.objects.count() == 3
