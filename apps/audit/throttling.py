"""The per-key limit, a DRF throttle on the shared counters of `ratelimit`: a key's own rate or
the default for keys. A refused request gets 429 with `Retry-After`. (The per-IP limit is
`middleware.RateLimitMiddleware`, which also counts requests whose authentication fails.)"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from apps.audit import ratelimit
from apps.audit.models import ApiKey


class _SharedThrottle(BaseThrottle):
    def __init__(self) -> None:
        self.retry_after: int | None = None

    def bucket_and_rate(self, request: Request) -> tuple[str, ratelimit.Rate] | None:
        raise NotImplementedError

    def allow_request(self, request: Request, view: Any) -> bool:
        chosen = self.bucket_and_rate(request)
        if chosen is None:
            return True
        allowance = ratelimit.hit(*chosen)
        if allowance.allowed:
            return True
        self.retry_after = allowance.retry_after
        return False

    def wait(self) -> float | None:
        return self.retry_after


class ApiKeyThrottle(_SharedThrottle):
    def bucket_and_rate(self, request: Request) -> tuple[str, ratelimit.Rate] | None:
        if not isinstance(request.auth, ApiKey):
            return None
        key = request.auth
        if key.rate_limit:
            rate = ratelimit.Rate(key.rate_limit, 60)
        else:
            rate = ratelimit.parse_rate(settings.API_RATE_LIMITS["KEY"])
        return f"key:{key.pk}", rate
