"""manage.py create_api_token: print a REST API token for a user."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Print the DRF token of USER (send it as 'Authorization: Token <key>'); --create makes the user first."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="the user the token belongs to")
        parser.add_argument("--create", action="store_true", help="create the user (no password) when missing")

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model()
        name = options["username"]
        user = users.objects.filter(username=name).first()
        if user is None:
            if not options["create"]:
                raise CommandError(f"no user {name!r}; pass --create to create it")
            user = users.objects.create_user(username=name)
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(token.key)
