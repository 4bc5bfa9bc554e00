"""The IoTCast Django project: settings, URLs and the Celery app."""

from iotcast.celery import app as celery_app

__all__ = ("celery_app",)
