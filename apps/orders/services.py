"""Writes on demo orders and returns; the bot's actions and the admin both come through here."""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.conversations.models import Channel, Conversation
from apps.orders.models import (
    ContactCheckFailure,
    Order,
    OrderStatus,
    ReturnRequest,
    ReturnStatus,
)
from apps.safety.pseudonyms import pseudonym_candidates

# Returns within this many days of delivery need no reason check (the help centre's "7-day
# no-reason returns"); later ones, up to the quality-issue window, go to a person for review.
NO_REASON_DAYS = 7
QUALITY_ISSUE_DAYS = 30


# A chat shows an order only to someone who gives the last digits of its contact mobile number.
# Wrong digits for one order are counted over the last hour, whoever types them (a new
# conversation starts the count afresh, the order does not): at the limit the order cannot be
# confirmed in a chat until the oldest of those tries is an hour old, and a security event is
# recorded. Ten thousand possible endings, five tries an hour. Each wrong try is a
# `ContactCheckFailure` row in the database, not a cache entry: a restart or a second server
# process (the embedded mode's cache is each process's own memory) must not hand out fresh tries.
CONTACT_DIGITS = 4
CONTACT_MAX_FAILURES = 5
CONTACT_LOCK_SECONDS = 3600


class ReturnRefused(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code  # "not_delivered" | "too_late" | "cancelled"


@dataclass
class ReturnOutcome:
    request: ReturnRequest
    created: bool


def order_find(number: str) -> Order | None:
    """The order numbered `number`, whatever its case. Customers often leave out the letters
    ("订单号：2026112001" for LM2026112001): digits alone find the order whose number is two
    letters and those digits, when exactly one order has them."""
    number = re.sub(r"[\s-]+", "", number)
    if not number:
        return None
    if number.isdigit():
        matches = list(Order.objects.filter(number__iregex=rf"^[a-z]{{2}}{number}$")[:2])
        return matches[0] if len(matches) == 1 else None
    return Order.objects.filter(number__iexact=number).first()


# Where a conversation's dialogue state keeps the numbers of the orders it confirmed (the
# actions write it; data-subject requests read it), and how many it keeps.
CONFIRMED_ORDERS_KEY = "confirmed_orders"
CONFIRMED_KEPT = 10


def confirmed_orders(state: Any) -> list[str]:
    """The order numbers a conversation's dialogue state says it confirmed, oldest first."""
    numbers = state.get(CONFIRMED_ORDERS_KEY) if isinstance(state, dict) else None
    if not isinstance(numbers, list):
        return []
    return [number for number in numbers if isinstance(number, str) and number]


def contact_tail(phone: str) -> str:
    """The last `CONTACT_DIGITS` digits of a phone number as typed ("+86 138-0013-8001"), or ""
    when it has fewer digits."""
    digits = re.sub(r"\D", "", phone)
    return digits[-CONTACT_DIGITS:] if len(digits) >= CONTACT_DIGITS else ""


def _window_start() -> datetime:
    """Wrong tries made after this moment count towards the limit."""
    return timezone.now() - timedelta(seconds=CONTACT_LOCK_SECONDS)


def contact_locked(order: Order) -> bool:
    """Whether too many wrong tries in the last hour keep `order` from being confirmed."""
    recent = ContactCheckFailure.objects.filter(order_id=order.pk, created_at__gt=_window_start())
    return recent.count() >= CONTACT_MAX_FAILURES


def contact_confirm(order: Order, digits: str, *, conversation_id: int | None = None) -> str:
    """Whether `digits` are the last digits of the order's contact mobile number: "ok",
    "wrong", "locked" (too many wrong tries for this order in the last hour; the try that
    reaches the limit records a security event) or "no_contact" (the order has none)."""
    if contact_locked(order):
        return "locked"
    expected = contact_tail(order.contact_phone)
    if not expected:
        return "no_contact"
    if hmac.compare_digest(expected, contact_tail(digits) or "-"):
        return "ok"
    with transaction.atomic():
        # Wrong tries for one order are counted and recorded one at a time, so that of two
        # coming together only one can reach the limit (and record the event), and none
        # goes past it.
        Order.objects.select_for_update().only("pk").get(pk=order.pk)
        failures = ContactCheckFailure.objects.filter(order_id=order.pk)
        # Tries from before the hour no longer count: dropped here, so the table stays small
        # and what is left is the count.
        failures.filter(created_at__lte=_window_start()).delete()
        count = failures.count()
        if count >= CONTACT_MAX_FAILURES:  # another try reached the limit meanwhile
            return "locked"
        ContactCheckFailure.objects.create(order_id=order.pk, conversation_id=conversation_id)
        count += 1
    if count < CONTACT_MAX_FAILURES:
        return "wrong"
    audit_record(
        AuditEvent.Kind.SECURITY,
        detail={
            "reason": "order_contact_locked",
            "order_id": order.pk,
            "conversation_id": conversation_id,
            "failures": count,
        },
    )
    return "locked"


def order_owner_confirmed(order: Order, conversation_id: int) -> bool:
    """Whether the conversation's customer is the store account `order` names
    (`Order.customer_ref`), as an app vouched for: a conversation of the conversation API opened
    with an API key that is still active (`Conversation.api_key`), whose customer's external id,
    the app's own user id for them, is the order's account. Kept only as a keyed pseudonym, it
    is compared with the account's pseudonyms under every configured key.

    Without a key anyone may open an API conversation with any external id, so the id proves
    nothing. Other channels never count: a web widget's customer has no identity, and a WeChat
    openid is not a store account."""
    if not order.customer_ref:
        return False
    conversation = (
        Conversation.objects.filter(
            pk=conversation_id, channel=Channel.API, customer__channel=Channel.API
        )
        .select_related("api_key", "customer")
        .first()
    )
    if conversation is None or conversation.api_key is None or not conversation.api_key.active:
        return False
    external_id = conversation.customer.external_id
    return bool(external_id) and any(
        hmac.compare_digest(external_id, candidate)
        for candidate in pseudonym_candidates(order.customer_ref)
    )


def return_open(order: Order) -> ReturnRequest | None:
    """The return already open for `order` (any but a rejected one), if there is one."""
    return order.returns.exclude(status=ReturnStatus.REJECTED).first()


def return_refusal(order: Order) -> str | None:
    """Why `order` cannot be returned ("cancelled", "not_delivered", "too_late"), or None when
    it can: the return rules, which both the return form's early check and
    `return_request_create` apply."""
    if order.status == OrderStatus.CANCELLED:
        return "cancelled"
    if order.status != OrderStatus.DELIVERED or order.delivered_at is None:
        return "not_delivered"
    if timezone.now() - order.delivered_at > timedelta(days=QUALITY_ISSUE_DAYS):
        return "too_late"
    return None


def _return_number() -> str:
    return "RT" + timezone.localtime().strftime("%y%m%d") + f"{secrets.randbelow(10**6):06d}"


def return_request_create(
    order: Order, *, reason: str, photo_url: str = "", conversation_id: int | None = None
) -> ReturnOutcome:
    """Open a return for a delivered order. An open return for the same order is returned as it
    is (asking twice does not make two returns)."""
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order.pk)
        existing = return_open(order)
        if existing is not None:
            return ReturnOutcome(existing, created=False)
        refusal = return_refusal(order)
        if refusal is not None or order.delivered_at is None:
            raise ReturnRefused(refusal or "not_delivered")
        age = timezone.now() - order.delivered_at
        status = (
            ReturnStatus.REQUESTED
            if age <= timedelta(days=NO_REASON_DAYS)
            else ReturnStatus.NEEDS_REVIEW
        )
        request = ReturnRequest.objects.create(
            number=_return_number(),
            order=order,
            reason=reason.strip()[:2000],
            photo_url=photo_url,
            status=status,
            conversation_id=conversation_id,
        )
    return ReturnOutcome(request, created=True)


# number, item, total, status, days since placed, days since shipped, days since delivered
DEMO_ORDERS = [
    ("LM2026112001", "Lumen wireless earbuds / 流明无线耳机", "399.00", "shipped", 3, 2, None),
    ("LM2026112002", "Down jacket, size L / 羽绒服 L 码", "899.00", "delivered", 6, 5, 3),
    ("LM2026111503", "Ceramic tea set / 陶瓷茶具套装", "268.00", "delivered", 25, 24, 20),
    ("LM2026111804", "Robot vacuum / 扫地机器人", "1999.00", "awaiting_shipment", 1, None, None),
    ("LM2026112205", "Phone case / 手机壳", "49.90", "awaiting_payment", 0, None, None),
    ("LM2026101506", "Running shoes 42 / 跑步鞋 42 码", "529.00", "delivered", 45, 44, 40),
    ("LM2026111007", "Desk lamp / 台灯", "159.00", "cancelled", 12, None, None),
]
# The demo orders' contact numbers (fictional): each ends in its order number's last two digits
# after "80", so LM2026112001's ends in 8001. The demo page says so.
DEMO_CONTACT_PREFIX = "1380000"


def demo_contact_phone(number: str) -> str:
    return f"{DEMO_CONTACT_PREFIX}80{number[-2:]}"


def demo_customer_ref(number: str) -> str:
    """The demo store account that placed the order: "demo-user-1" the odd-numbered ones
    (LM2026112001), "demo-user-2" the even-numbered ones, so each account has orders of its
    own and the other's to be refused."""
    return "demo-user-1" if int(number[-1]) % 2 else "demo-user-2"


def demo_orders_load() -> int:
    """Create the demo orders that are missing (dates relative to now). Safe to run twice; an
    existing order is left as it is, so a contact number or store account a data-subject
    erasure emptied stays empty (demo orders made before orders had them got theirs once, in
    migration orders 0005)."""
    now = timezone.now()
    created = 0
    for number, item, total, status, placed, shipped, delivered in DEMO_ORDERS:
        if Order.objects.filter(number=number).exists():
            continue
        Order.objects.create(
            number=number,
            item=item,
            total=Decimal(total),
            status=status,
            carrier="SF Express / 顺丰速运" if shipped is not None else "",
            tracking_number=f"SF{number[2:]}88" if shipped is not None else "",
            placed_at=now - timedelta(days=placed, hours=2),
            shipped_at=now - timedelta(days=shipped) if shipped is not None else None,
            delivered_at=now - timedelta(days=delivered) if delivered is not None else None,
            estimated_delivery=(now + timedelta(days=1)).date() if status == "shipped" else None,
            contact_phone=demo_contact_phone(number),
            customer_ref=demo_customer_ref(number),
        )
        created += 1
    return created
