"""The dashboard's two roles, enforced in every view (and offered to the REST APIs as DRF permissions).

- operator: any active, signed-in user. Sees every page, starts crawl/ETL runs, acknowledges and clears alarms.
- admin: a staff user, a superuser, or a member of the Django group "admin". Everything an operator may, plus
  training/deploying, schedule changes, alarm rules and endpoint weights.

The group "operator" exists for clarity in the Django admin (membership grants nothing beyond being signed in).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework.permissions import SAFE_METHODS, BasePermission

ADMIN_GROUP = "admin"
OPERATOR_GROUP = "operator"
User = AbstractBaseUser | AnonymousUser


def is_operator(user: User) -> bool:
    """Return whether user may use the dashboard at all (signed in and active)."""
    return bool(user.is_authenticated and user.is_active)


def is_admin(user: User) -> bool:
    """Return whether user holds the admin role (staff, superuser or in the "admin" group)."""
    if not is_operator(user):
        return False
    if user.is_staff or user.is_superuser:
        return True
    return user.groups.filter(name=ADMIN_GROUP).exists()


def role_name(user: User) -> str:
    """Return "admin", "operator" or "" (anonymous), as shown next to the user name."""
    return "admin" if is_admin(user) else "operator" if is_operator(user) else ""


def operator_required(view: Callable) -> Callable:
    """Decorate a page view: redirect anonymous users to the login page (inactive users cannot sign in)."""
    return login_required(view)


def admin_required(view: Callable) -> Callable:
    """Decorate a view: login required, then 403 (PermissionDenied) unless the user is an admin."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not is_admin(request.user):
            raise PermissionDenied("Only admins may do this.")
        return view(request, *args, **kwargs)

    return login_required(wrapper)


def operator_required_json(view: Callable) -> Callable:
    """Like operator_required, but answer 401 JSON (a polling script cannot follow a login redirect)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not is_operator(request.user):
            return JsonResponse({"error": "Your session has ended: sign in again."}, status=401)
        return view(request, *args, **kwargs)

    return wrapper


class IsAdminRole(BasePermission):
    """DRF permission: only admins (see is_admin)."""

    message = "Only admins may do this."

    def has_permission(self, request, view) -> bool:
        return is_admin(request.user)


class IsAdminRoleOrReadOnly(BasePermission):
    """DRF permission: operators may read, only admins may change anything."""

    message = "Only admins may change this; operators may read it."

    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return is_operator(request.user)
        return is_admin(request.user)
