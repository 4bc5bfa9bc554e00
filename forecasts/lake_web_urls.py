"""Operator pages of this stage (server-rendered, extending dashboard/base.html)."""

urlpatterns: list = []
