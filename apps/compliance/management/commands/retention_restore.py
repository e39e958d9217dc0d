"""`manage.py retention_restore <conversation public id>`: bring one archived conversation back."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.compliance import retention
from apps.core.exceptions import ServiceError


class Command(BaseCommand):
    help = "Restore one archived conversation (by its public id) from cold storage."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("conversation", help="the conversation's public id (a UUID)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            conversation = retention.conversation_restore(options["conversation"])
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        except retention.ArchiveVerificationError as exc:
            raise CommandError(f"the archive is damaged: {exc}") from exc
        self.stdout.write(
            f"Restored conversation {conversation.public_id} (#{conversation.pk}, "
            f"{conversation.messages.count()} messages); kept in the database for "
            f"{settings.COMPLIANCE['RESTORE_HOLD_DAYS']} days."
        )
