"""The operator's dashboard in a real browser (Debian's chromium via Playwright) on the live server.

Real parts behind it: the test's lake (DuckDB queries), Mosquitto + the ingest service + the real device
agent, a real Celery worker on Redis, and the endpoint server with a tiny trained DeepAR model.
"""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from devices.models import Device
from tests.browser.conftest import REPO, TABLET
from tests.telemetry_helpers import put_raw, reading

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


def recent_readings(device: str, minutes: int, **values) -> list[dict]:
    """Return one reading a minute for the last `minutes` minutes (newest 20 s ago)."""
    now = datetime.now(UTC) - timedelta(seconds=20)
    return [reading(device, now - timedelta(minutes=m), **values) for m in range(minutes, -1, -1)]


def test_login_then_every_page_renders_with_local_times_and_nothing_offsite(browser, lake):
    page = browser.goto("/devices/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/devices/"))
    browser.screenshot("login")
    browser.page.fill("#id_username", "operator")
    browser.page.fill("#id_password", "wrong")
    browser.page.click("button[type=submit]")
    expect(page.locator(".alert-error")).to_contain_text("did not match")

    Device.objects.create(name="aq-browser-01", latitude=56.16, longitude=10.21)
    put_raw(lake, recent_readings("aq-browser-01", 5))
    browser.login("operator")
    expect(page.locator("h1")).to_have_text("Overview")
    expect(page.locator(".account .role")).to_have_text("operator")
    stamp = page.locator("table time.ts").first
    expect(stamp).to_have_attribute("title", re.compile(r"UTC$"))
    assert "UTC" not in stamp.inner_text()  # shown in the viewer's zone, UTC on hover
    browser.screenshot("overview")

    for path, heading, shot in [
        ("/devices/", "Devices", "devices"),
        ("/pipeline/", "Pipeline", "pipeline"),
        ("/alarms/", "Alarms", "alarms"),
    ]:
        page = browser.goto(path)
        expect(page.locator("h1")).to_have_text(heading)
        browser.screenshot(shot)
    page.set_viewport_size(TABLET)
    browser.goto("/")
    browser.screenshot("overview-tablet")
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, "the overview scrolls sideways at tablet width"
    browser.assert_clean()


def test_an_alarm_fires_and_is_acknowledged(browser, lake):
    device = Device.objects.create(name="aq-smoky-01", latitude=55.68, longitude=12.57)
    put_raw(lake, recent_readings("aq-smoky-01", 12, particulate_matter=80.0))
    browser.login("admin")
    page = browser.goto("/alarms/")
    expect(page.locator(".empty").first).to_contain_text("No active alarms")
    page.fill("#id_name", "PM too high")
    page.select_option("#id_metric", "particulate_matter")
    page.select_option("#id_operator", "gt")
    page.fill("#id_threshold", "50")
    page.fill("#id_duration_minutes", "10")
    page.select_option("#id_severity", "critical")
    page.click("#rule-form button[type=submit]")
    expect(page.locator(".messages")).to_contain_text("Created rule PM too high")

    page.click("#evaluate-now")
    expect(page.locator(".messages")).to_contain_text("1 alarms raised")
    row = page.locator("tr.alarm-row").first
    expect(row).to_contain_text("PM too high")
    expect(row).to_contain_text("Particulate matter (PM) 80 µg/m³ > 50 µg/m³ for 10 min")
    expect(row.locator(".badge-active_unack")).to_be_visible()
    expect(page.locator(".nav .count")).to_have_text("1")
    browser.screenshot("alarms-active")

    browser.goto(f"/devices/{device.pk}/")
    device_row = page.locator("#device-alarms tr.alarm-row")
    expect(device_row).to_contain_text("PM too high")
    device_row.get_by_role("button", name="Acknowledge").click()
    expect(page).to_have_url(re.compile(rf"/devices/{device.pk}/$"))
    expect(page.locator("#device-alarms .badge-active_ack")).to_contain_text("acknowledged")

    page = browser.goto("/")
    expect(page.locator("#overview-alarms")).to_contain_text("PM too high")
    browser.assert_clean()


def test_a_reading_from_a_device_agent_appears_on_the_device_page_without_a_reload(
    browser, lake, identity_on_test_broker, ingest_service, tmp_path
):
    from devices.services import device_kit_write, device_register

    device, credentials = device_register("aq-live-01", latitude=56.16, longitude=10.21)
    kit = device_kit_write(device, credentials, tmp_path / "kit")
    ingest_service(lake, buffer_interval_s=1)
    browser.login("operator")
    page = browser.goto(f"/devices/{device.pk}/")
    expect(page.locator("#live-empty")).to_be_visible()
    page.evaluate("window.__sameDocument = true")  # gone if anything reloads the page

    agent = subprocess.run(
        [sys.executable, "-m", "device_agent", "--kit", str(kit), "--count", "3", "--interval", "0.25", "--quiet"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert agent.returncode == 0, agent.stdout + agent.stderr

    expect(page.locator("#live-empty")).to_be_hidden(timeout=30_000)
    expect(page.locator("#latest")).to_contain_text("Particulate matter (PM)")
    expect(page.locator("#live-status")).to_contain_text("3 readings")
    expect(page.locator("#chart-ozone .main-svg").first).to_be_visible()
    expect(page.locator("#aggregates")).to_contain_text("µg/m³")
    assert page.evaluate("window.__sameDocument") is True
    assert page.locator("#export-csv").get_attribute("href") == f"/api/v1/devices/{device.pk}/readings?format=csv"
    browser.screenshot("device")
    browser.assert_clean()


def test_an_etl_run_started_from_the_pipeline_page_finishes_before_the_operators_eyes(browser, lake, celery_worker):
    put_raw(lake, recent_readings("aq-etl-01", 30))
    browser.login("operator")
    page = browser.goto("/pipeline/")
    page.get_by_role("button", name="Run ETL").click()
    expect(page.locator(".messages")).to_contain_text("Queued etl run")
    row = page.locator("#runs-body tr").first
    expect(row).to_contain_text("etl")
    expect(row.locator(".badge")).to_have_text("succeeded", timeout=90_000)  # the page polls; nobody reloads
    expect(row).to_contain_text("rows written: 31")
    browser.screenshot("pipeline-etl-finished")
    browser.assert_clean()


def test_a_forecast_chart_renders_with_its_band(browser, lake, endpoint_server, tiny_trained_model, settings):
    from deployments.services import deploy_execute
    from tests.fixtures.endpoint import synthetic_frame

    # The tiny model knows sensor-0..2: give sensor-0 a week of hourly ozone ending now.
    Device.objects.create(name="sensor-0", latitude=56.2, longitude=10.2)
    frame = synthetic_frame(devices=1, hours=24 * 7, start="2000-01-01", gap=False)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    values = list(frame["value"])
    put_raw(lake, [reading("sensor-0", end - timedelta(hours=len(values) - i), ozone=v) for i, v in enumerate(values)])
    deploy_execute({"model": tiny_trained_model.name, "endpoint": settings.DEFAULT_ENDPOINT_NAME})

    browser.login("operator")
    page = browser.goto("/forecasts/?device=sensor-0&metric=ozone")
    expect(page.locator("#forecast-model")).to_contain_text("Served by model deepar-tiny", timeout=30_000)
    legend = ["mean", "median (p50)", "p10\u2013p90", "history"]  # plotly lists the legend bottom-up
    expect(page.locator("#forecast-chart .legendtext")).to_have_text(legend)
    assert page.locator("#forecast-chart path.js-fill").count() >= 1  # the shaded p10-p90 band
    expect(page.locator("#forecast-error")).to_be_hidden()
    browser.screenshot("forecasts")
    browser.assert_clean()
