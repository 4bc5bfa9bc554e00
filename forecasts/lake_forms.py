"""Forms of the /lake/ pages: the SQL console, the readings import upload and the readings export."""

from __future__ import annotations

from pathlib import PurePath

from django import forms

from devices.models import Device
from forecasts.selectors import telemetry_metrics
from forecasts.services.export import EXPORT_FORMATS
from forecasts.services.imports import metric_map_parse

EXAMPLE_SQL = (
    "SELECT device_id, count(*) AS readings, avg(ozone) AS mean_ozone\n"
    "FROM telemetry_live\nGROUP BY device_id\nORDER BY readings DESC"
)
IMPORT_KINDS = {".csv": "csv", ".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "ndjson"}


def _device_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in Device.objects.order_by("name").values_list("name", flat=True)]


class SqlConsoleForm(forms.Form):
    sql = forms.CharField(
        label="Query",
        initial=EXAMPLE_SQL,
        max_length=20_000,
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false", "class": "sql-editor"}),
    )


class ImportForm(forms.Form):
    file = forms.FileField(label="CSV or NDJSON file", help_text=".csv with a header row, or .ndjson/.jsonl")
    device = forms.ChoiceField(label="Device")
    metric_map = forms.CharField(
        label="Metric map (optional)",
        required=False,
        help_text="col=metric pairs, space or line separated: import only these columns, renamed",
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["device"].choices = _device_choices()

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if PurePath(upload.name).suffix.lower() not in IMPORT_KINDS:
            raise forms.ValidationError("upload a .csv, .ndjson, .jsonl or .json file")
        return upload

    def clean_metric_map(self) -> dict[str, str]:
        try:
            return metric_map_parse(self.cleaned_data["metric_map"].split())
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from exc

    @property
    def kind(self) -> str:
        """Return "csv" or "ndjson" from the uploaded file's extension (after validation)."""
        return IMPORT_KINDS[PurePath(self.cleaned_data["file"].name).suffix.lower()]


class ExportForm(forms.Form):
    device = forms.ChoiceField(label="Device")
    start = forms.DateTimeField(
        label="From (UTC)", required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    end = forms.DateTimeField(
        label="To (UTC)", required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    metrics = forms.MultipleChoiceField(
        label="Metrics", required=False, widget=forms.CheckboxSelectMultiple, help_text="none ticked: all of them"
    )
    format = forms.ChoiceField(label="Format", choices=[(name, name.upper()) for name in EXPORT_FORMATS])

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["device"].choices = _device_choices()
        self.fields["metrics"].choices = [(name, name) for name in telemetry_metrics()]

    def clean(self):
        data = super().clean()
        if data.get("start") and data.get("end") and data["start"] > data["end"]:
            raise forms.ValidationError("the start must not be after the end")
        return data
