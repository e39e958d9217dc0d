"""What changed in a knowledge base's index, announced after the commit.

Caches that depend on the index (keyword statistics here, answer caches in conversations) key
their entries with `index_version(kb_id)`, so a bump makes every old entry unreachable at once;
other apps can also listen to `knowledge_changed`.

A version is a random token in the shared cache, not a counter: entries keyed by it can outlive
it (the semantic answer cache is a database table), and a counter lost with a local-memory
cache (a restart) or evicted from Redis would start again and hand out old versions, so old
entries would match again. A lost token is replaced by a new one that no entry carries.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from django.core.cache import cache
from django.db import transaction
from django.db.models import Min
from django.dispatch import Signal
from django.utils import timezone

from apps.knowledge.models import Article, ArticleStatus

knowledge_changed = Signal()  # sent with knowledge_base_id (None: synonyms of every base)

SYNONYMS_KEY = "knowledge:synonyms-version"


def _version_key(kb_id: int) -> str:
    return f"knowledge:index-version:{kb_id}"


def _new_version() -> str:
    # 64 random bits: two of them, joined, fit the answer caches' 64-character generation.
    return secrets.token_hex(8)


def _current(key: str) -> str:
    version = cache.get(key)
    if isinstance(version, str):
        return version
    fresh = _new_version()
    if version is None:
        # The first read after a restart or an eviction. `add`: when several processes
        # share the cache and read at once, the first one's token is everyone's.
        cache.add(key, fresh, timeout=None)
    else:
        # A counter from before versions were random: entries cached under it carry no
        # expiry (see conversations.caches), so they must not match again.
        cache.set(key, fresh, timeout=None)
    current = cache.get(key)
    # Culled at once (a full local-memory cache): a token nobody has is still a safe one.
    return current if isinstance(current, str) else fresh


def index_version(kb_id: int) -> str:
    return _current(_version_key(kb_id))


def synonyms_version() -> str:
    return _current(SYNONYMS_KEY)


def _bump(key: str) -> None:
    cache.set(key, _new_version(), timeout=None)


def knowledge_base_changed(kb_id: int) -> None:
    def announce() -> None:
        _bump(_version_key(kb_id))
        knowledge_changed.send(sender=None, knowledge_base_id=kb_id)

    transaction.on_commit(announce)


def synonyms_changed() -> None:
    def announce() -> None:
        _bump(SYNONYMS_KEY)
        knowledge_changed.send(sender=None, knowledge_base_id=None)

    transaction.on_commit(announce)


def next_opening(kb_id: int) -> datetime | None:
    """When a published article of this base next becomes valid (its `valid_from` comes), if
    one is scheduled. Search starts finding it then, with no edit and so no new version: what
    was cached before may no longer be the best answer."""
    opening: datetime | None = Article.objects.filter(
        knowledge_base_id=kb_id, status=ArticleStatus.PUBLISHED, valid_from__gt=timezone.now()
    ).aggregate(first=Min("valid_from"))["first"]
    return opening
