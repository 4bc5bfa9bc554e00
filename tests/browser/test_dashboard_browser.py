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
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from devices.models import Device
from tests.browser.conftest import REPO, TABLET
from tests.telemetry_helpers import put_raw, reading

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


# [(box width, drawn svg width)] of every chart on the device page.
CHART_WIDTHS = """Array.from(document.querySelectorAll('#charts .chart')).map(
  div => [div.getBoundingClientRect().width, Number(div.querySelector('.main-svg').getAttribute('width'))])"""


def recent_readings(device: str, minutes: int, **values) -> list[dict]:
    """Return one reading a minute for the last `minutes` minutes (newest 20 s ago)."""
    now = datetime.now(UTC) - timedelta(seconds=20)
    return [reading(device, now - timedelta(minutes=m), **values) for m in range(minutes, -1, -1)]


def wait_for_health(page) -> None:
    """Wait until the overview's pipeline health has answered (its rows replace "checking…")."""
    expect(page.locator("#health-status")).to_have_text(re.compile(r"^checked "), timeout=30_000)
    expect(page.locator("#health-checks .badge").first).to_be_visible()


def test_login_then_every_page_renders_with_local_times_and_nothing_offsite(browser, lake):
    page = browser.goto("/devices/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/devices/"))
    browser.screenshot("login")
    browser.page.fill("#id_username", "operator")
    browser.page.fill("#id_password", "wrong")
    browser.page.click("button[type=submit]")
    expect(page.locator(".alert-error")).to_contain_text("did not match")

    Device.objects.create(name="aq-browser-01", latitude=56.16, longitude=10.21, device_type="outdoor")
    Device.objects.create(name="aq-browser-02", latitude=55.68, longitude=12.57, device_type="outdoor")
    Device.objects.create(name="aq-browser-03", latitude=57.05, longitude=9.92, device_type="indoor")
    put_raw(lake, recent_readings("aq-browser-01", 5) + recent_readings("aq-browser-02", 5, particulate_matter=31.0))
    browser.login("operator")
    expect(page.locator("h1")).to_have_text("Overview")
    expect(page.locator(".account .role")).to_have_text("operator")
    stamp = page.locator("table time.ts").first
    expect(stamp).to_have_attribute("title", re.compile(r"UTC$"))
    assert "UTC" not in stamp.inner_text()  # shown in the viewer's zone, UTC on hover
    expect(page.locator("#ingest-lag")).to_contain_text(
        re.compile(r"newest raw object landed within the last \d+(\.\d)? s")
    )
    wait_for_health(page)
    browser.screenshot("overview")

    for path, heading, shot in [
        ("/devices/", "Devices", "devices"),
        ("/pipeline/", "Pipeline", "pipeline"),
        ("/alarms/", "Alarms", "alarms"),
        ("/fleet/", "Fleet registry", "fleet"),
    ]:
        page = browser.goto(path)
        expect(page.locator("h1")).to_have_text(heading)
        browser.screenshot(shot)
    page.set_viewport_size(TABLET)
    wait_for_health(browser.goto("/"))
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
    expect(page.locator("#online-badge")).to_have_text("offline")
    page.evaluate("window.__sameDocument = true")  # gone if anything reloads the page

    agent = subprocess.run(
        [sys.executable, "-m", "device_agent", "--kit", str(kit), "--count", "3", "--interval", "0.25", "--quiet"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert agent.returncode == 0, agent.stdout + agent.stderr

    expect(page.locator("#live-empty")).to_be_hidden(timeout=30_000)
    expect(page.locator("#latest")).to_contain_text("Particulate matter (PM)")
    expect(page.locator("#live-status")).to_contain_text("3 readings")
    expect(page.locator("#online-badge")).to_have_text("online")
    expect(page.locator("#last-seen time.ts")).to_have_attribute("title", re.compile(r"UTC$"))
    expect(page.locator("#chart-ozone .main-svg").first).to_be_visible()
    expect(page.locator("#aggregates")).to_contain_text("µg/m³")
    assert page.evaluate("window.__sameDocument") is True
    expect(page.locator("#fleet-link")).to_have_attribute("href", f"/fleet/{device.pk}/")
    # Every chart fits its box after the redraws (the first one used to keep the full row's width and clip).
    expect(page.locator("#charts .chart")).to_have_count(5)
    page.wait_for_timeout(2500)  # at least one more 2 s refresh redraws every chart
    # Polled, not sampled once: on a busy machine a redraw can be caught half way through.
    fits = "w => w.length > 0 && w.every(([box, svg]) => svg <= box)"
    try:
        page.wait_for_function(f"({fits})({CHART_WIDTHS})", timeout=10_000)
    except PlaywrightTimeout:
        pytest.fail(f"charts wider than their boxes: {page.evaluate(CHART_WIDTHS)}")
    browser.screenshot("device")

    with page.expect_download() as download:
        page.click("#export-csv")
    assert download.value.suggested_filename == "aq-live-01-readings.csv"
    lines = open(download.value.path(), encoding="utf-8").read().splitlines()
    assert lines[0].startswith("timestamp,received_at,message_id,") and len(lines) == 4, lines
    browser.assert_clean()


def test_an_etl_run_started_from_the_pipeline_page_finishes_before_the_operators_eyes(browser, lake, celery_worker):
    put_raw(lake, recent_readings("aq-etl-01", 30))
    put_raw(lake, [reading("aq-etl-01", datetime.now(UTC) - timedelta(minutes=3), ozone=-5.0)])  # a broken sensor
    browser.login("operator")
    page = browser.goto("/pipeline/")
    page.get_by_role("button", name="Run ETL").click()
    expect(page.locator(".messages")).to_contain_text("Queued etl run")
    row = page.locator("#runs-body tr").first
    expect(row).to_contain_text("etl")
    expect(row.locator(".badge")).to_have_text("succeeded", timeout=90_000)  # the page polls; nobody reloads
    expect(row).to_contain_text("rows written: 31")

    page.reload()  # the errors zone now holds the broken reading, whole, with the reason
    rejected = page.locator("#errors-zone tr.error-type")
    expect(rejected).to_have_count(1)
    expect(rejected).to_contain_text("etl-failed")
    expect(rejected.locator("td.num").first).to_have_text("1")
    expect(rejected.locator("pre.sample")).to_contain_text('"ozone": -5.0')
    browser.screenshot("pipeline-etl-finished")
    browser.assert_clean()


def test_an_admin_changes_the_schedule_and_an_operator_cannot(browser, lake, settings):
    from dashboard.models import PipelineSchedule

    settings.PIPELINE_INTERVAL_S, settings.TRAIN_INTERVAL_S = 120, 3600
    browser.login("operator")
    page = browser.goto("/pipeline/")
    expect(page.locator("#schedule")).to_contain_text("Only admins may change the schedule")
    expect(page.locator("#schedule-form")).to_have_count(0)

    browser.login("admin")
    page = browser.goto("/pipeline/")
    expect(page.locator("#crawl-interval")).to_have_text("2 min")
    page.fill("#id_crawl_interval_s", "900")
    page.fill("#id_train_interval_s", "21600")
    page.get_by_role("button", name="Save schedule").click()
    expect(page.locator(".messages")).to_contain_text("Schedule saved")
    expect(page.locator("#crawl-interval")).to_have_text("15 min")
    expect(page.locator("#train-interval")).to_have_text("6 h")
    expect(page.locator("#schedule")).to_contain_text("by admin")
    row = PipelineSchedule.objects.get(pk=1)
    assert (row.crawl_interval_s, row.train_interval_s) == (900, 21600)
    browser.screenshot("pipeline-schedule")
    browser.assert_clean()


def put_week_of_ozone(lake, device: str = "sensor-0") -> None:
    """Give the tiny model's sensor-0 a week of hourly ozone ending now (it knows sensor-0..2)."""
    from tests.fixtures.endpoint import synthetic_frame

    Device.objects.create(name=device, latitude=56.2, longitude=10.2)
    values = list(synthetic_frame(devices=1, hours=24 * 7, start="2000-01-01", gap=False)["value"])
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    put_raw(lake, [reading(device, end - timedelta(hours=len(values) - i), ozone=v) for i, v in enumerate(values)])


def test_an_operator_cannot_change_endpoint_weights_and_an_admin_can(
    browser, lake, endpoint_server, tiny_trained_model, celery_worker, settings
):
    from deployments.models import ProductionVariant
    from deployments.services import endpoint_create
    from forecasts.models import TrainingJob
    from forecasts.services.forecasting import forecast_for_device

    name = settings.DEFAULT_ENDPOINT_NAME
    variants = [
        {"name": "blue", "model": "deepar-tiny", "weight": 1.0},
        {"name": "green", "model": "deepar-tiny", "weight": 1.0},
    ]
    endpoint_create(name, variants)
    put_week_of_ozone(lake)
    for _ in range(4):  # traffic for the per-variant metrics chart
        forecast_for_device("sensor-0", metric="ozone")
    # The job the tiny model came from, so the training page shows it as the registry would.
    job = TrainingJob.objects.create(
        name="deepar-tiny-job", status="succeeded", epoch=2, epochs=2, message="trained on synthetic_frame()",
        hyperparameters=tiny_trained_model.hyperparameters,
    )  # fmt: skip
    tiny_trained_model.job = job
    tiny_trained_model.save(update_fields=["job"])

    browser.login("operator")
    page = browser.goto("/serving/")
    card = page.locator(f'[data-endpoint="{name}"]')
    expect(card.locator('input[name="green"]')).to_be_disabled()
    expect(card).to_contain_text("Only admins may change weights.")
    expect(card.get_by_role("button", name="Apply weights")).to_have_count(0)
    status = page.evaluate(PATCH_WEIGHTS, [name, {"green": 3}])
    assert status == 403
    browser.errors = [error for error in browser.errors if not error.startswith("HTTP 403")]  # the refusal we wanted
    assert ProductionVariant.objects.get(name="green").weight == 1.0

    browser.login("admin")
    page = browser.goto("/serving/")
    card = page.locator(f'[data-endpoint="{name}"]')
    card.locator('input[data-for="green"]').fill("3")
    expect(card.locator('[data-share="green"]')).to_have_text("75.0%")
    card.get_by_role("button", name="Apply weights").click()
    expect(card.locator("[data-role=note]")).to_contain_text(re.compile(r"update #\d+ queued"))
    expect(card.locator("[data-role=op-title]")).to_contain_text("(succeeded)", timeout=60_000)  # the worker applied it
    assert ProductionVariant.objects.get(name="green").weight == 3.0
    page.reload()
    expect(card.locator('input[data-for="green"]')).to_have_value("3.0")
    expect(card.locator('[data-share="green"]')).to_have_text("75.0%")
    expect(card.locator("[data-role=chart] .main-svg").first).to_be_visible()
    browser.screenshot("serving")

    page = browser.goto("/training/")
    expect(page.locator("h1")).to_have_text("Training")
    expect(page.locator("table").first).to_contain_text("deepar-tiny")
    browser.screenshot("training")
    browser.assert_clean()


PATCH_WEIGHTS = """async ([name, weights]) => {
  const csrf = document.querySelector('[name=csrfmiddlewaretoken]').value;
  const answer = await fetch(`/api/v1/endpoints/${name}/weights`, {method: 'PATCH', credentials: 'same-origin',
    headers: {'Content-Type': 'application/json', 'X-CSRFToken': csrf}, body: JSON.stringify({weights})});
  return answer.status;
}"""


def test_a_forecast_chart_renders_with_its_band(browser, lake, endpoint_server, tiny_trained_model, settings):
    from deployments.accuracy import forecast_record_create
    from deployments.services import deploy_execute

    put_week_of_ozone(lake)
    deploy_execute({"model": tiny_trained_model.name, "endpoint": settings.DEFAULT_ENDPOINT_NAME})

    browser.login("operator")
    page = browser.goto("/forecasts/?device=sensor-0&metric=ozone")
    expect(page.locator("#forecast-model")).to_contain_text("Served by model deepar-tiny", timeout=30_000)
    legend = ["mean", "median (p50)", "p10\u2013p90", "history"]  # plotly lists the legend bottom-up
    expect(page.locator("#forecast-chart .legendtext")).to_have_text(legend)
    assert page.locator("#forecast-chart path.js-fill").count() >= 1  # the shaded p10-p90 band
    expect(page.locator("#forecast-error")).to_be_hidden()
    expect(page.locator("#past-empty")).to_be_visible()  # the forecast just made has not matured

    # A forecast made six hours ago whose first two points the lake's readings now answer.
    first = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)
    forecast_record_create(
        settings.DEFAULT_ENDPOINT_NAME, "AllTraffic", tiny_trained_model.name, "sensor-0", "ozone", "h",
        [(first + timedelta(hours=i)).isoformat() for i in range(3)], [40.0, 41.0, 42.0],
        {"0.1": [30.0, 31.0, 32.0], "0.5": [40.0, 41.0, 42.0], "0.9": [50.0, 51.0, 52.0]},
    )  # fmt: skip
    page.select_option("#forecast-variant", "AllTraffic")  # picking the variant reloads both charts
    expect(page).to_have_url(re.compile(r"variant=AllTraffic"))
    expect(page.locator("#past-chart .legendtext").last).to_have_text("actual")
    assert page.locator("#past-chart path.js-fill").count() >= 1  # a past forecast's p10-p90 band
    expect(page.locator("#past-accuracy tbody tr")).to_have_count(1)
    expect(page.locator("#past-accuracy tbody tr td").nth(3)).to_have_text(re.compile(r"^[1-9]"))  # matured points
    expect(page.locator("#past-empty")).to_be_hidden()
    browser.screenshot("forecasts")
    browser.assert_clean()
