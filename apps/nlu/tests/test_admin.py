"""The intents and classifier pages of the admin, driven the way a browser drives them."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.knowledge.tests.test_admin import form_data, page, table
from apps.nlu import services
from apps.nlu.models import ClassifierStatus, ClassifierVersion, Intent
from apps.nlu.tests.conftest import create_intents

pytestmark = pytest.mark.django_db


def test_add_an_intent_with_pasted_examples(admin_client):
    html = page(admin_client.get(reverse("admin:nlu_intent_add")))
    assert 'value="order_status_lookup"' in html  # actions registered by the orders app
    data = form_data(html, "intent_form")
    data.update(
        {
            "name": "order_status",
            "keywords": "where is my order\r\n订单状态\r\n",
            "action": "order_status_lookup",
            "slots": '[{"name": "order_number", "entity": "order_number", "required": true, '
            '"prompt_en": "Your order number?", "prompt_zh": "您的订单号？"}]',
            "new_examples": "Where is my order?\r\n我的订单到哪了\r\n\r\nWhere is my order?",
        }
    )
    response = admin_client.post(reverse("admin:nlu_intent_add"), data)
    assert response.status_code == 302, page(response)
    intent = Intent.objects.get(name="order_status")
    assert intent.keywords == ["where is my order", "订单状态"]
    assert intent.slots[0]["entity"] == "order_number"
    assert sorted(intent.examples.values_list("text", "language")) == [
        ("Where is my order?", "en"),
        ("我的订单到哪了", "zh"),
    ]


def test_an_unknown_slot_entity_is_shown_on_the_form(admin_client):
    data = form_data(page(admin_client.get(reverse("admin:nlu_intent_add"))), "intent_form")
    data.update({"name": "bad", "slots": '[{"name": "size", "entity": "shoe size"}]'})
    response = admin_client.post(reverse("admin:nlu_intent_add"), data)
    assert response.status_code == 200
    assert "entity must be one of" in page(response)
    assert not Intent.objects.exists()


def test_intent_list_counts_examples_in_queries_independent_of_rows(admin_client):
    create_intents(queue=False)
    url = reverse("admin:nlu_intent_changelist")
    admin_client.get(url)
    with CaptureQueriesContext(connection) as few:
        html = page(admin_client.get(url))
    _header, rows = table(html, "result_list")
    counts = {row[1]: row[3] for row in rows}
    assert counts["order_status"] == "10" and counts["out_of_scope"] == "10"
    services.intent_create(name="thanks", examples=["thanks", "谢谢"], queue=False)
    with CaptureQueriesContext(connection) as more:
        admin_client.get(url)
    assert len(more) == len(few)


def test_train_now_button_trains_a_version_shown_in_the_list(admin_client, run_on_commit):
    create_intents(queue=False)
    url = reverse("admin:nlu_classifierversion_changelist")
    assert reverse("admin:nlu_classifierversion_train") in page(admin_client.get(url))
    response = run_on_commit(admin_client.post, reverse("admin:nlu_classifierversion_train"))
    assert response.status_code == 302
    version = ClassifierVersion.objects.get()
    assert version.status == ClassifierStatus.READY and version.is_active
    header, rows = table(page(admin_client.get(url)), "result_list")
    shown = dict(zip(header, rows[0], strict=True))
    assert shown["Number"] == str(version.number) and shown["Examples"] == "40"
    assert shown["Accuracy (CV)"] == f"{version.metrics['accuracy']:.3f}"
    assert admin_client.get(reverse("admin:nlu_classifierversion_train")).status_code == 405


def test_edit_and_delete_examples_inline(admin_client):
    create_intents(queue=False)
    intent = Intent.objects.get(name="greeting")
    url = reverse("admin:nlu_intent_change", args=[intent.pk])
    html = page(admin_client.get(url))
    assert "您好" in html
    data = form_data(html, "intent_form")
    texts = {data[f"examples-{i}-text"]: i for i in range(int(data["examples-TOTAL_FORMS"]) - 1)}
    data[f"examples-{texts['hello']}-text"] = "hello hello"
    data[f"examples-{texts['您好']}-DELETE"] = "on"
    data["new_examples"] = "hiya"
    response = admin_client.post(url, data)
    assert response.status_code == 302, page(response)
    examples = set(intent.examples.values_list("text", flat=True))
    assert {"hello hello", "hiya"} <= examples
    assert not {"hello", "您好"} & examples
    assert len(examples) == 10
