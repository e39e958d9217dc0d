"""Answer caches: the exact cache (same question, normalised) and the semantic cache (a question
whose embedding is close enough to one answered before).

Both are keyed by the knowledge base's index version and the synonyms version, so any change to
its articles or synonyms makes every cached answer unreachable at once (and `signals` deletes the
semantic entries). An answer can also carry `expires_at` (ISO 8601), when its sources stop being
valid with no edit (see `engine.answer_expiry`): after it, the answer is a miss in both
caches. Only answers from the knowledge base are cached; forms, handoffs and "not sure" replies
never are.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import F, Q
from django.utils import timezone

from apps.conversations.models import SemanticCacheEntry
from apps.core.text import normalize
from apps.knowledge import index_events
from apps.knowledge.models import KnowledgeBase
from apps.knowledge.selectors import vector_literal
from apps.safety import pii

logger = logging.getLogger(__name__)

EXACT_TTL_SECONDS = 24 * 3600
# At most this many semantic entries per knowledge base (plus those written since the last
# check, which comes every SEMANTIC_TRIM_EVERY entries written); the oldest go first.
SEMANTIC_MAX_ENTRIES = 5000
SEMANTIC_TRIM_EVERY = 50


def cache_question(text: str) -> str:
    """The question a customer's message is cached under: without their personal data (a phone
    number, an e-mail) and normalised. The text as written and as stored (redacted) give the
    same question, so erasure finds the entries of either."""
    return normalize(pii.remove(text))


def question_digest(text: str) -> str:
    """The last part of an exact-cache key, the same in every knowledge base and generation."""
    key = cache_question(text).casefold().rstrip("?？!！。.")
    return hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()


def semantic_threshold(embedder: str) -> float:
    """Cosine similarity a cached question needs. Each model has its own scale: e5's cosines
    bunch up near 1, so it needs a higher bar than MiniLM."""
    thresholds = settings.CHAT["SEMANTIC_CACHE_THRESHOLD"]
    backend = embedder.split(":", 1)[0]
    return float(thresholds.get(backend, thresholds["default"]))


def answer_expires_at(answer: dict[str, Any]) -> datetime | None:
    value = answer.get("expires_at")
    return datetime.fromisoformat(value) if value else None


def _expired(answer: dict[str, Any]) -> bool:
    expires_at = answer_expires_at(answer)
    return expires_at is not None and expires_at <= timezone.now()


def _generation(kb_id: int) -> str:
    return f"{index_events.index_version(kb_id)}.{index_events.synonyms_version()}"


class AnswerCache:
    """Both caches of one knowledge base for one message's language. The generation is read
    once, when the message is taken up: an answer is stored under the index it was found in."""

    def __init__(self, kb: KnowledgeBase | int, language: str) -> None:
        # Only the id is used (no database), so the socket can ask the exact cache itself.
        self.kb_id = kb if isinstance(kb, int) else kb.pk
        self.language = language
        self.generation = _generation(self.kb_id)
        self.enabled = bool(settings.CHAT["ANSWER_CACHES"])

    def exact_key(self, text: str) -> str:
        return f"chat:answer:{self.kb_id}:{self.generation}:{self.language}:{question_digest(text)}"

    def exact_get(self, text: str) -> dict[str, Any] | None:
        # No question left without the personal data: nothing to look up.
        if not self.enabled or not cache_question(text):
            return None
        answer: dict[str, Any] | None = cache.get(self.exact_key(text))
        # The entry's time to live ends with the answer, but it is counted in whole seconds.
        return None if answer is None or _expired(answer) else answer

    def exact_set(self, text: str, answer: dict[str, Any]) -> None:
        if not self.enabled or not cache_question(text):
            return
        timeout = EXACT_TTL_SECONDS
        expires_at = answer_expires_at(answer)
        if expires_at is not None:
            timeout = min(timeout, int((expires_at - timezone.now()).total_seconds()))
        if timeout > 0:
            cache.set(self.exact_key(text), answer, timeout)

    def semantic_get(self, embedder: str, vector: Any) -> tuple[dict[str, Any], float] | None:
        if not self.enabled:
            return None
        literal = vector_literal(vector)
        with connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT id, answer, 1 - (embedding <=> %s::vector) AS similarity
                FROM conversations_semanticcacheentry
                WHERE knowledge_base_id = %s AND language = %s AND embedder = %s
                    AND generation = %s AND (expires_at IS NULL OR expires_at > %s)
                ORDER BY embedding <=> %s::vector
                LIMIT 1
                """,
                [
                    literal,
                    self.kb_id,
                    self.language,
                    embedder,
                    self.generation,
                    timezone.now(),
                    literal,
                ],
            )
            row = cursor.fetchone()
        if row is None or row[2] < semantic_threshold(embedder):
            return None
        SemanticCacheEntry.objects.filter(pk=row[0]).update(hits=F("hits") + 1)
        # Django reads jsonb as text (its JSONField parses it); a raw query parses it here.
        answer = json.loads(row[1]) if isinstance(row[1], str) else row[1]
        return answer, float(row[2])

    def semantic_set(self, embedder: str, vector: Any, text: str, answer: dict[str, Any]) -> None:
        question = cache_question(text)
        expires_at = answer_expires_at(answer)
        now = timezone.now()
        if not self.enabled or not question or (expires_at is not None and expires_at <= now):
            return
        entries = SemanticCacheEntry.objects.filter(
            knowledge_base_id=self.kb_id,
            language=self.language,
            embedder=embedder,
            generation=self.generation,
        )
        # An expired entry for the question does not count: its answer is no longer given.
        live = Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        if entries.filter(live, question=question).exists():
            return
        entry = SemanticCacheEntry.objects.create(
            knowledge_base_id=self.kb_id,
            language=self.language,
            embedder=embedder,
            generation=self.generation,
            question=question,
            embedding=vector,
            answer=answer,
            expires_at=expires_at,
        )
        # Counting the entries on every answer was one more statement per new question.
        if entry.pk % SEMANTIC_TRIM_EVERY == 0:
            semantic_trim(self.kb_id)


def semantic_trim(kb_id: int) -> int:
    """Delete a knowledge base's expired semantic entries, then its oldest beyond
    SEMANTIC_MAX_ENTRIES; returns how many went."""
    entries = SemanticCacheEntry.objects.filter(knowledge_base_id=kb_id)
    deleted, _ = entries.filter(expires_at__lte=timezone.now()).delete()
    total = entries.count()
    if total <= SEMANTIC_MAX_ENTRIES:
        return deleted
    oldest = entries.order_by("created_at")
    stale = list(oldest.values_list("pk", flat=True)[: total - SEMANTIC_MAX_ENTRIES])
    trimmed, _ = SemanticCacheEntry.objects.filter(pk__in=stale).delete()
    return deleted + trimmed


def knowledge_base_invalidate(kb_id: int | None) -> int:
    """Delete semantic entries of an old index version (all of them when kb_id is None: synonyms
    changed everywhere). Exact entries expire by key."""
    entries = SemanticCacheEntry.objects.all()
    if kb_id is not None:
        entries = entries.filter(knowledge_base_id=kb_id).exclude(generation=_generation(kb_id))
    deleted, _ = entries.delete()
    return deleted
