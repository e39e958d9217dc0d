"""The answer caches against time and restarts: an answer is not served after its source
stops being valid, and a cache version lost with the cache is never handed out again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
import redis
from django.core.cache import cache
from django.utils import timezone

from apps.conversations import caches, engine
from apps.conversations.models import SemanticCacheEntry
from apps.conversations.tests.conftest import english, say
from apps.knowledge import index_events
from apps.knowledge import services as knowledge_services
from apps.knowledge.models import Article, KnowledgeBase

QUESTION = "How long does a refund take?"
SIMILAR = "How long does the refund take?"


class Clock:
    """Django's clock (`timezone.now`), moved forward: search, the caches and the database
    writes all read it, so an article's validity ends as it would when the time comes."""

    def __init__(self) -> None:
        self.real_now = timezone.now
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return self.real_now() + self.offset

    def move_to(self, when: datetime) -> None:
        self.offset = when - self.real_now()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(timezone, "now", clock.now)
    return clock


def refund_article(kb: KnowledgeBase) -> Article:
    return kb.articles.get(external_id="refund-time", language="en")


def test_an_answer_is_not_served_from_the_caches_after_its_article_expires(
    chat_kb: KnowledgeBase, clock: Clock, run_on_commit: Callable[..., Any]
) -> None:
    # A promotion-like article: valid for another hour (set through the service, before any
    # answer is cached; the passing of that hour is what nothing announces).
    ends = timezone.now() + timedelta(hours=1)
    run_on_commit(knowledge_services.article_update, refund_article(chat_kb), valid_until=ends)
    conversation = english(chat_kb)
    first = say(conversation, QUESTION)[0]
    assert first.decision == "answer" and first.cache_hit == ""
    assert first.sources[0]["title"] == QUESTION and "business days" in first.text
    entry = SemanticCacheEntry.objects.get(question=QUESTION)
    assert entry.expires_at == ends
    # Until then both caches answer.
    assert say(conversation, QUESTION)[0].cache_hit == "exact"
    assert say(english(chat_kb), SIMILAR)[0].cache_hit == "semantic"

    clock.move_to(ends + timedelta(seconds=1))
    assert not engine.exact_answer_ready(conversation, QUESTION)
    for text in (QUESTION, SIMILAR):
        reply = say(english(chat_kb), text)[0]
        assert reply.cache_hit == ""
        assert QUESTION not in [s["title"] for s in reply.sources]
        assert "business days" not in reply.text
    # The expired entries went nowhere near the customer; trimming deletes them.
    assert caches.semantic_trim(chat_kb.pk) >= 1
    assert not SemanticCacheEntry.objects.filter(question=QUESTION).exists()


def test_a_cached_answer_gives_way_when_a_scheduled_article_opens(
    chat_kb: KnowledgeBase, clock: Clock, run_on_commit: Callable[..., Any]
) -> None:
    opens = timezone.now() + timedelta(days=2)
    run_on_commit(
        knowledge_services.article_create,
        knowledge_base=chat_kb,
        title="Refunds during the spring sale",
        language="en",
        body="During the spring sale every refund reaches you within one business day.",
        status="published",
        valid_from=opens,
    )
    conversation = english(chat_kb)
    first = say(conversation, QUESTION)[0]
    assert first.cache_hit == "" and first.sources[0]["title"] == QUESTION
    # The answer's own article has no end, but search will find more from that day on.
    assert SemanticCacheEntry.objects.get(question=QUESTION).expires_at == opens
    assert say(conversation, QUESTION)[0].cache_hit == "exact"

    clock.move_to(opens + timedelta(minutes=1))
    assert not engine.exact_answer_ready(conversation, QUESTION)
    # Searched again (and cached again, now with no end: nothing else is scheduled).
    again = say(english(chat_kb), SIMILAR)[0]
    assert again.decision == "answer" and again.cache_hit == ""
    assert say(english(chat_kb), SIMILAR)[0].cache_hit == "exact"


@pytest.fixture
def redis_cache(redis_url: str, settings: Any) -> redis.Redis:
    """Django's cache in a real Redis, as with several server processes."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url}
    }
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    return client


def test_the_exact_cache_keeps_an_answer_no_longer_than_its_sources(
    redis_cache: redis.Redis,
) -> None:
    answers = caches.AnswerCache(1, "en")
    question = "Is shipping free?"
    stored = f":1:{answers.exact_key(question)}"  # Django's key prefix and version
    ends = timezone.now() + timedelta(minutes=10)
    answer = {"text": "Spring sale: free shipping.", "sources": [], "expires_at": ends.isoformat()}
    answers.exact_set(question, answer)
    assert 590 <= redis_cache.ttl(stored) <= 600
    assert answers.exact_get(question) == answer
    answers.exact_set(question, {**answer, "expires_at": None})
    assert redis_cache.ttl(stored) > 23 * 3600
    # Already over: not stored at all.
    redis_cache.delete(stored)
    over = (timezone.now() - timedelta(seconds=1)).isoformat()
    answers.exact_set(question, {**answer, "expires_at": over})
    assert not redis_cache.exists(stored)


def test_a_version_lost_with_the_cache_is_never_handed_out_again(
    chat_kb: KnowledgeBase, run_on_commit: Callable[..., Any]
) -> None:
    """Edit, answer, restart (the local-memory cache is empty again), edit: the answer cached
    between the edits must not come back, though its row in the semantic cache outlived the
    restart."""
    cache.clear()  # the server starts
    article = refund_article(chat_kb)
    run_on_commit(
        knowledge_services.article_update,
        article,
        body="Refunds reach you in 1-3 business days once approved.",
    )
    first = say(english(chat_kb), QUESTION)[0]
    assert first.cache_hit == "" and "1-3 business days" in first.text
    cached_under = index_events.index_version(chat_kb.pk)

    cache.clear()  # the restart
    assert index_events.index_version(chat_kb.pk) != cached_under
    article.refresh_from_db()
    run_on_commit(
        knowledge_services.article_update,
        article,
        body="Refunds reach you in 5-10 business days once approved.",
    )
    assert index_events.index_version(chat_kb.pk) != cached_under
    reply = say(english(chat_kb), SIMILAR)[0]
    assert reply.cache_hit == "" and "5-10 business days" in reply.text
    # Cached again, now from the new text.
    reply = say(english(chat_kb), QUESTION)[0]
    assert reply.cache_hit == "semantic" and "5-10 business days" in reply.text
