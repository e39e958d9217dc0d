"""API keys: made (and shown) once, kept only as a SHA-256, found by their prefix, revoked.

A key reads `csk_<prefix>_<secret>`: the prefix (8 characters) is stored in the clear so that
lists and the audit log can name a key without holding it; the secret has 256 random bits, so a
plain SHA-256 of the whole key is enough to check it (no slow hash is needed for random keys).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from apps.audit.models import ApiKey, AuditEvent, Scope
from apps.audit.services import audit_record

KEY_PREFIX = "csk_"
PREFIX_ALPHABET = string.ascii_lowercase + string.digits
PREFIX_LENGTH = 8
# last_used_at is written at most this often per key (a busy key would otherwise write a row
# on every request).
LAST_USED_RESOLUTION_SECONDS = 60
# Said by api_key_owner_check, and by the admin's form when a non-superuser names someone else.
OTHER_USER_REFUSED = gettext_lazy(
    "Only a superuser may make an API key that acts for another user."
)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class CreatedKey:
    api_key: ApiKey
    key: str  # the whole key: shown once, never stored


def api_key_owner_check(*, user: Any, created_by: Any) -> None:
    """ServiceError unless `created_by` may make a key that acts for `user`: a key has its
    user's permissions, so only a superuser may make one for somebody else (a staff member with
    `add_apikey` could otherwise act as any user, a superuser included). None for `created_by`
    is the server's operator (`manage.py apikey_create`)."""
    from apps.core.exceptions import ServiceError

    if created_by is None or created_by.is_superuser or created_by.pk == user.pk:
        return
    raise ServiceError(str(OTHER_USER_REFUSED), code="forbidden")


def api_key_create(
    *,
    name: str,
    user: Any,
    scopes: list[str],
    expires_at: datetime | None = None,
    rate_limit: int | None = None,
    created_by: Any = None,
    request_id: str = "",
) -> CreatedKey:
    """Make a key for `user` (see api_key_owner_check for who may), audited; `request_id` ties
    the audit row to the request that asked (the admin's)."""
    # Here, not at the top: DRF imports this module (through the authentication class) while
    # apps.core.exceptions is still importing DRF.
    from apps.core.exceptions import ServiceError

    api_key_owner_check(user=user, created_by=created_by)
    unknown = set(scopes) - set(Scope.values)
    if not scopes or unknown:
        raise ServiceError(
            _("Choose one or more scopes from: %(scopes)s.") % {"scopes": ", ".join(Scope.values)},
            code="bad_scope",
        )
    if expires_at is not None and expires_at <= timezone.now():
        raise ServiceError(_("The expiry date must be in the future."), code="bad_expiry")
    with transaction.atomic():
        while True:
            prefix = "".join(secrets.choice(PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
            if not ApiKey.objects.filter(prefix=prefix).exists():
                break
        key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        api_key = ApiKey.objects.create(
            name=name,
            prefix=prefix,
            hashed_key=key_hash(key),
            user=user,
            scopes=sorted(set(scopes)),
            expires_at=expires_at,
            rate_limit=rate_limit,
            created_by=created_by,
        )
        audit_record(
            AuditEvent.Kind.SECURITY,
            actor=created_by,
            request_id=request_id,
            detail={
                "reason": "api_key_created",
                "key": prefix,
                "scopes": api_key.scopes,
                "acts_for": user.pk,
            },
        )
    return CreatedKey(api_key, key)


def api_key_revoke(api_key: ApiKey, *, by: Any = None, request_id: str = "") -> bool:
    """Revoke the key at once; False when it already was. `request_id` ties the audit row to
    the request that asked (the admin's or the admin API's)."""
    revoked = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    if revoked:
        audit_record(
            AuditEvent.Kind.SECURITY,
            actor=by,
            request_id=request_id,
            detail={"reason": "api_key_revoked", "key": api_key.prefix},
        )
    api_key.refresh_from_db(fields=["revoked_at"])
    return bool(revoked)


class KeyRefused(Exception):
    def __init__(self, reason: str, prefix: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.prefix = prefix


def api_key_check(key: str) -> ApiKey:
    """The active key `key` names, or KeyRefused with why ("malformed", "unknown", "revoked",
    "expired", "user_inactive")."""
    if not key.startswith(KEY_PREFIX) or key.count("_") < 2:
        raise KeyRefused("malformed")
    prefix = key[len(KEY_PREFIX) :].split("_", 1)[0]
    api_key = ApiKey.objects.select_related("user").filter(prefix=prefix).first()
    if api_key is None or not hmac.compare_digest(api_key.hashed_key, key_hash(key)):
        raise KeyRefused("unknown", prefix if api_key is not None else "")
    if api_key.revoked_at is not None:
        raise KeyRefused("revoked", prefix)
    if api_key.expires_at is not None and api_key.expires_at <= timezone.now():
        raise KeyRefused("expired", prefix)
    if not api_key.user.is_active:
        raise KeyRefused("user_inactive", prefix)
    now = timezone.now()
    if (
        api_key.last_used_at is None
        or (now - api_key.last_used_at).total_seconds() >= LAST_USED_RESOLUTION_SECONDS
    ):
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key
