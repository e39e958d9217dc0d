"""Reading the audit log: the CSV export."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import UTC
from typing import Any

from django.db.models import QuerySet

from apps.audit.models import AuditEvent
from apps.audit.services import CONTENT_FIELDS

# Every column: the id, the hashed content, then the chain.
CSV_COLUMNS = ("id", *CONTENT_FIELDS, "prev_hash", "hash")

# A spreadsheet runs a cell that starts with one of these as a formula; actor and endpoint come
# from the outside world, so such cells are written with a leading apostrophe.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class _Echo:
    """A file-like object whose write() returns the line, for csv.writer over a generator."""

    def write(self, value: str) -> str:
        return value


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def audit_csv_lines(events: QuerySet[AuditEvent]) -> Iterator[str]:
    """The events as CSV lines (header first), oldest first, read in batches so an export of the
    whole log never holds it in memory."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    rows: Iterable[AuditEvent] = events.order_by("id").iterator(chunk_size=2000)
    for event in rows:
        yield writer.writerow(
            [
                event.pk,
                event.created_at.astimezone(UTC).isoformat(),
                _cell(event.request_id),
                event.kind,
                event.actor_id,
                _cell(event.actor),
                event.ip,
                event.method,
                _cell(event.endpoint),
                event.status,
                event.input_tokens,
                event.output_tokens,
                event.latency_ms,
                json.dumps(event.detail, ensure_ascii=False, sort_keys=True),
                event.prev_hash,
                event.hash,
            ]
        )
