"""Forms of the dashboard pages (validation lives here; the services receive clean values)."""

from __future__ import annotations

from django import forms

from alarms.models import AlarmRule
from dashboard.models import PipelineSchedule
from dashboard.selectors import forecast_metrics_safe
from dashboard.units import metric_label


class AlarmRuleForm(forms.ModelForm):
    """A new alarm rule: a threshold on readings or a forecast crossing, for one device or all."""

    metric = forms.ChoiceField()

    class Meta:
        model = AlarmRule
        fields = [
            "name",
            "kind",
            "metric",
            "operator",
            "threshold",
            "duration_minutes",
            "quantile",
            "device",
            "severity",
        ]
        labels = {
            "duration_minutes": "For (minutes)",
            "quantile": "Forecast quantile",
            "device": "Device (empty: every device)",
        }
        help_texts = {
            "duration_minutes": "Threshold rules: every reading of this many minutes crosses (0: the newest does).",
            "quantile": "Forecast rules: the quantile that must cross within the model's horizon.",
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        metrics, _error = forecast_metrics_safe()
        self.fields["metric"].choices = [(name, metric_label(name)) for name in metrics]
        self.fields["device"].empty_label = "every device"
        self.fields["threshold"].widget.attrs["step"] = "any"


class ScheduleForm(forms.ModelForm):
    """The admins' pipeline schedule: seconds between crawl/ETL cycles and between retrainings (empty: default)."""

    class Meta:
        model = PipelineSchedule
        fields = ["crawl_interval_s", "train_interval_s"]
        labels = {"crawl_interval_s": "Crawl + ETL every (s)", "train_interval_s": "Retrain every (s)"}
