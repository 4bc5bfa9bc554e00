"""A pipeline run's log: what the state machine and the steps write, its bound, and the pipeline page showing it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from forecasts.models import PipelineRun
from forecasts.runs import run_claim, run_create, run_execute, run_fail, run_log_append, run_requeue
from forecasts.steps import step_summary, step_work
from tests.telemetry_helpers import put_raw, reading

pytestmark = pytest.mark.django_db


def messages(run_id: int) -> list[tuple[str, str]]:
    return [(line["level"], line["message"]) for line in PipelineRun.objects.get(pk=run_id).log]


def test_an_etl_run_logs_its_start_progress_and_rows_processed(lake):
    start = datetime.now(UTC) - timedelta(hours=1)
    put_raw(lake, [reading("dev-a", start + timedelta(minutes=i), ozone=40 + i) for i in range(7)])
    put_raw(lake, [reading("dev-b", start + timedelta(minutes=i)) for i in range(5)])
    run = run_create("etl", {"bookmark_option": "job-bookmark-enable"})

    finished = run_execute(run.pk, step_work("etl"))

    assert finished.status == PipelineRun.Status.SUCCEEDED and finished.result["rows_written"] == 12
    log = messages(run.pk)
    assert log[0] == ("info", "started etl run (bookmark_option=job-bookmark-enable)")
    progress = [message for _, message in log[1:-1]]
    assert progress and all(message.startswith("[") and "%]" in message for message in progress)
    assert any("rows written" in message for message in progress)  # the ETL job's own milestone
    level, last = log[-1]
    assert level == "info" and last.startswith("succeeded in ") and " s: " in last
    assert "objects processed 2, rows read 12, rows written 12" in last  # the rows this run processed
    for line in finished.log:
        assert datetime.fromisoformat(line["t"]).tzinfo is not None  # shown in the viewer's zone, so aware


def test_a_failing_run_logs_the_error_and_a_retry_logs_a_warning():
    run = run_create("crawl")

    def work(params, progress):
        progress(30, "listing raw objects")
        progress(30, "listing raw objects")  # a repeat adds no line
        raise OSError("lake unreachable")

    with pytest.raises(OSError):
        run_execute(run.pk, work)
    assert messages(run.pk) == [
        ("info", "started crawl run (defaults)"),
        ("info", "[ 30%] listing raw objects"),
        ("error", "failed: OSError: lake unreachable"),
    ]
    run_requeue(run.pk, "lake unreachable")
    assert messages(run.pk)[-1] == ("warning", "queued again for a retry: lake unreachable")
    assert run_claim(run.pk) and messages(run.pk)[-1] == ("info", "started crawl run (defaults)")


def test_a_redelivered_or_finished_run_gets_no_more_lines():
    run = run_create("etl")
    run_execute(run.pk, lambda params, progress: {})
    before = messages(run.pk)
    run_execute(run.pk, lambda params, progress: {})  # redelivered: not claimed again
    run_fail(run.pk, "too late")  # a finished run does not change
    assert messages(run.pk) == before and len(before) == 2


def test_the_log_keeps_only_the_newest_lines():
    run = run_create("train")
    for number in range(PipelineRun.LOG_LINES + 5):
        run_log_append(run.pk, f"line {number}")
    run_log_append(run.pk, "x" * 2000, level="warning")
    log = PipelineRun.objects.get(pk=run.pk).log
    assert len(log) == PipelineRun.LOG_LINES
    assert log[0]["message"] == "line 6" and log[-2]["message"] == f"line {PipelineRun.LOG_LINES + 4}"
    assert log[-1] == {**log[-1], "level": "warning", "message": "x" * PipelineRun.LOG_MESSAGE_CHARS}
    run_log_append(10**9, "no such run")  # ignored, not raised


def test_step_summaries_count_what_each_step_processed():
    etl = {"objects_processed": 3, "rows_read": 10, "rows_written": 9, "rows_rejected": 1, "partitions_written": ["a"]}
    assert step_summary("etl", etl) == (
        "objects processed 3, rows read 10, rows written 9, rows rejected 1, partitions written 1"
    )
    deploy = {"endpoint": "iotcast-forecast", "status": "InService", "variants": [{"name": "AllTraffic"}]}
    assert step_summary("deploy", deploy) == "endpoint iotcast-forecast, status InService, variants 1"
    assert step_summary("train", {"metrics": {"RMSE": 1.0}}) == "" and step_summary("nope", etl) == ""


def test_the_pipeline_page_and_runs_json_show_the_log(client):
    client.force_login(get_user_model().objects.create_user("operator", password="pw"))
    run = run_create("crawl")
    run_claim(run.pk)
    run_fail(run.pk, "ValueError: <bad> raw object\n\nTraceback ...")
    page = client.get(reverse("dashboard:pipeline")).content.decode()
    assert f'<details class="run-log" data-run="{run.pk}"><summary>log (2 lines)</summary>' in page
    assert '<li class="log-error">' in page and "failed: ValueError: &lt;bad&gt; raw object" in page  # escaped
    data = client.get(reverse("dashboard:pipeline_runs")).json()
    assert [line["message"] for line in data["runs"][0]["log"]] == [
        "started crawl run (defaults)",
        "failed: ValueError: <bad> raw object",
    ]
