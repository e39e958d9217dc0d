"""The demo store's orders and returns in the admin, as support staff use them."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.knowledge.tests.test_admin import form_data
from apps.orders import services
from apps.orders.models import Order, OrderStatus, ReturnRequest

pytestmark = pytest.mark.django_db

ORDERS = "admin:orders_order_changelist"
RETURNS = "admin:orders_returnrequest_changelist"


@pytest.fixture
def demo_orders(db: Any) -> list[Order]:
    assert services.demo_orders_load() == len(services.DEMO_ORDERS)
    return list(Order.objects.all())


def delivered_orders_with_returns(n: int, start: int = 0) -> list[ReturnRequest]:
    now = timezone.now()
    returns = []
    for i in range(start, start + n):
        order = Order.objects.create(
            number=f"LM-TEST-{i:04d}",
            item=f"Test item {i}",
            total=Decimal("10.00"),
            status=OrderStatus.DELIVERED,
            placed_at=now - timedelta(days=4),
            shipped_at=now - timedelta(days=3),
            delivered_at=now - timedelta(days=1),
        )
        outcome = services.return_request_create(order, reason=f"Wrong size {i}")
        assert outcome.created
        returns.append(outcome.request)
    return returns


def test_order_list_shows_the_demo_orders_in_queries_independent_of_row_count(
    staff, demo_orders, django_assert_max_num_queries
):
    with django_assert_max_num_queries(50) as few:
        response = staff.get(reverse(ORDERS))
    assert response.status_code == 200
    html = response.content.decode()
    for order in demo_orders:
        assert order.number in html
    assert "Awaiting shipment" in html and "Delivered" in html
    assert f"{len(demo_orders)} orders" in html

    delivered_orders_with_returns(15)
    with django_assert_max_num_queries(len(few.captured_queries)):
        html = staff.get(reverse(ORDERS)).content.decode()
    assert "LM-TEST-0014" in html and f"{len(demo_orders) + 15} orders" in html


def test_return_list_shows_returns_and_their_orders_in_queries_independent_of_row_count(
    staff, demo_orders, django_assert_max_num_queries
):
    delivered = Order.objects.get(number="LM2026112002")
    demo_return = services.return_request_create(delivered, reason="Too small").request
    with django_assert_max_num_queries(50) as few:
        response = staff.get(reverse(RETURNS))
    assert response.status_code == 200
    html = response.content.decode()
    assert demo_return.number in html and "LM2026112002" in html and "Requested" in html

    more = delivered_orders_with_returns(15)
    with django_assert_max_num_queries(len(few.captured_queries)):
        html = staff.get(reverse(RETURNS)).content.decode()
    assert more[-1].number in html and more[-1].order.number in html
    assert "16 return requests" in html


def test_editing_an_orders_status_in_the_admin_saves_it(staff, demo_orders):
    order = Order.objects.get(number="LM2026112001")
    assert order.status == OrderStatus.SHIPPED
    url = reverse("admin:orders_order_change", args=[order.pk])
    data = form_data(staff.get(url).content.decode(), "order_form")
    assert data["status"] == OrderStatus.SHIPPED
    data["status"] = OrderStatus.DELIVERED
    response = staff.post(url, {**data, "_save": "Save"})
    assert response.status_code == 302, response.context["errors"]

    saved = Order.objects.get(pk=order.pk)
    assert saved.status == OrderStatus.DELIVERED
    # The rest of the order is as it was (the form shows times to the second).
    assert (saved.number, saved.item, saved.total, saved.tracking_number) == (
        order.number,
        order.item,
        order.total,
        order.tracking_number,
    )
    assert abs(saved.placed_at - order.placed_at) < timedelta(seconds=1)
    # Marked delivered here, it gets a delivery time, so the customer can now ask to return it.
    assert order.delivered_at is None and saved.delivered_at is not None
    assert services.return_request_create(saved, reason="Too small").created
    listing = staff.get(reverse(ORDERS), {"status__exact": OrderStatus.DELIVERED})
    assert "LM2026112001" in listing.content.decode()
