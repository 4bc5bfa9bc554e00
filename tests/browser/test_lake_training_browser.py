"""The data lake pages, a training job's page and a run's log in a real browser, then signing out from the nav.

Real parts behind them: the test's folder lake with DuckDB (crawl, SQL, import, export) and a tiny DeepAR job
trained in this process through the pipeline's run state machine.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from devices.models import Device
from tests.telemetry_helpers import put_raw, reading

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]
HISTORY_CSV = b"timestamp,o3,pm\n2026-01-01T00:00:00Z,41.5,12\n2026-01-01T01:00:00Z,n/a,12\n2026-01-01T02:00:00Z,43,\n"


def test_an_admin_browses_the_catalog_queries_imports_and_exports(browser, lake):
    from forecasts.services.crawl import crawl_execute

    now = datetime.now(UTC) - timedelta(seconds=30)
    for name, minutes in (("aq-lake-01", 6), ("aq-lake-02", 3)):
        Device.objects.create(name=name, latitude=56.16, longitude=10.21)
        put_raw(lake, [reading(name, now - timedelta(minutes=m), ozone=40.0 + m) for m in range(minutes)])
    crawl_execute({})

    browser.login("admin")
    page = browser.goto("/lake/")
    expect(page.locator("h1")).to_have_text("Data lake")
    expect(page.locator("main")).to_contain_text("telemetry_raw")
    expect(page.locator("main")).to_contain_text("ozone")
    browser.screenshot("lake-catalog")

    page.get_by_role("link", name="SQL console").click()
    page.fill("#id_sql", "SELECT device_id, count(*) AS readings, round(avg(ozone), 2) AS mean_ozone\n"
              "FROM telemetry_live GROUP BY device_id ORDER BY device_id")  # fmt: skip
    page.get_by_role("button", name="Run query").click()
    expect(page.locator("#row-count")).to_have_text("2")
    rows = page.locator("#sql-result tbody tr")
    expect(rows.nth(0)).to_contain_text("aq-lake-01")
    expect(rows.nth(0).locator("td").nth(1)).to_have_text("6")
    expect(rows.nth(1).locator("td").nth(2)).to_have_text("41.0")  # ozone 40, 41, 42
    browser.screenshot("lake-sql")

    page.get_by_role("link", name="Import").click()
    page.set_input_files("#id_file", {"name": "history.csv", "mimeType": "text/csv", "buffer": HISTORY_CSV})
    page.select_option("#id_device", "aq-lake-02")
    page.fill("#id_metric_map", "o3=ozone pm=particulate_matter")
    page.locator("#import-form button[type=submit]").click()
    expect(page.locator("#imported")).to_have_text("2")
    expect(page.locator("#rejected")).to_have_text("1")
    expect(page.locator("#import-result")).to_contain_text("could not convert string to float")
    browser.screenshot("lake-import")

    page.get_by_role("link", name="Export").click()
    page.select_option("#id_device", "aq-lake-02")
    page.locator("#export-form input[value=ozone]").check()
    page.fill("#id_start", "2025-12-31T00:00")  # back far enough for the imported history
    page.select_option("#id_format", "csv")
    with page.expect_download() as download:
        page.locator("#export-form button[type=submit]").click()
    lines = open(download.value.path(), encoding="utf-8").read().splitlines()
    assert lines[0] == "timestamp,received_at,message_id,ozone"
    assert sorted(line.rsplit(",", 1)[1] for line in lines[1:]) == ["40.0", "41.0", "41.5", "42.0", "43.0"]
    browser.screenshot("lake-export")
    browser.assert_clean()


def test_a_training_job_page_the_runs_log_and_signing_out(browser, lake):
    from forecasts.models import TrainingJob
    from forecasts.runs import run_execute
    from forecasts.services.datasets import DatasetSpec, dataset_build
    from forecasts.services.training import training_job_submit
    from forecasts.steps import step_work
    from tests.fixtures.endpoint import TINY_HYPERPARAMETERS
    from tests.test_training_datasets import put_series

    put_series(lake, devices=3, hours=120)
    dataset_build(DatasetSpec(name="tiny", metric="ozone"))
    tiny = {
        k: v for k, v in TINY_HYPERPARAMETERS.items() if k not in {"time_freq", "context_length", "prediction_length"}
    }
    job = training_job_submit("tiny", tiny, queue=False)
    run = run_execute(job.run.pk, step_work("train"))
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.SUCCEEDED, job.error

    browser.login("operator")
    page = browser.goto(f"/training/jobs/{job.name}")
    expect(page.locator("h1")).to_contain_text(job.name)
    expect(page.locator("h1 .badge")).to_have_text("succeeded")
    expect(page.locator("#job-epoch")).to_have_text(f"{job.epochs}/{job.epochs}")
    expect(page.locator("main svg").first).to_be_visible()  # the loss curve
    expect(page.locator("main")).to_contain_text(f"Registered {job.name}")
    browser.screenshot("training-job")

    page = browser.goto("/pipeline/")
    log = page.locator(f'#runs-body details.run-log[data-run="{run.pk}"]')
    expect(log.locator("summary")).to_have_text(f"log ({len(run.log)} lines)")
    log.locator("summary").click()
    lines = log.locator(".log-lines li")
    expect(lines.first).to_contain_text("started train run")
    expect(lines.filter(has_text="epoch").first).to_be_visible()
    expect(lines.last).to_contain_text(re.compile(rf"succeeded in [\d.]+ s: model {job.name}, dataset tiny"))
    expect(lines.first.locator("time.ts")).to_have_attribute("title", re.compile(r"UTC$"))
    page.locator("#runs-body td").first.scroll_into_view_if_needed()
    browser.screenshot("pipeline-log")
    expect(page.locator("#runs-status")).to_contain_text("updated", timeout=30_000)  # the table was redrawn...
    expect(page.locator(f'#runs-body details.run-log[data-run="{run.pk}"]')).to_have_attribute("open", "")  # ...open

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/$"))
    expect(page.locator("button[type=submit]")).to_have_text("Sign in")
    browser.goto("/pipeline/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/pipeline/"))
    browser.assert_clean()
