"""Reads of devices and their certificates."""

from __future__ import annotations

import logging

from django.db import DatabaseError
from django.db.models import QuerySet

from devices.models import Device, DeviceCertificate, TopicRule

log = logging.getLogger("devices")


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


def device_names_active() -> list[str]:
    """Return the names of the devices whose status is active (what the ingest accepts telemetry from)."""
    return list(Device.objects.filter(status=Device.Status.ACTIVE).values_list("name", flat=True))


def certificate_get(certificate_id: str) -> DeviceCertificate:
    """Return the certificate with this id, with its device. Raises DeviceCertificate.DoesNotExist."""
    return DeviceCertificate.objects.select_related("device").get(certificate_id=certificate_id)


def topic_rule_list() -> QuerySet[TopicRule]:
    """Return every topic rule ordered by name."""
    return TopicRule.objects.order_by("name")


def topic_rule_detail(name: str) -> TopicRule:
    """Return the topic rule named name, enabled or not. Raises TopicRule.DoesNotExist."""
    return TopicRule.objects.get(name=name)


def topic_rule_get(name: str) -> TopicRule | None:
    """Return the enabled topic rule named name, or None when there is none (or the database is not set up)."""
    try:
        return TopicRule.objects.filter(name=name, enabled=True).first()
    except DatabaseError as exc:  # e.g. an ingest started before migrate: run with the defaults
        log.warning("cannot read topic rule %r (%s); using the defaults", name, exc)
        return None


def topic_rule_version(name: str) -> tuple | None:
    """Return what changes when the rule named name is saved or its state changes (None: no such rule).

    Raises DatabaseError when the registry cannot be read.
    """
    return TopicRule.objects.filter(name=name).values_list("updated_at", "enabled", "pk").first()
