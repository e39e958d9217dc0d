"""Every request gets a request id (the client's `X-Request-ID` when it sent a sane one), sent
back in the `X-Request-ID` response header; API requests and admin changes are written to the
audit log with who, from where, what, the status and the time taken. "From where" is the IP
address for staff users and API keys, and only a keyed pseudonym of it for everyone else.

`AuditMiddleware` comes first in MIDDLEWARE, so that answers given by the middleware below it
(a redirect to HTTPS or to a slashed URL, a refused host) carry a request id as well."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext as _

from apps.audit import ratelimit, services
from apps.audit.models import AuditEvent

logger = logging.getLogger(__name__)

REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{8,64}")
READ_METHODS = ("GET", "HEAD", "OPTIONS")


def request_id_of(request: HttpRequest) -> str:
    return getattr(request, "request_id", "")


def client_ip(request: HttpRequest) -> str | None:
    # REMOTE_ADDR only: a forwarded-for header is the client's word (behind a proxy, set the
    # proxy to pass the real address, e.g. uvicorn --proxy-headers --forwarded-allow-ips).
    return request.META.get("REMOTE_ADDR") or None


def request_context(request: Any) -> dict[str, Any]:
    """Where an event happened, as `services.audit_record` takes it: request id, IP, method and
    endpoint (an HttpRequest or DRF's Request; nothing for None). The IP is kept in clear or as a
    pseudonym according to the event's actor (`services.ip_kept_in_clear`)."""
    if request is None:
        return {}
    return {
        "request_id": request_id_of(request),
        "ip": client_ip(request),
        "method": request.method or "",
        "endpoint": request.path[:300],
    }


def _kind(request: HttpRequest) -> str | None:
    path = request.path
    if path.startswith("/api/"):
        return AuditEvent.Kind.API_REQUEST
    if path.startswith("/admin/") and request.method not in READ_METHODS:
        if path.startswith(("/admin/login/", "/admin/logout/")):
            return None  # recorded by the login/logout signals, with the outcome
        return AuditEvent.Kind.ADMIN_CHANGE
    return None


class AuditMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        sent = request.headers.get("X-Request-ID", "")
        request_id = sent if REQUEST_ID_RE.fullmatch(sent) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        started = time.perf_counter()
        response = self.get_response(request)
        response["X-Request-ID"] = request_id
        kind = _kind(request)
        if kind is not None:
            # Read only now: AuthenticationMiddleware (below this one) sets request.user, and
            # not at all when a middleware above it answered first.
            user = getattr(request, "user", None)
            actor = getattr(request, "audit_actor", None)  # "key:<prefix>", set by the key auth
            detail = getattr(request, "audit_detail", None)
            # A refused key is anyone's guess, not the integration's: its address is kept only
            # as a pseudonym, like a failed login's. Otherwise the actor decides (services).
            ip_in_clear = False if detail and detail.get("refused") else None
            if actor is None:
                actor = user if user is not None and user.is_authenticated else None
            elif kind == AuditEvent.Kind.API_REQUEST:
                kind = AuditEvent.Kind.KEY_USED
            input_tokens, output_tokens = getattr(request, "audit_tokens", (None, None))
            try:
                services.audit_record(
                    kind,
                    actor=actor,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    request_id=request_id,
                    ip=client_ip(request),
                    method=request.method or "",
                    endpoint=request.path[:300],
                    status=response.status_code,
                    latency_ms=round((time.perf_counter() - started) * 1000, 2),
                    detail=detail,
                    ip_in_clear=ip_in_clear,
                )
            except DatabaseError:  # the response stands; the failure is loud in the logs
                logger.exception("could not write the audit event of %s", request.path)
        return response


class RateLimitMiddleware:
    """Per-IP limit on the API (`API_RATE_LIMITS["IP"]`), before any authentication, so guessing
    keys or passwords is limited as well. Answers 429 with `Retry-After` and a JSON message."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        ip = client_ip(request)
        if ip and request.path.startswith("/api/"):
            rate = ratelimit.parse_rate(settings.API_RATE_LIMITS["IP"])
            allowance = ratelimit.hit(f"ip:{ip}", rate)
            if not allowance.allowed:
                response = JsonResponse(
                    {
                        "detail": _(
                            "Too many requests from your address. Try again in %(seconds)d s."
                        )
                        % {"seconds": allowance.retry_after},
                        "code": "throttled",
                    },
                    status=429,
                )
                response["Retry-After"] = str(allowance.retry_after)
                return response
        return self.get_response(request)
