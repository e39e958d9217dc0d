"""Finding a demo order by the number a customer typed, and the return rules as both the return
form's early check and the return action apply them."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone, translation

from apps.nlu import actions as nlu_actions
from apps.nlu.actions import ActionContext
from apps.orders import actions, services
from apps.orders.models import Order, OrderStatus, ReturnRequest

pytestmark = pytest.mark.django_db


def confirmed() -> ActionContext:
    """A conversation whose customer has confirmed every demo order (the mobile digits); the
    confirmation itself is tested in test_confirmation.py."""
    state = {"confirmed_orders": [order[0] for order in services.DEMO_ORDERS]}
    return ActionContext(conversation_id=0, customer_id=0, language="en", state=state)


@pytest.fixture
def demo_orders(db: Any) -> None:
    services.demo_orders_load()


@pytest.mark.parametrize(
    "typed",
    [
        "LM2026112001",
        "lm2026112001",
        " Lm2026112001 ",
        "LM 2026-112001",
        "2026112001",
        "2026 1120 01",
        "2026-112001",
    ],
)
def test_an_order_is_found_with_or_without_its_letters(demo_orders: None, typed: str) -> None:
    order = services.order_find(typed)
    assert order is not None and order.number == "LM2026112001"


@pytest.mark.parametrize(
    "typed", ["", "  ", "LM2026112099", "2026112099", "XX2026112001", "026112001", "12026112001"]
)
def test_a_number_no_order_has_finds_nothing(demo_orders: None, typed: str) -> None:
    assert services.order_find(typed) is None


def test_digits_two_orders_share_find_neither(demo_orders: None) -> None:
    Order.objects.create(
        number="AB2026112001",
        item="Other store's order",
        total=Decimal("1.00"),
        status=OrderStatus.SHIPPED,
        placed_at=timezone.now(),
    )
    assert services.order_find("2026112001") is None
    found = services.order_find("ab2026112001")
    assert found is not None and found.number == "AB2026112001"


@pytest.mark.parametrize(
    ("number", "refusal"),
    [
        ("LM2026112001", "not_delivered"),  # shipped
        ("LM2026111804", "not_delivered"),  # awaiting shipment
        ("LM2026112205", "not_delivered"),  # awaiting payment
        ("LM2026111007", "cancelled"),
        ("LM2026101506", "too_late"),  # delivered 40 days ago
        ("LM2026112002", None),  # delivered 3 days ago
        ("LM2026111503", None),  # delivered 20 days ago: reviewed, not refused
    ],
)
def test_the_return_rules_apply_the_same_to_the_check_and_the_action(
    demo_orders: None, number: str, refusal: str | None
) -> None:
    order = Order.objects.get(number=number)
    assert services.return_refusal(order) == refusal
    check = actions.return_request_check({"order_number": number}, confirmed())
    if refusal is None:
        assert check is None
        outcome = services.return_request_create(order, reason="too small")
        assert outcome.created
        return
    assert check is not None and check.data == {"created": False, "refused": refusal}
    with pytest.raises(services.ReturnRefused) as raised:
        services.return_request_create(order, reason="too small")
    assert raised.value.code == refusal
    created = actions.return_request_create(
        {"order_number": number, "reason": "too small"}, confirmed()
    )
    assert (created.text, created.data, created.handoff_reason) == (
        check.text,
        check.data,
        check.handoff_reason,
    )
    assert not ReturnRequest.objects.exists()


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_past_the_window_hands_off_without_announcing_it_twice(
    demo_orders: None, language: str
) -> None:
    with translation.override(language):
        result = actions.return_request_check({"order_number": "2026101506"}, confirmed())
    assert result is not None and result.handoff_reason == "return_window"
    assert "LM2026101506" in result.text
    # The hand-off notice the conversation sends says a person is coming; this does not.
    assert "colleague" not in result.text and "转接" not in result.text


def test_the_check_waits_for_the_order_number_and_asks_again_for_an_unknown_one(
    demo_orders: None,
) -> None:
    assert actions.return_request_check({}, confirmed()) is None
    unknown = actions.return_request_check({"order_number": "LM2026112099"}, confirmed())
    assert unknown is not None and unknown.data == {"found": False}


def test_the_check_reports_a_return_already_open(demo_orders: None) -> None:
    order = Order.objects.get(number="LM2026112002")
    request = services.return_request_create(order, reason="too small").request
    result = actions.return_request_check({"order_number": "2026112002"}, confirmed())
    assert result is not None and request.number in result.text
    assert result.data == {"created": False, "return_number": request.number}


def test_the_action_stays_registered_with_its_check() -> None:
    from apps.conversations import slot_filling

    registered = nlu_actions.get("return_request_create")
    assert registered is not None and registered.function is actions.return_request_create
    assert slot_filling._slot_checks["return_request_create"] is actions.return_request_check


def test_a_return_delivered_on_the_window_edge_is_accepted(demo_orders: None) -> None:
    order = Order.objects.get(number="LM2026111503")
    order.delivered_at = timezone.now() - timedelta(days=services.QUALITY_ISSUE_DAYS - 1)
    order.save()
    assert services.return_refusal(order) is None
    order.delivered_at = timezone.now() - timedelta(days=services.QUALITY_ISSUE_DAYS, hours=1)
    order.save()
    assert services.return_refusal(order) == "too_late"
