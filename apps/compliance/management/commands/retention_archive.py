"""`manage.py retention_archive`: archive closed conversations past the retention period now."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.compliance import retention


class Command(BaseCommand):
    help = "Archive closed conversations older than the retention period to cold storage."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--older-than-days",
            type=int,
            default=None,
            help=f"default: COMPLIANCE['RETENTION_DAYS'] ({settings.COMPLIANCE['RETENTION_DAYS']})",
        )
        parser.add_argument("--batch-size", type=int, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            run = retention.conversations_archive(
                older_than_days=options["older_than_days"], batch_size=options["batch_size"]
            )
        except retention.ArchiveVerificationError as exc:
            raise CommandError(f"archive verification failed, nothing was deleted: {exc}") from exc
        self.stdout.write(
            f"Archived {run.conversations} conversations ({run.messages} messages) "
            f"in {len(run.batches)} batches."
        )
        for batch in run.batches:
            self.stdout.write(f"  {batch}")
