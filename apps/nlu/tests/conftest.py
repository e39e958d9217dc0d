from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache

from apps.nlu import selectors


@pytest.fixture(autouse=True)
def fresh_nlu_state() -> Iterator[None]:
    """Each test starts with nothing cached: a rolled-back test leaves stamps in the cache that
    no commit ever bumped, and the per-process copies would outlive its rows."""
    cache.clear()
    selectors._intents = selectors._Intents()
    selectors._classifier = selectors._Classifier()
    yield
    cache.clear()


# A small bilingual training set: three intents and out-of-scope messages, both languages.
EXAMPLES: dict[str, list[str]] = {
    "order_status": [
        "where is my order",
        "what's the status of my order",
        "has my order shipped yet",
        "track my order LM2026112001",
        "when will my order arrive",
        "我的订单到哪了",
        "帮我查一下订单状态",
        "我的快递发货了吗",
        "订单什么时候能到",
        "查一下订单 LM2026112001",
    ],
    "return_request": [
        "I want to return my order",
        "I'd like to send this item back",
        "start a return for my shoes",
        "the jacket is too small, I want to return it",
        "please help me return a broken charger",
        "我要退货",
        "帮我申请退货",
        "衣服不合适，我想退掉",
        "收到的东西坏了，要退货",
        "这个耳机我想退回去",
    ],
    "greeting": [
        "hello",
        "hi there",
        "good morning",
        "hey, anyone there?",
        "good evening",
        "你好",
        "您好",
        "在吗",
        "早上好",
        "有人在吗",
    ],
    "oos": [
        "how much does shipping cost",
        "do you accept paypal",
        "how do I reset my password",
        "can I get a VAT invoice",
        "what's the weather today",
        "运费多少钱",
        "支持微信支付吗",
        "忘记密码怎么办",
        "怎么开发票",
        "今天天气怎么样",
    ],
}


def training_rows(include_oos: bool = True) -> tuple[list[str], list[str]]:
    texts: list[str] = []
    labels: list[str] = []
    for label, items in EXAMPLES.items():
        if label == "oos" and not include_oos:
            continue
        texts += items
        labels += [label] * len(items)
    return texts, labels


def create_intents(**extra: Any) -> None:
    """The three intents (and out_of_scope) through the services, keywords included."""
    from apps.nlu import services

    keywords = {
        "order_status": ["where is my order", "订单状态", "查订单"],
        "return_request": ["return", "退货"],
        "greeting": ["hello", "你好"],
        selectors.OUT_OF_SCOPE_INTENT: [],
    }
    for name, words in keywords.items():
        key = "oos" if name == selectors.OUT_OF_SCOPE_INTENT else name
        services.intent_create(name=name, keywords=words, examples=EXAMPLES[key], **extra)
