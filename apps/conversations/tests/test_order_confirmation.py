"""An order's details reach a chat only after the customer confirms the last digits of its
mobile number; the digits are asked for like a form's own value and remembered by the
conversation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import translation

from apps.audit import keys
from apps.audit.models import ApiKey, AuditEvent, Scope
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


def app_user(kb: KnowledgeBase, external_id: str, key: ApiKey | None = None) -> Conversation:
    """A conversation an app opened through the API for its user `external_id`, with its key
    (which vouches for the user) or without."""
    return conversation_services.conversation_start(
        knowledge_base=kb, channel=Channel.API, locale="en", external_id=external_id, api_key=key
    )


def test_an_app_user_sees_their_own_order_without_the_digits(
    chat_kb: KnowledgeBase, app_key: ApiKey
) -> None:
    # LM2026112001 was placed by the store account demo-user-1.
    conversation = app_user(chat_kb, "demo-user-1", app_key)
    [shown] = say(conversation, "where is my order LM2026112001")
    assert shown.decision == "action" and TRACKING in shown.text
    assert "digits" not in bot_texts(conversation)
    assert conversation.state["confirmed_orders"] == ["LM2026112001"]


def test_an_app_users_return_of_their_own_order_goes_straight_to_the_reason(
    chat_kb: KnowledgeBase, app_key: ApiKey
) -> None:
    conversation = app_user(chat_kb, "demo-user-2", app_key)
    [asked] = say(conversation, "I want to return my order LM2026112002")
    assert asked.text == "Why are you returning it?"


def _revoked(key: ApiKey) -> ApiKey:
    keys.api_key_revoke(key)
    key.refresh_from_db()
    return key


@pytest.mark.parametrize(
    "opened",
    [
        pytest.param(lambda kb, key: app_user(kb, "demo-user-2", key), id="another-account"),
        pytest.param(lambda kb, key: app_user(kb, "someone-else", key), id="unknown-account"),
        # Anyone may open an API conversation without a key (unless CHAT_API_REQUIRES_KEY) and
        # name any user: the name proves nothing.
        pytest.param(lambda kb, key: app_user(kb, "demo-user-1"), id="no-key"),
        pytest.param(lambda kb, key: app_user(kb, "demo-user-1", _revoked(key)), id="revoked"),
        pytest.param(lambda kb, key: english(kb), id="web-widget"),
    ],
)
def test_anyone_but_the_orders_account_is_asked_for_the_digits(
    chat_kb: KnowledgeBase,
    app_key: ApiKey,
    opened: Callable[[KnowledgeBase, ApiKey], Conversation],
) -> None:
    conversation = opened(chat_kb, app_key)
    [asked] = say(conversation, "where is my order LM2026112001")
    assert asked.decision == "form" and "last 4 digits" in asked.text
    assert TRACKING not in asked.text and "confirmed_orders" not in conversation.state


def test_an_app_user_whose_order_is_locked_still_sees_it(
    chat_kb: KnowledgeBase, app_key: ApiKey
) -> None:
    order = Order.objects.get(number="LM2026112001")
    for _ in range(order_services.CONTACT_MAX_FAILURES):
        order_services.contact_confirm(order, "0000")
    guesser = english(chat_kb)
    say(guesser, "where is my order LM2026112001")
    assert guesser.handoff_reason == "order_unconfirmed"
    owner = app_user(chat_kb, "demo-user-1", app_key)
    [shown] = say(owner, "where is my order LM2026112001")
    assert TRACKING in shown.text and owner.status == ConversationStatus.BOT


@pytest.mark.parametrize(("with_key", "shown"), [(True, True), (False, False)])
def test_over_rest_the_apps_key_vouches_for_its_user(
    chat_kb: KnowledgeBase, app_key: ApiKey, client: Client, with_key: bool, shown: bool
) -> None:
    # The app's backend opens the conversation for its signed-in user demo-user-1, sending its
    # chat key; the same call without the key names the same user, and proves nothing.
    key = keys.api_key_create(name="shop app 2", user=app_key.user, scopes=[Scope.CHAT]).key
    headers: dict[str, Any] = {"HTTP_X_API_KEY": key} if with_key else {}
    made = client.post(
        "/api/v1/conversations",
        {"kb": chat_kb.pk, "external_id": "demo-user-1"},
        content_type="application/json",
        **headers,
    )
    assert made.status_code == 201, made.content
    body = made.json()
    reply = client.post(
        f"/api/v1/conversations/{body['id']}/messages",
        {"text": "where is my order LM2026112001"},
        "application/json",
        HTTP_AUTHORIZATION=f"Conversation {body['token']}",
        **headers,
    ).json()["replies"][0]["text"]
    assert (TRACKING in reply) is shown
    assert ("last 4 digits" in reply) is not shown


def test_the_admin_shows_which_key_opened_a_conversation(
    chat_kb: KnowledgeBase, app_key: ApiKey, admin_client: Client
) -> None:
    conversation = app_user(chat_kb, "demo-user-1", app_key)
    url = reverse("admin:conversations_conversation_change", args=[conversation.pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert str(app_key) in html and 'name="api_key"' not in html  # shown, not editable
