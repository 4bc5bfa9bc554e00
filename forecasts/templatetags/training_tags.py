"""Template filters of the training pages."""

from typing import Any

from django import template

register = template.Library()


@register.filter
def metric(values: dict | None, name: str) -> Any:
    """Return values[name] (metric names hold a colon, which template lookups cannot spell); None if absent."""
    return (values or {}).get(name)
