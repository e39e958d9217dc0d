"""Forms as the help-centre probe found them wanting, in both languages: a reason given in the
message that opens a return, an order number typed without its letters, an order that cannot be
returned refused as soon as its number is known, a customer who does not know the order number,
and a short question (in either language or both) asked where the order number is expected.

Each dialogue goes through the engine the way the socket sends it (`say`), on the demo store's
orders and the test help centre (keyword intents, no classifier).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import translation

from apps.conversations import slot_filling
from apps.conversations.models import Conversation, ConversationStatus, Role
from apps.conversations.tests.conftest import chinese, english, orders_confirmed, say
from apps.knowledge.models import KnowledgeBase
from apps.nlu.entities import extract_entities
from apps.orders.models import ReturnRequest

ASK_ORDER = {
    "en": "Which order would you like to return? Please give the order number.",
    "zh": "请问要退哪个订单？请提供订单号。",
}
ASK_STATUS_ORDER = {"en": "What is the order number?", "zh": "请提供订单号。"}
ASK_REASON = {"en": "Why are you returning it?", "zh": "请说一下退货原因。"}
ASK_PHOTO = {
    "en": "You can send a photo link, or say skip.",
    "zh": "可以发送照片链接，或回复“跳过”。",
}
SKIP = {"en": "skip", "zh": "跳过"}
START_RETURN = {"en": "I want to return my order", "zh": "我要退货"}
START_STATUS = {"en": "where is my order", "zh": "我的订单到哪了"}


def start(kb: KnowledgeBase, language: str) -> Conversation:
    return orders_confirmed(english(kb) if language == "en" else chinese(kb))


def gettext_in(language: str, message: str) -> str:
    with translation.override("en" if language == "en" else "zh-hans"):
        return translation.gettext(message)


# --- 1. A reason given in the message that opens the return ----------------------------------


@pytest.mark.parametrize(
    ("language", "text", "reason"),
    [
        (
            "en",
            "I want to return my order LM2026112002 because the zipper is broken",
            "the zipper is broken",
        ),
        ("en", "I want to return my order LM2026112002 since it doesn't fit", "it doesn't fit"),
        (
            "en",
            "I want to return my order LM2026112002, the zipper is broken",
            "the zipper is broken",
        ),
        ("zh", "我要退货 LM2026112002，因为拉链坏了", "拉链坏了"),
        ("zh", "我要退货，订单LM2026112002，衣服不合适", "衣服不合适"),
        ("zh", "我要退货 LM2026112002 尺码太小了", "尺码太小了"),
    ],
)
def test_a_reason_in_the_opening_message_fills_the_reason(
    chat_kb: KnowledgeBase, language: str, text: str, reason: str
) -> None:
    conversation = start(chat_kb, language)
    [ask] = say(conversation, text)
    assert (ask.decision, ask.text) == ("form", ASK_PHOTO[language])
    form = conversation.state["form"]
    assert form["slots"] == {"order_number": "LM2026112002", "reason": reason}
    [done] = say(conversation, SKIP[language])
    assert done.decision == "action"
    assert ReturnRequest.objects.get().reason == reason


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("en", "I want to return my order LM2026112002"),
        ("en", "start a return for LM2026112002 please"),
        ("zh", "我要退货 LM2026112002"),
        ("zh", "订单号LM2026112002，我要退货"),
    ],
)
def test_an_opening_message_with_only_the_order_number_asks_for_the_reason(
    chat_kb: KnowledgeBase, language: str, text: str
) -> None:
    conversation = start(chat_kb, language)
    [ask] = say(conversation, text)
    assert (ask.decision, ask.text) == ("form", ASK_REASON[language])
    assert conversation.state["form"]["slots"] == {"order_number": "LM2026112002"}


@pytest.mark.parametrize(
    ("language", "text", "reason"),
    [
        ("en", "LM2026112002, the zipper is broken", "the zipper is broken"),
        ("zh", "LM2026112002，拉链坏了", "拉链坏了"),
    ],
)
def test_a_reason_given_with_the_order_number_is_not_asked_for(
    chat_kb: KnowledgeBase, language: str, text: str, reason: str
) -> None:
    conversation = start(chat_kb, language)
    say(conversation, START_RETURN[language])
    [ask] = say(conversation, text)
    assert ask.text == ASK_PHOTO[language]
    assert conversation.state["form"]["slots"]["reason"] == reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "I want to return order LM2026112002 because the zipper is broken",
            "the zipper is broken",
        ),
        ("return it as it doesn't fit", "it doesn't fit"),
        ("I want to return my jacket, it's too small", "it's too small"),
        ("我的订单号是LM2026112002，想退货，衣服质量有问题", "衣服质量有问题"),
        ("我要退LM2026112002因为拉链坏了", "拉链坏了"),
        ("我买的耳机坏了", "我买的耳机坏了"),
        ("我要退货 LM2026112002", None),
        ("申请退货", None),
        ("I want to return order LM2026112002", None),
        ("return my order as soon as possible", None),
        ("I need to return something I bought last week", None),
        ("can I return it if it's too small?", None),
    ],
)
def test_what_states_a_reason(text: str, reason: str | None) -> None:
    assert slot_filling.stated_reason(text, extract_entities(text)) == reason


# --- 2. An order number typed without its letters -------------------------------------------


@pytest.mark.parametrize(
    ("language", "number"),
    [
        ("en", "my order no. is 2026112001"),
        ("en", "2026112001"),
        ("zh", "订单号：2026112001"),
        ("zh", "2026 1120 01"),
    ],
)
def test_an_order_number_without_its_letters_is_found(
    chat_kb: KnowledgeBase, language: str, number: str
) -> None:
    conversation = start(chat_kb, language)
    say(conversation, START_STATUS[language])
    [done] = say(conversation, number)
    assert done.decision == "action" and "SF2026112001" in done.text
    assert "LM2026112001" in done.text and "form" not in conversation.state


@pytest.mark.parametrize(
    ("language", "text"),
    [("en", "where is my order, order no. 2026112001"), ("zh", "我的订单到哪了 订单号2026112001")],
)
def test_an_opening_message_with_the_digits_only_is_looked_up(
    chat_kb: KnowledgeBase, language: str, text: str
) -> None:
    conversation = start(chat_kb, language)
    [done] = say(conversation, text)
    assert done.decision == "action" and "SF2026112001" in done.text


# --- 3. An order that cannot be returned is refused at once ---------------------------------


@pytest.mark.parametrize("language", ["en", "zh"])
def test_an_order_not_delivered_is_refused_as_soon_as_its_number_is_known(
    chat_kb: KnowledgeBase, language: str
) -> None:
    conversation = start(chat_kb, language)
    say(conversation, START_RETURN[language])
    [refused] = say(conversation, "LM2026112001")
    assert refused.decision == "action" and "LM2026112001" in refused.text
    expected = gettext_in(
        language,
        "Order %(number)s hasn't been delivered yet. You can refuse the parcel on "
        "delivery, or cancel the order while it is awaiting shipment.",
    ) % {"number": "LM2026112001"}
    assert refused.text == expected
    assert "form" not in conversation.state and conversation.status == ConversationStatus.BOT
    assert not ReturnRequest.objects.exists()


@pytest.mark.parametrize(
    ("language", "text"),
    [("en", "I want to return my order LM2026101506"), ("zh", "我要退货 LM2026101506")],
)
def test_an_order_past_the_window_is_refused_at_once_with_one_hand_off_message(
    chat_kb: KnowledgeBase, language: str, text: str
) -> None:
    conversation = start(chat_kb, language)
    replies = say(conversation, text)
    bot = [r for r in replies if r.role == Role.BOT]
    system = [r for r in replies if r.role == Role.SYSTEM]
    assert len(bot) == 1 and len(system) == 1 and len(replies) == 2
    expected = gettext_in(
        language,
        "Order %(number)s was delivered more than 30 days ago, which is past the return window.",
    ) % {"number": "LM2026101506"}
    assert bot[0].text == expected
    assert ASK_REASON[language] not in bot[0].text
    assert conversation.status == ConversationStatus.WAITING_AGENT
    assert conversation.handoff_reason == "return_window"
    assert not ReturnRequest.objects.exists()


@pytest.mark.parametrize(
    ("language", "correction"),
    [
        ("en", "no, the order number is LM2026101506"),
        ("zh", "不对，订单号是 LM2026101506"),
    ],
)
def test_a_corrected_order_number_that_cannot_be_returned_is_refused_at_once(
    chat_kb: KnowledgeBase, language: str, correction: str
) -> None:
    conversation = start(chat_kb, language)
    say(conversation, START_RETURN[language])
    say(conversation, "LM2026112002")
    replies = say(conversation, correction)
    assert [r.role for r in replies] == [Role.BOT, Role.SYSTEM]
    assert "LM2026101506" in replies[0].text and ASK_REASON[language] not in replies[0].text
    assert conversation.handoff_reason == "return_window"
    assert not ReturnRequest.objects.exists()


@pytest.mark.parametrize("language", ["en", "zh"])
def test_an_unknown_order_number_is_asked_again_before_the_reason(
    chat_kb: KnowledgeBase, language: str
) -> None:
    conversation = start(chat_kb, language)
    say(conversation, START_RETURN[language])
    [again] = say(conversation, "LM1111111111")
    assert again.decision == "form" and "LM1111111111" in again.text
    form = conversation.state["form"]
    assert form["asking"] == "order_number" and form["attempts"] == 1 and not form["slots"]
    [ask] = say(conversation, "LM2026112002")
    assert ask.text == ASK_REASON[language]


@pytest.mark.parametrize("language", ["en", "zh"])
def test_an_order_with_a_return_open_says_so_at_once(chat_kb: KnowledgeBase, language: str) -> None:
    conversation = start(chat_kb, language)
    say(conversation, START_RETURN[language])
    say(conversation, "LM2026112002")
    say(conversation, "too small" if language == "en" else "太小了")
    say(conversation, SKIP[language])
    first = ReturnRequest.objects.get()
    again = start(chat_kb, language)
    say(again, START_RETURN[language])
    [open_already] = say(again, "LM2026112002")
    assert open_already.decision == "action" and first.number in open_already.text
    assert ReturnRequest.objects.count() == 1 and "form" not in again.state


# --- 4. The customer does not know the order number -----------------------------------------


@pytest.mark.parametrize(
    ("language", "first", "second"),
    [
        ("en", "I don't know the order number", "where do I find it?"),
        ("en", "where can I find my order number?", "I can't find it"),
        ("zh", "我不知道订单号", "忘了订单号"),
        ("zh", "订单号在哪看", "找不到"),
    ],
)
def test_not_knowing_the_order_number_gets_help_then_a_person(
    chat_kb: KnowledgeBase, language: str, first: str, second: str
) -> None:
    conversation = start(chat_kb, language)
    say(conversation, START_RETURN[language])
    [help_] = say(conversation, first)
    where = gettext_in(
        language,
        "You can find the order number in the order confirmation e-mail, or under My Orders in "
        "your account. It starts with LM, for example LM2026112001.",
    )
    assert help_.decision == "form" and help_.text == f"{where}\n{ASK_ORDER[language]}"
    form = conversation.state["form"]
    assert form["intent"] == "return_request" and form["asking"] == "order_number"
    assert form["attempts"] == 0 and conversation.status == ConversationStatus.BOT

    replies = say(conversation, second)
    assert [r.role for r in replies] == [Role.BOT, Role.SYSTEM]
    assert conversation.status == ConversationStatus.WAITING_AGENT
    assert conversation.handoff_reason == "form_failed"


@pytest.mark.parametrize("language", ["en", "zh"])
def test_the_order_number_after_not_knowing_it_is_looked_up(
    chat_kb: KnowledgeBase, language: str
) -> None:
    conversation = start(chat_kb, language)
    say(conversation, START_STATUS[language])
    say(conversation, "I don't know it" if language == "en" else "不知道")
    [done] = say(conversation, "LM2026112001")
    assert done.decision == "action" and "SF2026112001" in done.text


@pytest.mark.parametrize(
    ("text", "unknown"),
    [
        ("I don't know the order number", True),
        ("no idea", True),
        ("sorry, I forgot the order number", True),
        ("what's my order number?", True),
        ("where do I find it", True),
        ("我不知道订单号", True),
        ("忘了订单号", True),
        ("我的订单号是多少", True),
        ("在哪里找订单号", True),
        ("没有订单号", True),
        ("where is my order", False),
        ("我的订单到哪了", False),
        ("I don't know why it broke", False),
        ("不知道怎么退款", False),
        ("我不知道订单号，退款多久到账？", False),
        ("LM2026112001", False),
    ],
)
def test_what_says_the_order_number_is_not_known(text: str, unknown: bool) -> None:
    assert slot_filling.is_order_number_unknown(text) is unknown


# --- 5. A short question, in either language or both, where the order number is asked --------


@pytest.mark.parametrize(
    ("language", "question"),
    [
        ("zh", "refund 多久到账"),
        ("zh", "多久退款"),
        ("zh", "运费呢"),
        ("zh", "包邮吗"),
        ("zh", "order 能改吗"),
        # An English conversation: the mixed message is answered in Chinese, and the order
        # number asked for in the language the message is read in.
        ("en", "refund 多久到账"),
        ("en", "return 可以吗"),
    ],
)
def test_a_short_question_at_the_order_number_prompt_keeps_the_form(
    chat_kb: KnowledgeBase, language: str, question: str
) -> None:
    conversation = start(chat_kb, language)
    say(conversation, START_RETURN[language])
    replies = say(conversation, question)
    *handled, again = replies
    assert handled and all(r.decision in ("answer", "fallback", "clarify") for r in handled)
    assert again.decision == "form" and again.text in ASK_ORDER.values()
    form = conversation.state["form"]
    assert form["intent"] == "return_request" and form["asking"] == "order_number"
    assert form["attempts"] == 0
    [ask] = say(conversation, "LM2026112002")
    assert ask.text in ASK_REASON.values()


@pytest.mark.parametrize(
    ("text", "asks"),
    [
        ("refund 多久到账", True),
        ("我的order什么时候到", True),
        ("how long 退款", True),
        ("退款 how long?", True),
        ("可以用手机号查吗", True),
        ("那退款呢", True),
        ("退款为什么还没到", True),
        ("能不能寄到美国", True),
        ("这个质量还可以", False),
        ("呢子大衣起球了", False),
        ("size 太小", False),
        ("12345?", False),
    ],
)
def test_mixed_and_chinese_questions_anywhere_ask(text: str, asks: bool) -> None:
    assert slot_filling.is_question_aside(text) is asks


def test_a_check_registered_for_an_action_runs_before_the_next_value(
    chat_kb: KnowledgeBase, monkeypatch: Any
) -> None:
    seen: list[dict[str, Any]] = []

    def check(slots: dict[str, Any], context: Any) -> None:
        seen.append(dict(slots))

    monkeypatch.setitem(slot_filling._slot_checks, "return_request_create", check)
    conversation = english(chat_kb)
    say(conversation, START_RETURN["en"])
    say(conversation, "LM2026101506")  # past the window, but this check lets it through
    assert conversation.state["form"]["asking"] == "reason"
    assert seen == [{}, {"order_number": "LM2026101506"}]


@pytest.mark.parametrize("language", ["en", "zh"])
def test_a_form_that_gives_up_announces_the_hand_off_once(
    chat_kb: KnowledgeBase, language: str
) -> None:
    conversation = start(chat_kb, language)
    say(conversation, START_STATUS[language])
    say(conversation, "LM12")
    say(conversation, "LM34")
    replies = say(conversation, "LM56")
    assert conversation.status == ConversationStatus.WAITING_AGENT
    assert conversation.handoff_reason == "form_failed"
    # The form says it is stuck; only the system notice after it says a person takes over.
    assert [r.role for r in replies] == [Role.BOT, Role.SYSTEM]
    assert replies[0].text == gettext_in(language, "Sorry, I'm having trouble with this.")
