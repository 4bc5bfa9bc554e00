"""Endpoints and their production variants (SageMaker hosting's control plane)."""

from django.db import models

from forecasts.models import TrainedModel


class Endpoint(models.Model):
    class Status(models.TextChoices):
        CREATING = "Creating"
        IN_SERVICE = "InService"
        UPDATING = "Updating"
        FAILED = "Failed"

    name = models.CharField(max_length=63, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CREATING)
    failure_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ProductionVariant(models.Model):
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="variants")
    name = models.CharField(max_length=63)
    model = models.ForeignKey(TrainedModel, on_delete=models.PROTECT, related_name="variants")
    weight = models.FloatField(default=1.0)

    class Meta:
        unique_together = [("endpoint", "name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.endpoint.name}/{self.name}"
