"""The dashboard's own state: the pipeline schedule admins change at run time."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

DAY_S = 86_400


class PipelineSchedule(models.Model):
    """One row (pk=1): run-time overrides of PIPELINE_INTERVAL_S and TRAIN_INTERVAL_S (null: the setting applies).

    Beat still fires the cycle every PIPELINE_INTERVAL_S; forecasts.schedule skips crawl/ETL (or training) while
    the newest run (or model) is younger than the interval here, so a longer interval takes effect at once.
    """

    crawl_interval_s = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(5), MaxValueValidator(7 * DAY_S)],
        help_text="Seconds between crawl + ETL cycles (empty: IOTCAST_PIPELINE_INTERVAL_S).",
    )  # fmt: skip
    train_interval_s = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(30), MaxValueValidator(30 * DAY_S)],
        help_text="Seconds between retrainings (empty: IOTCAST_TRAIN_INTERVAL_S).",
    )  # fmt: skip
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        verbose_name = "pipeline schedule"

    def __str__(self) -> str:
        crawl, train = self.crawl_interval_s or "default", self.train_interval_s or "default"
        return f"crawl/ETL every {crawl} s, train every {train} s"
