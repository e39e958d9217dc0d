"""Confirming an order before a chat shows it: the last digits of its contact mobile number,
and the per-order limit on wrong tries."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache

from apps.audit.models import AuditEvent
from apps.nlu.actions import ActionContext
from apps.orders import actions, services
from apps.orders.models import Order

pytestmark = pytest.mark.django_db


@pytest.fixture
def order(db: Any) -> Order:
    cache.clear()  # wrong tries are counted in the cache, which outlives a test's transaction
    services.demo_orders_load()
    return Order.objects.get(number="LM2026112001")


@pytest.mark.parametrize(
    ("phone", "tail"),
    [("13800008001", "8001"), ("+86 138-0000-8001", "8001"), ("8001", "8001"), ("801", "")],
)
def test_the_last_digits_of_a_number_as_typed(phone: str, tail: str) -> None:
    assert services.contact_tail(phone) == tail


def test_the_demo_orders_have_contact_numbers_even_when_loaded_before_them(db: Any) -> None:
    services.demo_orders_load()
    Order.objects.filter(number="LM2026112002").update(contact_phone="")
    services.demo_orders_load()
    assert services.contact_tail(Order.objects.get(number="LM2026112002").contact_phone) == "8002"


def test_right_and_wrong_digits(order: Order) -> None:
    assert services.contact_confirm(order, "8001") == "ok"
    assert services.contact_confirm(order, "+86 138 0000 8001") == "ok"
    assert services.contact_confirm(order, "8002") == "wrong"
    assert services.contact_confirm(order, "") == "wrong"


def test_an_order_without_a_number_cannot_be_confirmed(order: Order) -> None:
    order.contact_phone = ""
    order.save()
    assert services.contact_confirm(order, "8001") == "no_contact"


def test_too_many_wrong_tries_lock_the_order_and_are_recorded(order: Order) -> None:
    for _ in range(services.CONTACT_MAX_FAILURES - 1):
        assert services.contact_confirm(order, "0000", conversation_id=7) == "wrong"
    assert not AuditEvent.objects.filter(kind=AuditEvent.Kind.SECURITY).exists()
    assert services.contact_confirm(order, "0000", conversation_id=7) == "locked"
    # Locked for everyone, the right digits included, until the hour is over.
    assert services.contact_confirm(order, "8001") == "locked"
    assert services.contact_locked(order)
    context = ActionContext(conversation_id=0, customer_id=0, language="en")
    refused = actions.order_status_lookup({"order_number": order.number}, context)
    assert refused.handoff_reason == "order_unconfirmed" and "ask" not in refused.data
    [event] = AuditEvent.objects.filter(kind=AuditEvent.Kind.SECURITY)
    assert event.detail == {
        "reason": "order_contact_locked",
        "order_id": order.pk,
        "conversation_id": 7,
        "failures": services.CONTACT_MAX_FAILURES,
    }
    # Another order is not locked.
    other = Order.objects.get(number="LM2026112002")
    assert services.contact_confirm(other, "8002") == "ok"


def test_the_actions_show_nothing_of_an_unconfirmed_order(order: Order) -> None:
    context = ActionContext(conversation_id=0, customer_id=0, language="en")
    asked = actions.order_status_lookup({"order_number": "LM2026112001"}, context)
    assert asked.data == {"ask": actions.CONTACT_SLOT}
    assert order.tracking_number not in asked.text and "earbuds" not in asked.text
    # A return is not refused (which would say the order is not delivered) before it either.
    check = actions.return_request_check({"order_number": "LM2026112001"}, context)
    assert check is not None and check.data == {"ask": actions.CONTACT_SLOT}
    created = actions.return_request_create(
        {"order_number": "LM2026112002", "reason": "too small"}, context
    )
    assert created.data == {"ask": actions.CONTACT_SLOT}
    assert not Order.objects.get(number="LM2026112002").returns.exists()
    assert "confirmed_orders" not in context.state


def test_a_confirmed_order_is_remembered_by_the_conversation(order: Order) -> None:
    context = ActionContext(conversation_id=0, customer_id=0, language="en")
    slots = {"order_number": "LM2026112001", "contact_digits": "8001"}
    shown = actions.order_status_lookup(slots, context)
    assert order.tracking_number in shown.text
    assert context.state["confirmed_orders"] == ["LM2026112001"]
    # Without the digits now: the conversation confirmed it already.
    again = actions.order_status_lookup({"order_number": "2026112001"}, context)
    assert order.tracking_number in again.text
    # Wrong digits for an order are not taken for another's.
    other = ActionContext(conversation_id=0, customer_id=0, language="en")
    wrong = actions.order_status_lookup({**slots, "contact_digits": "8002"}, other)
    assert wrong.data == {"ask": actions.CONTACT_SLOT, "rejected": True}
    assert order.tracking_number not in wrong.text


def test_an_order_nobody_can_confirm_goes_to_a_person(order: Order) -> None:
    order.contact_phone = ""
    order.save()
    context = ActionContext(conversation_id=0, customer_id=0, language="en")
    result = actions.order_status_lookup({"order_number": "LM2026112001"}, context)
    assert result.handoff_reason == "order_unconfirmed"
    assert order.tracking_number not in result.text and "earbuds" not in result.text
