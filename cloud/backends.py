"""Resolve the CLOUD_BACKENDS setting (shaped like Django's STORAGES) lazily.

Services call get_backend("lake") and never know which implementation answers.
"""

from functools import cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

CAPABILITIES = ("lake", "identity", "catalog", "etl", "query", "training", "hosting")


@cache
def get_backend(capability: str) -> Any:
    """Return the configured backend instance for a capability.

    Raises ImproperlyConfigured when the capability is unknown or not configured.
    """
    if capability not in CAPABILITIES:
        raise ImproperlyConfigured(f"unknown cloud capability {capability!r}; known: {', '.join(CAPABILITIES)}")
    try:
        config = settings.CLOUD_BACKENDS[capability]
    except KeyError as exc:
        raise ImproperlyConfigured(f"CLOUD_BACKENDS has no entry for {capability!r}") from exc
    backend_class = import_string(config["BACKEND"])
    return backend_class(**config.get("OPTIONS", {}))


@receiver(setting_changed)
def _reset_backends(*, setting: str, **kwargs: Any) -> None:
    # Tests override settings; a cached backend built from old settings would lie.
    if setting in {"CLOUD_BACKENDS", "LAKE_URL"}:
        get_backend.cache_clear()
