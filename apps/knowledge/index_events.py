"""What changed in a knowledge base's index, announced after the commit.

Caches that depend on the index (keyword statistics here, answer caches in conversations) key
their entries with `index_version(kb_id)`, so a bump makes every old entry unreachable at once;
other apps can also listen to `knowledge_changed`.
"""

from __future__ import annotations

from django.core.cache import cache
from django.db import transaction
from django.dispatch import Signal

knowledge_changed = Signal()  # sent with knowledge_base_id (None: synonyms of every base)

SYNONYMS_KEY = "knowledge:synonyms-version"


def _version_key(kb_id: int) -> str:
    return f"knowledge:index-version:{kb_id}"


def index_version(kb_id: int) -> int:
    return int(cache.get(_version_key(kb_id)) or 0)


def synonyms_version() -> int:
    return int(cache.get(SYNONYMS_KEY) or 0)


def _bump(key: str) -> None:
    try:
        cache.incr(key)
    except ValueError:  # not set yet (or evicted): any new value invalidates
        cache.set(key, 1, timeout=None)


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
