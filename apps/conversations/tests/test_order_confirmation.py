"""An order's details reach a chat only after the customer confirms the last digits of its
mobile number; the digits are asked for like a form's own value and remembered by the
conversation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.utils import translation

from apps.audit.models import AuditEvent
from apps.conversations import services as conversation_services
from apps.conversations.models import Channel, Conversation, ConversationStatus, Role
from apps.conversations.tests.conftest import chinese, english, say
from apps.knowledge.models import KnowledgeBase
from apps.orders import services as order_services
from apps.orders.models import Order, ReturnRequest

pytestmark = pytest.mark.django_db

TRACKING = "SF202611200188"  # LM2026112001's tracking number


def bot_texts(conversation: Conversation) -> str:
    return "\n".join(conversation.messages.filter(role=Role.BOT).values_list("text", flat=True))


def test_the_status_is_shown_only_after_the_digits(chat_kb: KnowledgeBase) -> None:
    conversation = english(chat_kb)
    [asked] = say(conversation, "where is my order LM2026112001")
    assert asked.decision == "form" and "last 4 digits" in asked.text
    assert conversation.state["form"]["asking"] == "contact_digits"
    [wrong] = say(conversation, "1234")
    assert wrong.decision == "form" and "don't match" in wrong.text
    assert conversation.state["form"]["attempts"] == 1
    assert TRACKING not in bot_texts(conversation) and "earbuds" not in bot_texts(conversation)
    [shown] = say(conversation, "it's 8001")
    assert shown.decision == "action" and TRACKING in shown.text
    assert conversation.state["confirmed_orders"] == ["LM2026112001"]
    assert "form" not in conversation.state
    # Asked again later in the conversation: no digits needed.
    [again] = say(conversation, "where is my order LM2026112001")
    assert again.decision == "action" and TRACKING in again.text


def test_a_whole_mobile_number_confirms_in_chinese(chat_kb: KnowledgeBase) -> None:
    conversation = chinese(chat_kb)
    [asked] = say(conversation, "我的订单 LM2026112001 到哪了")
    with translation.override("zh-hans"):
        expected = translation.gettext(
            "To keep your order details private, please tell me the last %(digits)s digits "
            "of the mobile number on order %(number)s."
        ) % {"digits": 4, "number": "LM2026112001"}
    assert asked.text == expected
    [shown] = say(conversation, "我的手机号是 138 0000 8001")
    assert shown.decision == "action" and TRACKING in shown.text


def test_a_new_conversation_confirms_again(chat_kb: KnowledgeBase) -> None:
    first = english(chat_kb)
    say(first, "where is my order LM2026112001")
    say(first, "8001")
    second = english(chat_kb)
    [asked] = say(second, "where is my order LM2026112001")
    assert asked.decision == "form" and TRACKING not in asked.text


def test_three_wrong_tries_hand_off_without_showing_the_order(chat_kb: KnowledgeBase) -> None:
    conversation = english(chat_kb)
    say(conversation, "where is my order LM2026112001")
    for digits in ("1111", "2222", "3333"):
        say(conversation, digits)
    assert conversation.status == ConversationStatus.WAITING_AGENT
    assert conversation.handoff_reason == "order_unconfirmed"
    assert TRACKING not in bot_texts(conversation) and "earbuds" not in bot_texts(conversation)


def test_wrong_tries_across_conversations_lock_the_order(chat_kb: KnowledgeBase) -> None:
    tries = 0
    while tries < order_services.CONTACT_MAX_FAILURES:
        conversation = english(chat_kb)
        say(conversation, "where is my order LM2026112001")
        for digits in ("1111", "2222"):  # two per conversation, below the form's own limit
            say(conversation, digits)
            tries += 1
    # Now the order cannot be confirmed, in a new conversation too: the digits are not even
    # asked for, and a person helps.
    conversation = english(chat_kb)
    [refused, *_] = say(conversation, "where is my order LM2026112001")
    assert TRACKING not in refused.text and "last 4 digits" not in refused.text
    assert conversation.status == ConversationStatus.WAITING_AGENT
    assert conversation.handoff_reason == "order_unconfirmed"
    assert AuditEvent.objects.filter(
        kind=AuditEvent.Kind.SECURITY, detail__reason="order_contact_locked"
    ).exists()


def test_a_confirmed_order_is_not_asked_again_for_a_return(chat_kb: KnowledgeBase) -> None:
    conversation = english(chat_kb)
    say(conversation, "where is my order LM2026112002")
    say(conversation, "8002")
    [asked] = say(conversation, "I want to return my order LM2026112002")
    assert asked.text == "Why are you returning it?"
    say(conversation, "too small")
    [done] = say(conversation, "skip")
    assert done.decision == "action"
    assert ReturnRequest.objects.filter(order__number="LM2026112002").exists()


def test_a_return_says_nothing_about_the_order_before_the_digits(
    chat_kb: KnowledgeBase,
) -> None:
    conversation = english(chat_kb)
    say(conversation, "I want to return my order")
    [asked] = say(conversation, "LM2026111007")  # a cancelled order
    assert "cancelled" not in asked.text and "last 4 digits" in asked.text
    [refused] = say(conversation, "8007")
    assert "was cancelled" in refused.text


def test_a_corrected_order_number_asks_for_its_own_digits(chat_kb: KnowledgeBase) -> None:
    conversation = english(chat_kb)
    say(conversation, "I want to return my order LM2026111503")
    say(conversation, "8003")
    assert conversation.state["form"]["asking"] == "reason"
    [corrected] = say(conversation, "no, the order number is LM2026112002")
    assert "LM2026112002" in corrected.text and "don't match" not in corrected.text
    assert conversation.state["form"]["asking"] == "contact_digits"
    say(conversation, "8002")
    assert conversation.state["form"]["asking"] == "reason"
    assert conversation.state["confirmed_orders"] == ["LM2026111503", "LM2026112002"]


def test_an_order_without_a_mobile_number_goes_to_a_person(chat_kb: KnowledgeBase) -> None:
    Order.objects.filter(number="LM2026112001").update(contact_phone="")
    conversation = english(chat_kb)
    [refused, *_] = say(conversation, "where is my order LM2026112001")
    assert TRACKING not in refused.text
    assert conversation.status == ConversationStatus.WAITING_AGENT
    assert conversation.handoff_reason == "order_unconfirmed"


@pytest.mark.parametrize(
    "text",
    ["I don't know the number, my wife ordered it", "不记得了", "我换号了", "not my phone"],
)
def test_a_customer_who_cannot_give_the_digits_goes_to_a_person(
    chat_kb: KnowledgeBase, text: str
) -> None:
    conversation = english(chat_kb)
    say(conversation, "where is my order LM2026112001")
    [reply, *_] = say(conversation, text)
    chinese_text = any("\u4e00" <= c <= "\u9fff" for c in text)
    with translation.override("zh-hans" if chinese_text else "en"):
        expected = translation.gettext(
            "No problem: a colleague can confirm the order with you another way."
        )
    assert reply.text == expected
    assert conversation.status == ConversationStatus.WAITING_AGENT
    assert conversation.handoff_reason == "order_unconfirmed"
    assert TRACKING not in bot_texts(conversation)


@pytest.mark.parametrize("text", ["why do you need that?", "为什么要手机号"])
def test_why_the_digits_are_asked_is_explained_and_they_are_asked_again(
    chat_kb: KnowledgeBase, text: str
) -> None:
    conversation = english(chat_kb)
    say(conversation, "where is my order LM2026112001")
    [reply] = say(conversation, text)
    assert conversation.status == ConversationStatus.BOT
    form = conversation.state["form"]
    assert form["asking"] == "contact_digits" and form["attempts"] == 0
    with translation.override("zh-hans" if "为" in text else "en"):
        why = translation.gettext(
            "Order details such as the item and the tracking number are shown only to someone "
            "who knows the mobile number the order is delivered to."
        )
    assert reply.text.startswith(why)
    [shown] = say(conversation, "8001")
    assert TRACKING in shown.text


# --- A conversation an app opened for its signed-in user ------------------------------------


@pytest.fixture
def keyed_api(settings: Any) -> None:
    """The conversation API needs a key, so an API customer's external id is the app's word."""
    settings.CHAT = {**settings.CHAT, "API_REQUIRES_KEY": True}


def app_user(kb: KnowledgeBase, external_id: str) -> Conversation:
    """A conversation an app opened through the API for its user `external_id`."""
    return conversation_services.conversation_start(
        knowledge_base=kb, channel=Channel.API, locale="en", external_id=external_id
    )


def test_an_app_user_sees_their_own_order_without_the_digits(
    chat_kb: KnowledgeBase, keyed_api: None
) -> None:
    # LM2026112001 was placed by the store account demo-user-1.
    conversation = app_user(chat_kb, "demo-user-1")
    [shown] = say(conversation, "where is my order LM2026112001")
    assert shown.decision == "action" and TRACKING in shown.text
    assert "digits" not in bot_texts(conversation)
    assert conversation.state["confirmed_orders"] == ["LM2026112001"]


def test_an_app_users_return_of_their_own_order_goes_straight_to_the_reason(
    chat_kb: KnowledgeBase, keyed_api: None
) -> None:
    conversation = app_user(chat_kb, "demo-user-2")
    [asked] = say(conversation, "I want to return my order LM2026112002")
    assert asked.text == "Why are you returning it?"


@pytest.mark.parametrize(
    "opened",
    [
        pytest.param(lambda kb: app_user(kb, "demo-user-2"), id="another-account"),
        pytest.param(lambda kb: app_user(kb, "someone-else"), id="unknown-account"),
        pytest.param(english, id="web-widget"),
    ],
)
def test_anyone_but_the_orders_account_is_asked_for_the_digits(
    chat_kb: KnowledgeBase, keyed_api: None, opened: Callable[[KnowledgeBase], Conversation]
) -> None:
    conversation = opened(chat_kb)
    [asked] = say(conversation, "where is my order LM2026112001")
    assert asked.decision == "form" and "last 4 digits" in asked.text
    assert TRACKING not in asked.text and "confirmed_orders" not in conversation.state


def test_without_a_required_key_an_external_id_proves_nothing(chat_kb: KnowledgeBase) -> None:
    # Anyone may open an API conversation and name any user when the API needs no key.
    conversation = app_user(chat_kb, "demo-user-1")
    [asked] = say(conversation, "where is my order LM2026112001")
    assert asked.decision == "form" and "last 4 digits" in asked.text
    assert TRACKING not in asked.text


def test_an_app_user_whose_order_is_locked_still_sees_it(
    chat_kb: KnowledgeBase, keyed_api: None
) -> None:
    order = Order.objects.get(number="LM2026112001")
    for _ in range(order_services.CONTACT_MAX_FAILURES):
        order_services.contact_confirm(order, "0000")
    guesser = english(chat_kb)
    say(guesser, "where is my order LM2026112001")
    assert guesser.handoff_reason == "order_unconfirmed"
    owner = app_user(chat_kb, "demo-user-1")
    [shown] = say(owner, "where is my order LM2026112001")
    assert TRACKING in shown.text and owner.status == ConversationStatus.BOT
