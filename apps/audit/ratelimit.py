"""Request rate limits shared by every process: a fixed one-minute (or other) window per bucket,
counted in Redis with one atomic script, so web processes behind a balancer share one count.

Without Redis (the embedded mode) the Django cache counts instead, which is per process. If
Redis is down the request is let through and the failure logged: a limiter must not take the
API down with it.
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass
from functools import lru_cache

import redis
from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$")
PERIOD_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# INCR the window's counter, give it its lifetime on the first hit; returns count and ms left.
_HIT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {count, ttl}
"""


@dataclass(frozen=True)
class Rate:
    limit: int
    seconds: int


@lru_cache(maxsize=32)
def parse_rate(rate: str) -> Rate:
    """'600/min' -> Rate(600, 60)."""
    match = RATE_RE.match(rate)
    if match is None:
        raise ValueError(f"a rate reads like '600/min', not {rate!r}")
    return Rate(int(match[1]), PERIOD_SECONDS[match[2][0]])


@dataclass(frozen=True)
class Allowance:
    allowed: bool
    limit: int
    remaining: int
    retry_after: int  # seconds until the window resets (when refused)


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)


def redis_url() -> str:
    return settings.API_RATE_LIMITS.get("REDIS_URL") or ""


def hit(bucket: str, rate: Rate) -> Allowance:
    """Count one request against `bucket` and say whether it is within `rate`."""
    window = int(time.time() // rate.seconds)
    key = f"ratelimit:{bucket}:{rate.seconds}:{window}"
    url = redis_url()
    if url:
        try:
            count, ttl_ms = _client(url).eval(_HIT_SCRIPT, 1, key, rate.seconds * 1000)
        except redis.RedisError as exc:
            logger.warning("rate limit not applied, Redis unavailable: %s", exc)
            return Allowance(True, rate.limit, rate.limit, 0)
        retry_after = max(1, math.ceil(int(ttl_ms) / 1000))
    else:
        cache.add(key, 0, timeout=rate.seconds + 1)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=rate.seconds + 1)
            count = 1
        retry_after = max(1, math.ceil((window + 1) * rate.seconds - time.time()))
    count = int(count)
    return Allowance(count <= rate.limit, rate.limit, max(0, rate.limit - count), retry_after)
