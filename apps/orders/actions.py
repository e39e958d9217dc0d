"""The form actions of the demo store: order status lookup and return request creation, and
the return form's early check (an order that cannot be returned is refused as soon as its
number is known).

An order's details are given only to a conversation that confirmed the last digits of its
contact mobile number (`_confirmation`): a number alone, which anyone can guess or read over
someone's shoulder, shows no more than whether the order exists. A conversation an app opened
for the order's own store account (`services.order_owner_confirmed`) confirms it without the
digits. A confirmed order stays confirmed for the rest of the conversation, so a return after a
status lookup is not asked again."""

from __future__ import annotations

from typing import Any

from django.utils import formats, timezone
from django.utils.translation import gettext as _

from apps.conversations import slot_filling
from apps.nlu import actions
from apps.nlu.actions import ActionContext, ActionResult
from apps.orders import services
from apps.orders.models import Order, OrderStatus, ReturnRequest, ReturnStatus


def _date(value: Any) -> str:
    if value is None:
        return "-"
    if hasattr(value, "tzinfo"):
        value = timezone.localtime(value)
    return formats.date_format(value, "SHORT_DATE_FORMAT")


def _not_found(number: str) -> ActionResult:
    return ActionResult(
        _(
            "I couldn't find an order numbered %(number)s. Please check the number in My Orders "
            "(it looks like LM2026112001)."
        )
        % {"number": number},
        data={"found": False},
    )


# The value the forms ask for to confirm an order (an action's `data["ask"]`).
CONTACT_SLOT: dict[str, Any] = {"name": "contact_digits", "entity": "phone_tail", "required": True}


def _remember(context: ActionContext, confirmed: list[str], order: Order) -> None:
    """Keep `order` among the conversation's confirmed orders (the latest ones)."""
    kept = [*confirmed, order.number][-services.CONFIRMED_KEPT :]
    context.state[services.CONFIRMED_ORDERS_KEY] = kept


def _confirmation(
    order: Order, slots: dict[str, Any], context: ActionContext
) -> ActionResult | None:
    """None when the conversation may see `order` (confirmed now or earlier); otherwise what to
    say: the last digits of its mobile number asked for (again), or, for an order with no
    number or too many wrong tries, a person to take over.

    The order's own store account, vouched for by the app that opened the conversation, needs
    no digits, even for an order locked by wrong tries: the lock is against guessers, and the
    owner has nothing to guess."""
    confirmed = services.confirmed_orders(context.state)
    if order.number in confirmed:
        return None
    if services.order_owner_confirmed(order, context.conversation_id):
        _remember(context, confirmed, order)
        return None
    values = {"number": order.number, "digits": services.CONTACT_DIGITS}
    typed = slots.get(CONTACT_SLOT["name"])
    if typed is None and order.contact_phone and not services.contact_locked(order):
        return ActionResult(
            _(
                "To keep your order details private, please tell me the last %(digits)s digits "
                "of the mobile number on order %(number)s."
            )
            % values,
            data={"ask": CONTACT_SLOT},
        )
    outcome = services.contact_confirm(
        order, str(typed or ""), conversation_id=context.conversation_id or None
    )
    if outcome == "ok":
        _remember(context, confirmed, order)
        return None
    if outcome == "wrong":
        return ActionResult(
            _(
                "Those digits don't match the mobile number on order %(number)s. Please check "
                "them and send the last %(digits)s digits again."
            )
            % values,
            data={"ask": CONTACT_SLOT, "rejected": True},
        )
    # "no_contact" or "locked": nobody can confirm the order here; a person can.
    return ActionResult(
        _("I can't confirm order %(number)s here, so a colleague will help you with it.") % values,
        data={"confirmed": False},
        handoff_reason="order_unconfirmed",
    )


def _status_text(order: Order) -> str:
    values = {
        "number": order.number,
        "item": order.item,
        "carrier": order.carrier,
        "tracking": order.tracking_number,
        "shipped": _date(order.shipped_at),
        "delivered": _date(order.delivered_at),
        "eta": _date(order.estimated_delivery),
        "placed": _date(order.placed_at),
    }
    if order.status == OrderStatus.SHIPPED:
        return (
            _(
                "Order %(number)s (%(item)s) shipped on %(shipped)s with %(carrier)s, tracking "
                "number %(tracking)s. Expected delivery: %(eta)s."
            )
            % values
        )
    if order.status == OrderStatus.DELIVERED:
        return _("Order %(number)s (%(item)s) was delivered on %(delivered)s.") % values
    if order.status == OrderStatus.AWAITING_SHIPMENT:
        return (
            _(
                "Order %(number)s (%(item)s) is paid and waiting to be shipped; most orders ship "
                "within 48 hours."
            )
            % values
        )
    if order.status == OrderStatus.AWAITING_PAYMENT:
        return (
            _(
                "Order %(number)s (%(item)s) is waiting for payment. Unpaid orders are cancelled "
                "automatically after 30 minutes."
            )
            % values
        )
    return _("Order %(number)s (%(item)s) was cancelled.") % values


@actions.register("order_status_lookup", "Look up an order's status")
def order_status_lookup(slots: dict[str, Any], context: ActionContext) -> ActionResult:
    number = str(slots.get("order_number", ""))
    order = services.order_find(number)
    if order is None:
        return _not_found(number)
    unconfirmed = _confirmation(order, slots, context)
    if unconfirmed is not None:
        return unconfirmed
    return ActionResult(_status_text(order), data={"found": True, "status": order.status})


def _refused(order: Order, code: str) -> ActionResult:
    """Why `order` cannot be returned (`services.return_refusal`), in one message. Past the
    window the conversation goes to a person, whose own notice says so: this message only
    gives the reason."""
    messages = {
        "cancelled": _("Order %(number)s was cancelled, so there is nothing to return."),
        "not_delivered": _(
            "Order %(number)s hasn't been delivered yet. You can refuse the parcel on "
            "delivery, or cancel the order while it is awaiting shipment."
        ),
        "too_late": _(
            "Order %(number)s was delivered more than 30 days ago, which is past the return window."
        ),
    }
    return ActionResult(
        messages[code] % {"number": order.number},
        data={"created": False, "refused": code},
        handoff_reason="return_window" if code == "too_late" else "",
    )


def _already_open(request: ReturnRequest, order: Order) -> ActionResult:
    return ActionResult(
        _("There is already a return %(return)s open for order %(number)s.")
        % {"return": request.number, "number": order.number},
        data={"created": False, "return_number": request.number},
    )


@slot_filling.slot_check("return_request_create")
def return_request_check(slots: dict[str, Any], context: ActionContext) -> ActionResult | None:
    """The return form's check as soon as it has the order number: an order that is unknown,
    not yet confirmed, already has a return open, or cannot be returned ends the form (or asks
    for the number or the confirmation) before the reason and the photo are asked for. The
    rules are `services`'."""
    if "order_number" not in slots:
        return None
    number = str(slots["order_number"])
    order = services.order_find(number)
    if order is None:
        return _not_found(number)
    unconfirmed = _confirmation(order, slots, context)
    if unconfirmed is not None:
        return unconfirmed
    existing = services.return_open(order)
    if existing is not None:
        return _already_open(existing, order)
    refusal = services.return_refusal(order)
    return _refused(order, refusal) if refusal is not None else None


@actions.register("return_request_create", "Create a return request")
def return_request_create(slots: dict[str, Any], context: ActionContext) -> ActionResult:
    number = str(slots.get("order_number", ""))
    order = services.order_find(number)
    if order is None:
        return _not_found(number)
    unconfirmed = _confirmation(order, slots, context)
    if unconfirmed is not None:
        return unconfirmed
    try:
        outcome = services.return_request_create(
            order,
            reason=str(slots.get("reason", "")),
            photo_url=str(slots.get("photo") or ""),
            conversation_id=context.conversation_id,
        )
    except services.ReturnRefused as refused:
        return _refused(order, refused.code)
    request = outcome.request
    if not outcome.created:
        return _already_open(request, order)
    values = {"return": request.number, "number": order.number}
    if request.status == ReturnStatus.NEEDS_REVIEW:
        text = (
            _(
                "Return %(return)s is opened for order %(number)s. It is past the 7-day no-reason "
                "window, so a colleague will review it within 1 business day."
            )
            % values
        )
    else:
        text = (
            _(
                "Return %(return)s is opened for order %(number)s. Pack the item with its "
                "accessories; a courier pick-up can be booked under My Orders > Returns."
            )
            % values
        )
    return ActionResult(
        text,
        data={"created": outcome.created, "return_number": request.number},
    )
