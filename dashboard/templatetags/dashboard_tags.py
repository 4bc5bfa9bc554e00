"""Template helpers: times the viewer's browser localizes, numbers with units, run summaries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template
from django.urls import reverse
from django.utils.html import format_html

from dashboard import units
from dashboard.selectors import iso

register = template.Library()
MISSING = "\u2013"  # an en dash marks a missing value


@register.simple_tag
def when(value: datetime | None, empty: str = "never") -> str:
    """Render a <time> in UTC; dashboard.js rewrites its text to the viewer's zone and keeps UTC in the title."""
    stamp = iso(value)
    if stamp is None:
        return format_html('<span class="muted">{}</span>', empty)
    utc = stamp.replace("T", " ").replace("Z", "")[:19] + " UTC"
    return format_html('<time class="ts" datetime="{}" title="{}">{}</time>', stamp, utc, utc)


@register.filter
def measure(value: Any, metric: str) -> str:
    """Return value with its metric's unit, e.g. '41.2 µg/m³'; MISSING when missing."""
    if not isinstance(value, int | float) or isinstance(value, bool) or value != value:
        return MISSING
    number = f"{value:,.2f}".rstrip("0").rstrip(".") if isinstance(value, float) else f"{value:,}"
    unit = units.metric_unit(metric)
    return f"{number} {unit}" if unit else number


@register.filter
def metric_label(metric: str) -> str:
    """Return a metric's readable name."""
    return units.metric_label(metric)


@register.filter
def metric_unit(metric: str) -> str:
    """Return a metric's unit."""
    return units.metric_unit(metric)


@register.filter
def get(mapping: Any, key: str) -> Any:
    """Return mapping[key], None when missing (templates cannot index with a variable)."""
    return mapping.get(key) if isinstance(mapping, dict) else None


@register.filter
def duration(seconds: float | None) -> str:
    """Return a short human duration: '4.2 s', '3 min 5 s', '2 min', '2 h 10 min', '6 h'; MISSING for None."""
    if seconds is None:
        return MISSING
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


@register.filter
def summary(result: Any, limit: int = 6) -> str:
    """Return a run result dict as 'key: value, ...' (first `limit` scalar entries), '' when empty."""
    if not isinstance(result, dict) or not result:
        return ""
    parts = []
    for key, value in result.items():
        if isinstance(value, list):
            value = f"{len(value)} items"
        elif isinstance(value, dict):
            value = f"{len(value)} entries"
        elif isinstance(value, float):
            value = f"{value:.4g}"
        parts.append(f"{key.replace('_', ' ')}: {value}")
    return ", ".join(parts[:limit]) + (", …" if len(parts) > limit else "")


@register.simple_tag
def plotly_script() -> str:
    """Render the <script> tag for the plotly.js this project serves itself."""
    from dashboard.views import plotly_version

    return format_html('<script src="{}"></script>', reverse("dashboard:plotly_js", args=[plotly_version()]))


ALARM_STATUS_TEXT = {
    "active_unack": "active, unacknowledged",
    "active_ack": "active, acknowledged",
    "cleared_unack": "cleared, unacknowledged",
    "cleared_ack": "cleared, acknowledged",
}


@register.filter
def alarm_status(status: str) -> str:
    """Return an alarm status (ThingsBoard's four) in words."""
    return ALARM_STATUS_TEXT.get(status, status)


@register.filter
def is_admin(user: Any) -> bool:
    """Return whether user holds the admin role (dashboard.roles.is_admin)."""
    from dashboard.roles import is_admin as holds_admin

    return holds_admin(user)


@register.filter
def role(user: Any) -> str:
    """Return the user's role name: "admin", "operator" or ""."""
    from dashboard.roles import role_name

    return role_name(user)


@register.simple_tag
def active_alarm_count() -> int:
    """Return how many alarms are active (uncleared), for the navigation's badge."""
    from alarms.models import Alarm

    return Alarm.objects.filter(cleared_at=None).count()
