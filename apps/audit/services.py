"""Writing the audit log (`audit_record`) and checking its hash chain (`audit_verify`)."""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from apps.audit.models import GENESIS_HASH, AuditEvent
from apps.safety.pseudonyms import pseudonym

# Key of the PostgreSQL advisory lock that serialises appends ("AUDIT" in ASCII). Any other code
# that takes an advisory lock must not use this number.
CHAIN_LOCK_KEY = 0x4155444954

# The columns a row's hash covers: everything but id, prev_hash and hash. The id is left out
# because it is only known after the insert; the chain's order is carried by prev_hash instead.
CONTENT_FIELDS = (
    "created_at",
    "request_id",
    "kind",
    "actor_id",
    "actor",
    "ip",
    "method",
    "endpoint",
    "status",
    "input_tokens",
    "output_tokens",
    "latency_ms",
    "detail",
)
# Columns added later: hashed only when set, so the rows written before them keep their hashes.
OPTIONAL_CONTENT_FIELDS = ("ip_pseudonym",)


def event_hash(prev_hash: str, event: AuditEvent) -> str:
    """SHA-256 (hex) of the previous row's hash followed by this row's canonical JSON."""
    content: dict[str, Any] = {name: getattr(event, name) for name in CONTENT_FIELDS}
    for name in OPTIONAL_CONTENT_FIELDS:
        if getattr(event, name) is not None:
            content[name] = getattr(event, name)
    content["created_at"] = event.created_at.astimezone(UTC).isoformat()
    canonical = json.dumps(
        content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


def _actor_fields(actor: Any) -> tuple[int | None, str]:
    if actor is None:
        return None, ""
    if isinstance(actor, str):
        return None, actor
    if not getattr(actor, "is_authenticated", False):  # AnonymousUser
        return None, ""
    return actor.pk, actor.get_username()


def ip_kept_in_clear(actor: Any) -> bool:
    """Whether an event by `actor` may keep the client's IP address as it is.

    Staff users' and API keys' addresses are kept (the platform's own people and integrations,
    whose access the log is there to trace); anyone else's (anonymous visitors, customers, app
    users, failed logins) only as a keyed pseudonym: audit rows are never erased, so they must not
    hold a data subject's address."""
    if isinstance(actor, str):
        return actor.startswith("key:")
    if not getattr(actor, "is_authenticated", False):
        return False
    return bool(getattr(actor, "is_staff", False) or getattr(actor, "is_superuser", False))


def _optional_int(value: int | None) -> int | None:
    return None if value is None else int(value)


def audit_record(
    kind: str,
    *,
    actor: Any = None,
    request_id: str = "",
    ip: str | None = None,
    method: str = "",
    endpoint: str = "",
    status: int | None = None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    latency_ms: float | None = None,
    detail: dict[str, Any] | None = None,
    ip_in_clear: bool | None = None,
) -> AuditEvent:
    """Append one event to the log and return it.

    `actor` is a user (its id and username are kept), a string such as "key:ab12cd" for an API
    key, or None for anonymous. `detail` must hold only pseudonymous identifiers, never personal
    data: the row can never be changed or erased. `ip` is stored as given only when
    `ip_in_clear` (by default `ip_kept_in_clear(actor)`), otherwise as its pseudonym in
    `ip_pseudonym` (current key of PSEUDONYM_KEY). Called inside an outer transaction, the chain
    stays locked until that transaction ends, and a rollback takes the row away with it.
    """
    if kind not in AuditEvent.Kind.values:
        raise ValueError(f"unknown audit event kind: {kind!r}")
    actor_id, actor_name = _actor_fields(actor)
    address = str(ipaddress.ip_address(ip)) if ip else None
    if ip_in_clear is None:
        ip_in_clear = ip_kept_in_clear(actor)
    # Store exactly what PostgreSQL will hand back, so that the hash computed now is the hash
    # audit_verify recomputes from the row later: inet prints addresses compressed, float8 turns
    # 12 into 12.0, and strings longer than their column would fail the insert.
    event = AuditEvent(
        kind=kind,
        actor_id=actor_id,
        actor=actor_name[:150],
        request_id=request_id[:64],
        ip=address if ip_in_clear else None,
        # Of the canonical form, so every spelling of one address gets one pseudonym.
        ip_pseudonym=pseudonym(address) if address and not ip_in_clear else None,
        method=method.upper()[:8],
        endpoint=endpoint[:300],
        status=_optional_int(status),
        input_tokens=_optional_int(input_tokens),
        output_tokens=_optional_int(output_tokens),
        latency_ms=None if latency_ms is None else float(latency_ms),
    )
    detail_json = json.dumps(detail or {}, cls=DjangoJSONEncoder, allow_nan=False)
    with transaction.atomic():
        with connection.cursor() as cursor:
            # One appender at a time, until this transaction ends: two appends that read the
            # same last row would fork the chain. The lock is taken before the last row is read;
            # under READ COMMITTED (Django's default) that read sees every committed append.
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_KEY])
            # jsonb rewrites numbers (1e16 comes back as 10000000000000000): hash its version.
            cursor.execute("SELECT %s::jsonb::text", [detail_json])
            event.detail = json.loads(cursor.fetchone()[0])
        last_hash = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
        # Taken under the lock, so created_at never goes backwards along the chain.
        event.created_at = timezone.now()
        event.prev_hash = last_hash or GENESIS_HASH
        event.hash = event_hash(event.prev_hash, event)
        event.save(force_insert=True)
    return event


@dataclass(frozen=True)
class VerifyResult:
    """`checked` counts the rows read, the bad one included; `last_hash` is the hash of the last
    good row (GENESIS_HASH for an empty log). Keep `last_hash` somewhere else as well: the chain
    alone cannot show that rows were cut off its end."""

    ok: bool
    checked: int
    first_bad_id: int | None
    reason: str
    last_hash: str = GENESIS_HASH


def audit_verify(*, batch_size: int = 2000) -> VerifyResult:
    """Recompute the chain in id order and report the first broken link."""
    expected_prev = GENESIS_HASH
    checked = 0
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=batch_size):
        checked += 1
        if event.prev_hash != expected_prev:
            return VerifyResult(
                ok=False,
                checked=checked,
                first_bad_id=event.pk,
                reason="prev_hash does not match the row before it "
                "(a row was deleted, inserted or reordered)",
                last_hash=expected_prev,
            )
        if event.hash != event_hash(event.prev_hash, event):
            return VerifyResult(
                ok=False,
                checked=checked,
                first_bad_id=event.pk,
                reason="hash does not match the row's content (the row was changed)",
                last_hash=expected_prev,
            )
        expected_prev = event.hash
    return VerifyResult(
        ok=True, checked=checked, first_bad_id=None, reason="", last_hash=expected_prev
    )
