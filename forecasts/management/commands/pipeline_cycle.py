"""`python manage.py pipeline_cycle`: queue the due pipeline steps now, as the beat schedule does."""

from typing import Any

from django.core.management.base import BaseCommand

from forecasts.schedule import schedule_due_steps


class Command(BaseCommand):
    help = (
        "Queue the pipeline steps that are due now (crawl and ETL, plus train and deploy when no model "
        "is fresh) on the Celery worker, exactly as the periodic beat schedule does, and print the run ids."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        run_ids = schedule_due_steps()
        if run_ids:
            self.stdout.write(f"queued runs {', '.join(f'#{run_id}' for run_id in run_ids)}")
        else:
            self.stdout.write("nothing due: the steps are already queued or running")
