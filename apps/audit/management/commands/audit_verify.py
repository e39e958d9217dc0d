"""Check the audit log's hash chain: one line of output, exit status 1 when it is broken."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand

from apps.audit.services import audit_verify


class Command(BaseCommand):
    help = "Recompute the audit log's hash chain; exit 1 at the first broken link."

    def handle(self, *args: Any, **options: Any) -> None:
        result = audit_verify()
        if result.ok:
            self.stdout.write(
                f"audit chain ok: {result.checked} events, last hash {result.last_hash}"
            )
            return
        self.stderr.write(
            f"audit chain broken at event {result.first_bad_id}: {result.reason} "
            f"({result.checked} events read, last good hash {result.last_hash})"
        )
        sys.exit(1)
