"""Editing intents and examples retrains the classifier; validation; the demo intents."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from apps.core.exceptions import ServiceError
from apps.nlu import actions, selectors, services
from apps.nlu.models import ClassifierStatus, ClassifierVersion, Intent, IntentExample
from apps.nlu.tests.conftest import create_intents

ORDER_SLOT = {
    "name": "order_number",
    "entity": "order_number",
    "required": True,
    "prompt_en": "Your order number?",
    "prompt_zh": "您的订单号？",
}


@pytest.mark.django_db
def test_changing_examples_retrains_and_activates_a_new_version(run_on_commit):
    run_on_commit(create_intents)
    first = ClassifierVersion.objects.get()
    assert first.status == ClassifierStatus.READY and first.is_active, first.error
    assert first.example_count == 40 and first.intent_count == 3
    assert set(first.labels) == {"greeting", "order_status", "return_request", "out_of_scope"}
    assert 0.5 <= first.metrics["accuracy"] <= 1 and "macro_f1" in first.metrics
    assert first.metrics["oos_threshold"] == first.oos_threshold
    assert first.train_seconds > 0 and first.finished_at is not None
    prediction = selectors.classify("我想退掉这件衣服")
    assert (prediction.intent, prediction.method, prediction.version) == (
        "return_request",
        "classifier",
        first.number,
    )
    # Out of scope: the out_of_scope examples teach what to leave to the knowledge base.
    assert selectors.classify("运费怎么算").intent is None

    intent = Intent.objects.get(name="greeting")
    run_on_commit(services.intent_example_add, intent, "howdy partner")
    assert IntentExample.objects.get(text="howdy partner").language == "en"
    second = ClassifierVersion.objects.get(is_active=True)
    assert second.number == first.number + 1 and second.example_count == 41
    first.refresh_from_db()
    assert not first.is_active
    assert selectors.classify("howdy partner").version == second.number


@pytest.mark.django_db
def test_a_burst_of_changes_queues_one_training(run_on_commit):
    def edit() -> None:
        create_intents()
        greeting = Intent.objects.get(name="greeting")
        services.intent_example_add(greeting, "yo")
        services.intent_examples_set(greeting, ["hello", "hi", "你好", "您好"])

    run_on_commit(edit)
    assert ClassifierVersion.objects.count() == 1
    assert ClassifierVersion.objects.get().example_count == 34


@pytest.mark.django_db
def test_training_with_one_intent_is_recorded_as_failed():
    services.intent_create(name="greeting", examples=["hello", "hi"], queue=False)
    with pytest.raises(ServiceError):
        services.classifier_train()
    version = ClassifierVersion.objects.get()
    assert version.status == ClassifierStatus.FAILED and "two intents" in version.error
    assert not version.is_active
    assert selectors.classify("hello").method == "none"


@pytest.mark.django_db
def test_intents_are_validated():
    with pytest.raises(ValidationError) as error:
        services.intent_create(name="bad", slots=[{"name": "x", "entity": "shoe size"}])
    assert "slots" in error.value.message_dict
    with pytest.raises(ValidationError) as error:
        services.intent_create(name="bad", slots=[{**ORDER_SLOT, "prompt_zh": ""}])
    assert "prompt_en and prompt_zh" in error.value.message_dict["slots"][0]
    with pytest.raises(ValidationError) as error:
        services.intent_create(name="bad", action="no_such_action")
    assert "action" in error.value.message_dict
    assert not Intent.objects.exists()

    actions.register("test_lookup", "Test lookup")(lambda slots, context: None)  # type: ignore
    intent = services.intent_create(
        name="order_status",
        slots=[ORDER_SLOT],
        action="test_lookup",
        keywords=["Track", "track ", "查订单"],
        queue=False,
    )
    assert intent.keywords == ["Track", "查订单"]
    with pytest.raises(ServiceError):
        services.intent_update(intent, examples=["x"])


@pytest.mark.django_db
def test_demo_intents_load_twice(run_on_commit):
    report = run_on_commit(services.demo_intents_load)
    assert report.created == 7 and report.version is not None
    assert report.version.is_active and report.version.intent_count == 6
    human = Intent.objects.get(name="human_agent")
    assert human.handoff_policy == "always"
    assert Intent.objects.get(name="return_request").slots[1]["entity"] == "text"
    for name in ("order_status", "return_request", "greeting", "thanks", "goodbye"):
        intent = Intent.objects.get(name=name)
        languages = list(intent.examples.values_list("language", flat=True))
        assert languages.count("en") >= 15 and languages.count("zh") >= 15, name
    checks = {
        "我要退货，订单号 LM2026112001": "return_request",
        "where is my package? order LM2026110001": "order_status",
        "转人工": "human_agent",
        "thanks a lot!": "thanks",
        "how much does shipping cost": None,
    }
    assert {text: selectors.classify(text).intent for text in checks} == checks

    again = run_on_commit(services.demo_intents_load)
    assert (again.created, again.updated, again.unchanged, again.version) == (0, 0, 7, None)
    assert ClassifierVersion.objects.count() == 1
