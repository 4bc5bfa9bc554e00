"""`python manage.py demo_setup`: the demo's one-time set-up (admin user, demo devices, broker config)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from rest_framework.authtoken.models import Token

DEMO_DEVICES = [
    ("aq-aarhus-01", 56.1572, 10.2107),
    ("aq-copenhagen-01", 55.6761, 12.5683),
    ("aq-odense-01", 55.4038, 10.4024),
]
# Firehose's default interval (300 s) would keep a new demo's charts empty for five minutes: the demo's
# topic rule writes an object every 10 s instead (production rules keep the model's 300 s default).
DEMO_BUFFER_INTERVAL_S = 10


class Command(BaseCommand):
    help = (
        "Prepare the local demo: create the admin user (password saved under the state dir and printed), "
        "register the demo devices and write their connection kits, and write the Mosquitto mTLS config and "
        "the ingest service's credentials, and create the topic rule with a short buffer interval "
        "(--buffer-interval-s) so that readings reach the lake quickly. Safe to run again: existing users, "
        "devices and kits are kept; the rule's interval is set again, its other settings are kept."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--devices", type=int, default=3, choices=range(0, 4), help="demo devices (0-3)")
        parser.add_argument(
            "--buffer-interval-s",
            type=int,
            default=DEMO_BUFFER_INTERVAL_S,
            choices=range(0, 901),
            metavar="0-900",
            help="the demo topic rule's Firehose buffer interval (default %(default)s s; Firehose's is 300)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        password = self._admin_password()
        kits = [self._device_kit(*spec) for spec in DEMO_DEVICES[: options["devices"]]]
        config = self._broker_config()
        rule = self._topic_rule(options["buffer_interval_s"])
        token = Token.objects.get_or_create(user=get_user_model().objects.get(username="admin"))[0]
        self.stdout.write(f"admin login: admin / {password}")
        self.stdout.write(f"API token for admin: {token.key}")
        self.stdout.write(f"broker config: {config}")
        self.stdout.write(f"topic rule: {rule.name} (buffer {rule.buffer_size_mb} MiB / {rule.buffer_interval_s} s)")
        for kit in kits:
            self.stdout.write(f"device kit: {kit}")

    def _admin_password(self) -> str:
        secret_file = settings.STATE_DIR / "admin-password.txt"
        user_model = get_user_model()
        if user_model.objects.filter(username="admin").exists() and secret_file.exists():
            return secret_file.read_text().strip()
        password = secrets.token_urlsafe(12)
        user, _ = user_model.objects.get_or_create(username="admin", defaults={"is_staff": True, "is_superuser": True})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        secret_file.write_text(password + "\n")
        secret_file.chmod(0o600)
        return password

    def _device_kit(self, name: str, latitude: float, longitude: float) -> Path:
        from devices.models import Device
        from devices.services import device_kit_write, device_register

        kit_dir = settings.STATE_DIR / "kits" / name
        if (kit_dir / "kit.json").exists() and Device.objects.filter(name=name).exists():
            return kit_dir
        Device.objects.filter(name=name).delete()
        device, credentials = device_register(name, latitude=latitude, longitude=longitude)
        return device_kit_write(device, credentials, kit_dir)

    def _topic_rule(self, interval_s: int):
        from devices.models import DEFAULT_TOPIC_RULE, TopicRule
        from devices.services import topic_rule_deploy

        rule = TopicRule.objects.filter(name=DEFAULT_TOPIC_RULE).first() or TopicRule(name=DEFAULT_TOPIC_RULE)
        rule.buffer_interval_s = interval_s
        topic_rule_deploy(rule)
        return rule

    def _broker_config(self) -> Path:
        from cloud.backends import get_backend
        from dataplane.broker import write_broker_config

        authority = get_backend("identity")
        authority.issue_service_credentials("iotcast-ingest", settings.STATE_DIR / "services" / "iotcast-ingest")
        return write_broker_config(settings.STATE_DIR, settings.BROKER_PORT, authority)
