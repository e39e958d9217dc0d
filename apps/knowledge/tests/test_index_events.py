"""The index version: shared by every process, and never the same twice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from django.core.cache.backends.redis import RedisCache

from apps.knowledge import index_events


def test_every_process_sees_one_version_in_redis_and_a_lost_one_is_not_reused(
    db: Any, redis_url: str, settings: Any, run_on_commit: Callable[..., Any]
) -> None:
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url}
    }
    redis_client = redis.Redis.from_url(redis_url)
    redis_client.flushdb()
    other_process = RedisCache(redis_url, {})  # its own connection, as another server has
    key = "knowledge:index-version:7"

    first = index_events.index_version(7)
    assert first == index_events.index_version(7) == other_process.get(key)
    seen = {first}
    for _ in range(3):
        run_on_commit(index_events.knowledge_base_changed, 7)
        version = index_events.index_version(7)
        assert version not in seen and other_process.get(key) == version
        seen.add(version)
        redis_client.flushdb()  # evicted, or Redis restarted without persistence
        version = index_events.index_version(7)
        assert version not in seen and other_process.get(key) == version
        seen.add(version)
    # A counter left by an older release is replaced: entries cached under it have no expiry.
    other_process.set(key, 3, timeout=None)
    replaced = index_events.index_version(7)
    assert replaced not in {"3", *seen} and other_process.get(key) == replaced
