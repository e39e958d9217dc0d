"""Reading the audit log (the CSV export) and the API keys a user may see."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import UTC
from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext as _

from apps.audit.models import ApiKey, AuditEvent
from apps.audit.services import CONTENT_FIELDS, OPTIONAL_CONTENT_FIELDS
from apps.core.exceptions import NotFoundError

# Every column: the id, the hashed content, then the chain.
CSV_COLUMNS = ("id", *CONTENT_FIELDS, *OPTIONAL_CONTENT_FIELDS, "prev_hash", "hash")

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
                event.ip_pseudonym,
                event.prev_hash,
                event.hash,
            ]
        )


def api_keys_visible_to(user: Any) -> QuerySet[ApiKey]:
    """The keys `user` may list and manage: every key for a superuser, otherwise the keys that
    act for the user (whatever the model permissions, which are checked by the caller)."""
    keys = ApiKey.objects.select_related("user").order_by("-created_at", "-pk")
    if user.is_active and user.is_superuser:
        return keys
    return keys.filter(user_id=user.pk)


def api_key_visible_get(user: Any, prefix: str) -> ApiKey:
    """The key with this prefix among those `user` may see; NotFoundError otherwise (whether it
    exists for somebody else is not told)."""
    api_key = api_keys_visible_to(user).filter(prefix=prefix).first()
    if api_key is None:
        raise NotFoundError(
            _("There is no API key with the prefix %(prefix)s.") % {"prefix": prefix[:16]},
            code="not_found",
        )
    return api_key
