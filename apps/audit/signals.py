"""Logins, logouts and failed logins (admin, console, API sessions) into the audit log."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from apps.audit import services
from apps.audit.middleware import request_context
from apps.audit.models import AuditEvent
from apps.safety import pii


@receiver(user_logged_in)
def logged_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    services.audit_record(AuditEvent.Kind.LOGIN, actor=user, **request_context(request))


@receiver(user_logged_out)
def logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    services.audit_record(AuditEvent.Kind.LOGOUT, actor=user, **request_context(request))


@receiver(user_login_failed)
def login_failed(
    sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
) -> None:
    # The username tried (staff accounts, not customers' data); never the password.
    # Redacted all the same: what was typed may be anything, an e-mail address or a phone number.
    username = pii.redact(str(credentials.get("username", ""))[:150])[0]
    services.audit_record(
        AuditEvent.Kind.LOGIN_FAILED,
        actor=None,
        detail={"username": username},
        **request_context(request),
    )
