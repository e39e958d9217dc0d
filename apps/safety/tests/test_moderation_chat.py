"""Moderation in the chat: a blocked customer message gets a polite reply, is flagged for staff
and reaches neither search nor the model; a blocked answer is never sent, streamed or cached."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import translation
from django.utils.translation import gettext as _

from apps.audit.models import AuditEvent
from apps.conversations import engine, services
from apps.conversations.models import (
    Conversation,
    ConversationStatus,
    Decision,
    Message,
    Role,
)
from apps.conversations.tests.conftest import say
from apps.inference import selectors as inference_selectors
from apps.inference import services as inference_services
from apps.inference.models import GenerationStatus, PromptConfig
from apps.knowledge import selectors as knowledge_selectors
from apps.knowledge.models import KnowledgeBase
from apps.safety.models import ModerationFlag, ModerationTerm
from apps.safety.moderation import moderate

pytestmark = pytest.mark.django_db

POLITE = (
    "I'm sorry, I can't respond to messages like that. I'm happy to help with your orders, "
    "deliveries, returns or account: what can I do for you?"
)
# What the fake model is told to answer: a harmless first sentence, then an insult (blocked by
# the shipped classifier; no lexicon term in it).
OFFENSIVE_ANSWER = (
    "Refunds go back to the way you paid [1]. "
    "Stop whining about it, you pathetic worthless loser, nobody cares about your money."
)


@pytest.fixture
def searches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The queries that reached knowledge search."""
    seen: list[str] = []
    search = knowledge_selectors.search

    def spy(kb: Any, query: str, **kwargs: Any) -> Any:
        seen.append(query)
        return search(kb, query, **kwargs)

    monkeypatch.setattr(knowledge_selectors, "search", spy)
    return seen


@pytest.fixture
def model_pool(fake_openai: Any, chat_kb: KnowledgeBase) -> Iterator[Any]:
    inference_services.endpoint_save(name="gpu", base_url=fake_openai.base_url, model="fake-llm")
    # Every answer passes the grounding check here: what stops one is moderation alone.
    inference_services.prompt_config_save(
        PromptConfig(knowledge_base=chat_kb), grounding_threshold=0.0
    )
    inference_selectors.pool_reset()
    yield fake_openai


@pytest.mark.parametrize(
    ("text", "locale"),
    [("shut up you stupid bitch", "en"), ("你这个傻逼，滚远点", "zh-hans")],
)
def test_a_blocked_message_gets_a_polite_reply_a_flag_and_reaches_nothing(
    chat_kb: KnowledgeBase, model_pool: Any, searches: list[str], text: str, locale: str
) -> None:
    conversation = services.conversation_start(knowledge_base=chat_kb, locale=locale)
    reply = say(conversation, text)[0]
    customer = Message.objects.get(conversation=conversation, role=Role.CUSTOMER)
    assert reply.decision == Decision.GUARD and customer.decision == Decision.GUARD
    with translation.override("zh-hans" if locale == "zh-hans" else "en"):
        assert reply.text == _(POLITE)  # in the customer's language
    assert bool(re.search(r"[\u4e00-\u9fff]", reply.text)) == (locale == "zh-hans")
    assert searches == [] and model_pool.counts["chat"] == 0

    flag = ModerationFlag.objects.get()
    assert flag.conversation == conversation and flag.message == customer
    assert flag.direction == "input" and flag.blocked and flag.reviewed_at is None
    event = AuditEvent.objects.get(kind="security")
    assert event.detail["reason"] == "moderation"
    assert event.detail["message"] == str(customer.public_id)
    # Only ids and scores are kept: the words stay in the message.
    assert text[:4] not in str(event.detail) and text[:4] not in str(flag.categories)

    # The next, ordinary question is answered as usual.
    normal = say(conversation, "How long does a refund take?")[0]
    assert normal.decision == Decision.ANSWER and searches


def test_an_english_message_gets_the_english_reply(chat_kb: KnowledgeBase) -> None:
    conversation = services.conversation_start(knowledge_base=chat_kb, locale="en")
    assert say(conversation, "shut up you stupid bitch")[0].text == POLITE


def test_a_flag_term_lets_the_message_through_and_flags_it(chat_kb: KnowledgeBase) -> None:
    conversation = services.conversation_start(knowledge_base=chat_kb, locale="en")
    reply = say(conversation, "The idiot courier left my parcel in the rain")[0]
    assert reply.decision != Decision.GUARD
    flag = ModerationFlag.objects.get()
    assert not flag.blocked and flag.source == "lexicon" and flag.categories == ["insult"]


def test_an_angry_complaint_goes_to_a_person_flagged_not_refused(chat_kb: KnowledgeBase) -> None:
    ModerationTerm.objects.all().delete()  # the classifier's call alone
    conversation = services.conversation_start(knowledge_base=chat_kb, locale="zh-hans")
    say(conversation, "你们这什么破服务，垃圾！我要投诉！")
    assert conversation.status == ConversationStatus.WAITING_AGENT
    assert conversation.handoff_reason == "anger"
    flag = ModerationFlag.objects.get()
    assert flag.source == "classifier" and not flag.blocked and flag.score is not None
    assert not AuditEvent.objects.filter(kind="security").exists()


def test_processing_a_message_again_flags_it_once(chat_kb: KnowledgeBase) -> None:
    conversation = services.conversation_start(knowledge_base=chat_kb, locale="en")
    message, _created = services.message_receive(conversation, "shut up you stupid bitch")
    generation = engine.Generation(before_seq=message.seq)
    engine.decide(conversation, message.text, generation)
    engine.decide(conversation, message.text, generation)
    assert ModerationFlag.objects.filter(message=message).count() == 1


def test_a_blocked_generated_answer_is_never_sent_or_cached(
    chat_kb: KnowledgeBase, model_pool: Any
) -> None:
    model_pool.configure(answer=OFFENSIVE_ANSWER)
    conversation = services.conversation_start(knowledge_base=chat_kb, locale="en")
    reply = say(conversation, "How long does a refund take?")[0]
    assert model_pool.counts["chat"] == 1
    # The extractive answer from the article goes instead, and the attempt is on record.
    assert "pathetic" not in reply.text and "Once approved, refunds reach Alipay" in reply.text
    assert "Refunds go back" not in reply.text
    assert reply.generation_status == GenerationStatus.UNGROUNDED
    assert reply.generation["moderation"]["blocked"] is True
    assert "pathetic" not in str(reply.generation)
    flag = ModerationFlag.objects.get(direction="output")
    assert flag.message == reply.reply_to and flag.blocked

    again = say(conversation, "How long does a refund take?")[0]
    assert "pathetic" not in again.text and again.cache_hit == ""  # nothing was cached
    assert model_pool.counts["chat"] == 2


def test_a_blocked_extractive_answer_is_not_sent(chat_kb: KnowledgeBase) -> None:
    # Staff decide a word of the refund article is not to be said: the answer is withheld and
    # the customer is told the bot is not sure (with a way to a person).
    ModerationTerm.objects.create(term="Alipay", language="en", category="other", action="block")
    conversation = services.conversation_start(knowledge_base=chat_kb, locale="en")
    reply = say(conversation, "How long does a refund take?")[0]
    assert "Alipay" not in reply.text
    assert reply.decision == Decision.FALLBACK
    assert ModerationFlag.objects.get().direction == "output"


class RecordingSink:
    id = "test-stream"

    def __init__(self) -> None:
        self.updates: list[str] = []
        self.discarded = False

    def update(self, text: str) -> None:
        self.updates.append(text)

    def discard(self) -> None:
        self.discarded = True


def test_a_streamed_draft_never_shows_blocked_text(
    chat_kb: KnowledgeBase, model_pool: Any, settings: Any
) -> None:
    # Every piece is checked before it is shown; the insult is a lexicon term here, so when it
    # is caught does not depend on the classifier's reading of half a sentence.
    ModerationTerm.objects.create(term="scumbags", language="en", category="insult", action="block")
    settings.MODERATION = {**settings.MODERATION, "STREAM_CHECK_SECONDS": 0.0}
    settings.INFERENCE = {**settings.INFERENCE, "STREAM_INTERVAL_SECONDS": 0.0}
    model_pool.configure(
        answer="Refunds go back to the way you paid [1]. Scumbags like you get nothing back.",
        token_delay=0.01,
    )
    conversation: Conversation = services.conversation_start(knowledge_base=chat_kb, locale="en")
    sink = RecordingSink()
    outcome = engine.decide(
        conversation,
        "How long does a refund take?",
        engine.Generation(stream_factory=lambda: sink),
    )
    # The first sentence was shown while it streamed, the insult never; the draft was then
    # withdrawn and the extractive answer given.
    assert any("Refunds go back" in text for text in sink.updates)
    assert not any("Scumbags" in text for text in sink.updates)
    assert sink.discarded
    reply = outcome.replies[0]
    assert reply.generated is not None and reply.generated.details["moderation"]["blocked"]
    assert reply.generated.details["moderation"]["source"] == "lexicon"
    assert "Scumbags" not in reply.text and "Once approved" in reply.text
    assert model_pool.counts["chat"] == 1  # not written again


def test_staff_review_flags_in_the_admin(
    chat_kb: KnowledgeBase, admin_client: Any, django_assert_max_num_queries: Any
) -> None:
    for text in ("shut up you stupid bitch", "you are a worthless piece of trash, go to hell"):
        conversation = services.conversation_start(knowledge_base=chat_kb, locale="en")
        say(conversation, text)
    flags = list(ModerationFlag.objects.order_by("pk"))
    assert len(flags) == 2 and {f.source for f in flags} == {"lexicon", "classifier"}

    with django_assert_max_num_queries(12):  # no query per row
        page = admin_client.get("/admin/safety/moderationflag/?reviewed=no")
    assert page.status_code == 200 and page.content.count(b'name="_selected_action"') == 2
    detail = admin_client.get(f"/admin/safety/moderationflag/{flags[0].pk}/change/")
    # The message is shown from the conversation, not from a copy on the flag.
    assert "shut up you stupid bitch" in detail.content.decode()

    response = admin_client.post(
        "/admin/safety/moderationflag/",
        {"action": "mark_reviewed", "_selected_action": [f.pk for f in flags]},
    )
    assert response.status_code == 302
    reviewed = ModerationFlag.objects.filter(reviewed_at__isnull=False)
    assert reviewed.count() == 2 and {f.reviewed_by.username for f in reviewed} == {"admin"}
    page = admin_client.get("/admin/safety/moderationflag/?reviewed=no")
    assert page.content.count(b'name="_selected_action"') == 0


def test_staff_edit_the_lexicon_in_the_admin(chat_kb: KnowledgeBase, admin_client: Any) -> None:
    conversation = services.conversation_start(knowledge_base=chat_kb, locale="en")
    # A word the classifier does not know as an insult; the term makes it one.
    assert not moderate("where is my parcel, numpty").blocked
    response = admin_client.post(
        "/admin/safety/moderationterm/add/",
        {
            "term": "numpty",
            "language": "en",
            "category": "insult",
            "action": "block",
            "enabled": "on",
        },
    )
    assert response.status_code == 302
    assert say(conversation, "where is my parcel, numpty")[0].decision == Decision.GUARD
