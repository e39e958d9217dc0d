"""Change stamps: how every process learns that something it keeps compiled (the active
intents, the moderation lexicon) changed in the database.

A random value in the shared cache; a writer replaces it, a reader reloads when it differs from
the one it compiled under. Read every time it is used (one cache read), so no process keeps a
stale copy longer than its next use.
"""

from __future__ import annotations

import uuid

from django.core.cache import cache


def change_stamp(key: str, *, miss_timeout: int) -> str | None:
    """The current stamp under `key`. When there is none (the first process after a cache
    flush) one is set, briefly, so that every process reloads once and then agrees."""
    stamp = cache.get(key)
    if stamp is None:
        cache.add(key, uuid.uuid4().hex, timeout=miss_timeout)
        stamp = cache.get(key)
    return stamp


def change_stamp_bump(key: str) -> None:
    """Tell every process that what `key` stands for changed."""
    cache.set(key, uuid.uuid4().hex, timeout=None)
