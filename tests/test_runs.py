"""The PipelineRun state machine and the schedule that queues steps."""

import pytest

from forecasts.models import PipelineRun
from forecasts.runs import run_claim, run_create, run_execute, run_requeue

pytestmark = pytest.mark.django_db
Status = PipelineRun.Status


def test_a_run_is_claimed_once():
    run = run_create("etl")
    assert run_claim(run.pk) is True
    assert run_claim(run.pk) is False
    run.refresh_from_db()
    assert run.status == Status.RUNNING and run.started_at is not None


def test_execute_records_progress_and_result():
    run = run_create("etl", {"answer": 41})
    echoed = []

    def work(params, progress):
        progress(50, "half way")
        return {"answer": params["answer"] + 1}

    finished = run_execute(run.pk, work, echo=lambda pct, msg: echoed.append((pct, msg)))
    assert finished.status == Status.SUCCEEDED
    assert finished.result == {"answer": 42}
    assert finished.progress == 100.0
    assert echoed == [(50, "half way")]


def test_execute_records_failure_and_reraises():
    run = run_create("etl")

    def work(params, progress):
        raise ValueError("raw zone unreadable")

    with pytest.raises(ValueError):
        run_execute(run.pk, work)
    run.refresh_from_db()
    assert run.status == Status.FAILED
    assert run.message == "ValueError: raw zone unreadable"
    assert "Traceback" in run.error


def test_a_redelivered_run_does_its_work_once():
    run = run_create("etl")
    calls = []

    def work(params, progress):
        calls.append(1)
        return {}

    run_execute(run.pk, work)
    again = run_execute(run.pk, work)
    assert calls == [1]
    assert again.status == Status.SUCCEEDED


def test_requeue_puts_a_failed_run_back():
    run = run_create("crawl")
    run_claim(run.pk)
    PipelineRun.objects.filter(pk=run.pk).update(status=Status.FAILED, error="lake down")
    run_requeue(run.pk, "lake down")
    run.refresh_from_db()
    assert run.status == Status.QUEUED and run.message == "retrying: lake down" and run.error == ""
