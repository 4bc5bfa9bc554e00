"""Admin for endpoints and their production variants."""

from django.contrib import admin

from deployments.models import Endpoint, ProductionVariant


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
    list_display = ["__str__", "model", "weight"]
    list_select_related = ["endpoint", "model"]
    search_fields = ["endpoint__name", "name", "model__name"]
