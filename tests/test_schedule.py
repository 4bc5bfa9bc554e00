"""The periodic pipeline cycle: which steps are due, and that beat can send the cycle task."""

import pytest

from forecasts.models import PipelineRun, TrainedModel
from forecasts.schedule import due_steps, schedule_due_steps

pytestmark = pytest.mark.django_db


def kinds(steps):
    return [kind for kind, _ in steps]


def test_a_fresh_system_is_due_for_every_step():
    assert kinds(due_steps()) == ["crawl", "etl", "train", "deploy"]


def test_steps_in_progress_are_not_queued_again(celery_app_on_redis):
    run_ids = schedule_due_steps()
    assert len(run_ids) == 4
    assert PipelineRun.objects.filter(status="queued").count() == 4
    assert schedule_due_steps() == []


def test_a_fresh_model_is_not_retrained(settings):
    settings.TRAIN_INTERVAL_S = 3600
    TrainedModel.objects.create(name="m1", metric="ozone", artifact_key="models/m1/output/model.tar.gz")
    assert kinds(due_steps()) == ["crawl", "etl"]
    settings.TRAIN_INTERVAL_S = 0
    assert kinds(due_steps()) == ["crawl", "etl", "train", "deploy"]


def test_beat_can_send_the_cycle_task(celery_app_on_redis):
    from forecasts.tasks import pipeline_cycle

    # What celery beat does every IOTCAST_PIPELINE_INTERVAL_S: the task's limits must be consistent.
    assert pipeline_cycle.apply_async().id


def test_the_admins_schedule_overrides_the_settings(settings):
    from datetime import timedelta

    from django.utils import timezone

    from dashboard.models import PipelineSchedule

    settings.PIPELINE_INTERVAL_S, settings.TRAIN_INTERVAL_S = 120, 3600
    TrainedModel.objects.create(name="m1", metric="ozone", artifact_key="models/m1/output/model.tar.gz")
    etl = PipelineRun.objects.create(kind="etl", status="succeeded")
    PipelineRun.objects.filter(pk=etl.pk).update(created_at=timezone.now() - timedelta(seconds=110))
    assert kinds(due_steps()) == ["crawl", "etl"]  # within half a beat period of the default interval: due

    PipelineSchedule.objects.create(pk=1, crawl_interval_s=600, train_interval_s=60)
    TrainedModel.objects.update(created_at=timezone.now() - timedelta(seconds=90))
    assert kinds(due_steps()) == ["train", "deploy"]  # the ETL of 110 s ago is young for a 600 s interval
    PipelineRun.objects.filter(pk=etl.pk).update(created_at=timezone.now() - timedelta(seconds=600))
    assert kinds(due_steps()) == ["crawl", "etl", "train", "deploy"]
