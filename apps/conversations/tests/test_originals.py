"""Personal data at rest: a customer's message is stored redacted, the original only encrypted,
the engine still works from the original, the original is forgotten after the retention period,
and only the agent handling the conversation can see it, audited."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from apps.agents import services as agent_services
from apps.agents.tests.conftest import make_agent  # noqa: F401 (fixture)
from apps.audit.models import AuditEvent
from apps.conversations import engine, services
from apps.conversations.models import Conversation, Message, Role
from apps.conversations.serializers import message_frame
from apps.conversations.tests.conftest import say
from apps.core import crypto
from apps.core.exceptions import NotFoundError, ServiceError

PHONE = "13812345678"
EMAIL = "li.wei@example.com"
TEXT = f"我的手机号是{PHONE}，邮箱 {EMAIL}，订单 DD20240101001 还没到"


def _raw_row(message: Message) -> str:
    """Everything the database holds for the message, as one string."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT row_to_json(m)::text FROM conversations_message m WHERE id = %s",
            [message.pk],
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_personal_data_is_stored_redacted_and_the_original_only_encrypted(
    conversation: Conversation,
) -> None:
    say(conversation, TEXT)
    message = conversation.messages.get(role=Role.CUSTOMER)

    assert PHONE not in message.text and EMAIL not in message.text
    assert "[PHONE]" in message.text and "[EMAIL]" in message.text
    assert "DD20240101001" in message.text  # an order number is not personal data
    assert message.redacted
    assert crypto.decrypt(message.original_encrypted) == TEXT
    assert message.original_text == TEXT

    row = _raw_row(message)
    assert PHONE not in row and EMAIL not in row  # text, entities, everything
    assert message_frame(message)["redacted"] is True
    assert message_frame(message)["text"] == message.text


@pytest.mark.django_db
def test_text_without_personal_data_keeps_no_second_copy(conversation: Conversation) -> None:
    say(conversation, "怎么退货？")
    message = conversation.messages.get(role=Role.CUSTOMER)
    assert message.text == "怎么退货？"
    assert message.original_encrypted == ""
    assert not message.redacted


@pytest.mark.django_db
def test_the_engine_decides_on_the_original(
    conversation: Conversation, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    decide = engine.decide

    def recording(conversation: Conversation, text: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(text)
        return decide(conversation, text, *args, **kwargs)

    monkeypatch.setattr(engine, "decide", recording)
    say(conversation, TEXT)
    assert seen == [TEXT]


@pytest.mark.django_db
def test_originals_are_forgotten_after_the_retention_period(
    conversation: Conversation, settings: Any
) -> None:
    settings.PII = {"ORIGINAL_RETENTION_DAYS": 30}
    say(conversation, TEXT)
    say(conversation, f"再说一遍 {EMAIL}")
    old, recent = conversation.messages.filter(role=Role.CUSTOMER).order_by("seq")
    Message.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=31))

    assert services.messages_originals_purge() == 1
    old.refresh_from_db()
    recent.refresh_from_db()
    assert old.original_encrypted == "" and old.original_text == old.text
    assert EMAIL not in old.original_text
    assert recent.original_text == f"再说一遍 {EMAIL}"


@pytest.mark.django_db
def test_only_the_handling_agent_sees_the_original_and_it_is_audited(
    chat_kb: Any,
    make_agent: Any,  # noqa: F811
) -> None:
    conversation = services.conversation_start(knowledge_base=chat_kb, locale="zh-hans")
    say(conversation, "转人工")
    say(conversation, TEXT)
    message = conversation.messages.filter(role=Role.CUSTOMER).order_by("-seq").first()
    assert message is not None
    mine, other = make_agent("mine"), make_agent("other")
    conversation.refresh_from_db()
    agent_services.conversation_claim(conversation, mine)
    conversation.refresh_from_db()

    with pytest.raises(ServiceError) as refused:
        agent_services.message_original_reveal(conversation, other, message.public_id)
    assert refused.value.code == "forbidden"
    with pytest.raises(NotFoundError):
        agent_services.message_original_reveal(conversation, mine, "not-a-message")
    plain = conversation.messages.filter(role=Role.CUSTOMER).order_by("seq").first()
    with pytest.raises(ServiceError) as nothing:
        agent_services.message_original_reveal(conversation, mine, plain.public_id)
    assert nothing.value.code == "not_redacted"

    before = AuditEvent.objects.count()
    assert agent_services.message_original_reveal(conversation, mine, message.public_id) == TEXT
    event = AuditEvent.objects.order_by("-id").first()
    assert AuditEvent.objects.count() == before + 1
    assert event.detail == {
        "reason": "pii_revealed",
        "conversation": str(conversation.public_id),
        "message": str(message.public_id),
    }
    assert event.actor == "mine"
    assert PHONE not in str(event.detail)
