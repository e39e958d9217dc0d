"""`manage.py apikey_create --name NAME --user USERNAME --scopes kb:read,chat [--days N]`:
make an API key and print it (the only time it is shown)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from apps.audit.keys import api_key_create
from apps.audit.models import Scope
from apps.core.exceptions import ServiceError


class Command(BaseCommand):
    help = "Make an API key and print it once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--user", required=True, help="The username the key acts for.")
        parser.add_argument(
            "--scopes", required=True, help=f"Comma-separated: {', '.join(Scope.values)}"
        )
        parser.add_argument("--days", type=int, default=None, help="Expire after N days.")
        parser.add_argument("--rate", type=int, default=None, help="Requests per minute.")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"There is no user {options['user']!r}.")
        days = options["days"]
        try:
            created = api_key_create(
                name=options["name"],
                user=user,
                scopes=[s.strip() for s in options["scopes"].split(",") if s.strip()],
                expires_at=timezone.now() + timedelta(days=days) if days else None,
                rate_limit=options["rate"],
            )
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        self.stderr.write(f"API key {created.api_key.prefix} made; it is shown only this once:")
        self.stdout.write(created.key)
