"""How the dashboard labels each telemetry metric: a readable name and one consistent unit.

Gases other than CO are shown in µg/m³ (like PM), CO in mg/m³, as the devices report them.
"""

from __future__ import annotations

METRIC_INFO: dict[str, tuple[str, str]] = {
    "ozone": ("Ozone (O₃)", "µg/m³"),
    "particulate_matter": ("Particulate matter (PM)", "µg/m³"),
    "carbon_monoxide": ("Carbon monoxide (CO)", "mg/m³"),
    "sulfur_dioxide": ("Sulfur dioxide (SO₂)", "µg/m³"),
    "nitrogen_dioxide": ("Nitrogen dioxide (NO₂)", "µg/m³"),
}
DEFAULT_METRICS = list(METRIC_INFO)
# Fields of a reading that are not measurements, so they get no chart.
NON_METRIC_FIELDS = frozenset({"timestamp", "received_at", "message_id", "device_id", "latitude", "longitude"})


def metric_label(metric: str) -> str:
    """Return the readable name of a metric (unknown metrics get their name, tidied)."""
    return METRIC_INFO.get(metric, (metric.replace("_", " ").capitalize(), ""))[0]


def metric_unit(metric: str) -> str:
    """Return the unit a metric is shown in, '' when unknown."""
    return METRIC_INFO.get(metric, ("", ""))[1]


def metric_order(metrics: list[str]) -> list[str]:
    """Return metrics with the known ones first in their usual order, the rest alphabetically."""
    known = [name for name in DEFAULT_METRICS if name in metrics]
    return known + sorted(set(metrics) - set(known))


def metrics_meta(metrics: list[str]) -> dict[str, dict[str, str]]:
    """Return {metric: {"label", "unit"}} for the given metrics (what the JS needs to draw axes)."""
    return {name: {"label": metric_label(name), "unit": metric_unit(name)} for name in metrics}
