from django.contrib import admin

from alarms.models import Alarm, AlarmRule


@admin.register(AlarmRule)
class AlarmRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "metric", "operator", "threshold", "duration_minutes", "device", "enabled"]
    list_filter = ["kind", "enabled", "severity"]


@admin.register(Alarm)
class AlarmAdmin(admin.ModelAdmin):
    list_display = ["rule", "device", "severity", "value", "started_at", "acknowledged_at", "cleared_at"]
    list_filter = ["severity", "rule"]
