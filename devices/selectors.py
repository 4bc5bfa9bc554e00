"""Reads of devices and their certificates."""

from __future__ import annotations

from django.db.models import QuerySet

from devices.models import Device


def device_list() -> QuerySet[Device]:
    """Return all devices ordered by name, with their certificates prefetched."""
    return Device.objects.prefetch_related("certificates").order_by("name")


def device_get(name_or_id: str | int) -> Device:
    """Return the device with this primary key (an int) or name (a str; a numeric str falls back to the pk).

    Raises Device.DoesNotExist when there is none.
    """
    devices = device_list()
    if isinstance(name_or_id, int):
        return devices.get(pk=name_or_id)
    try:
        return devices.get(name=name_or_id)
    except Device.DoesNotExist:
        if name_or_id.isdigit():
            return devices.get(pk=int(name_or_id))
        raise
