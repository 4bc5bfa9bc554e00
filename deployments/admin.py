"""Admin for endpoints and their production variants."""

from django.contrib import admin

from deployments.models import Endpoint, EndpointConfig, EndpointEvent, EndpointOperation, ProductionVariant


class ProductionVariantInline(admin.TabularInline):
    model = ProductionVariant
    extra = 0
    autocomplete_fields: list[str] = []


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "updated_at"]
    list_filter = ["status"]
    search_fields = ["name"]
    readonly_fields = ["created_at", "updated_at"]
    inlines = [ProductionVariantInline]


@admin.register(ProductionVariant)
class ProductionVariantAdmin(admin.ModelAdmin):
    list_display = ["__str__", "model", "weight", "instance_count", "shadow"]
    list_select_related = ["endpoint", "model"]
    search_fields = ["endpoint__name", "name", "model__name"]


@admin.register(EndpointConfig)
class EndpointConfigAdmin(admin.ModelAdmin):
    list_display = ["name", "endpoint_name", "created_at"]
    search_fields = ["name", "endpoint_name"]
    readonly_fields = ["name", "endpoint_name", "variants", "created_at"]


@admin.register(EndpointEvent)
class EndpointEventAdmin(admin.ModelAdmin):
    list_display = ["at", "endpoint_name", "status", "message"]
    list_filter = ["status"]
    search_fields = ["endpoint_name", "message"]


@admin.register(EndpointOperation)
class EndpointOperationAdmin(admin.ModelAdmin):
    list_display = ["pk", "kind", "endpoint_name", "status", "progress", "message", "created_at"]
    list_filter = ["kind", "status"]
    search_fields = ["endpoint_name", "message"]
    readonly_fields = ["steps", "result", "error", "created_at", "started_at", "finished_at"]
