"""Confirming an order before a chat shows it: the last digits of its contact mobile number,
and the per-order limit on wrong tries."""

from __future__ import annotations

import importlib
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.core.cache import cache
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from apps.audit import keys
from apps.audit.models import ApiKey, AuditEvent
from apps.conversations import services as conversation_services
from apps.conversations.models import Channel, Conversation
from apps.knowledge import services as knowledge_services
from apps.knowledge.models import KnowledgeBase
from apps.nlu.actions import ActionContext
from apps.orders import actions, services
from apps.orders.models import ContactCheckFailure, Order

DEMO_CONTACTS_MIGRATION = importlib.import_module(
    "apps.orders.migrations.0005_demo_orders_contacts"
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def order(db: Any) -> Order:
    services.demo_orders_load()
    return Order.objects.get(number="LM2026112001")


@pytest.fixture
def conversation(db: Any) -> Conversation:
    """A conversation for the wrong tries to name (the failures point at it)."""
    kb = knowledge_services.knowledge_base_create(name="Orders", languages=["en"])
    return conversation_services.conversation_start(knowledge_base=kb, locale="en")


def lock_events() -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(
            kind=AuditEvent.Kind.SECURITY, detail__reason="order_contact_locked"
        )
    )


@pytest.mark.parametrize(
    ("phone", "tail"),
    [("13800008001", "8001"), ("+86 138-0000-8001", "8001"), ("8001", "8001"), ("801", "")],
)
def test_the_last_digits_of_a_number_as_typed(phone: str, tail: str) -> None:
    assert services.contact_tail(phone) == tail


def test_demo_orders_made_before_contacts_get_them_once_and_an_erasure_stays(db: Any) -> None:
    services.demo_orders_load()
    made = dict(Order.objects.values_list("number", "contact_phone"))
    refs = dict(Order.objects.values_list("number", "customer_ref"))
    assert (
        set(made)
        == {o[0] for o in services.DEMO_ORDERS}
        == set(DEMO_CONTACTS_MIGRATION.DEMO_NUMBERS)
    )
    # As the demo orders were before orders had contact numbers and store accounts: the
    # migration gives each the values the demo makes today.
    Order.objects.update(contact_phone="", customer_ref="")
    DEMO_CONTACTS_MIGRATION.demo_contacts_fill(django_apps, None)
    assert dict(Order.objects.values_list("number", "contact_phone")) == made
    assert dict(Order.objects.values_list("number", "customer_ref")) == refs
    assert services.contact_tail(made["LM2026112002"]) == "8002"
    assert refs["LM2026112001"] == "demo-user-1" and refs["LM2026112002"] == "demo-user-2"
    # What an erasure emptied stays empty when the demo is loaded again (at every `make run`).
    Order.objects.filter(number="LM2026112002").update(contact_phone="", customer_ref="")
    services.demo_orders_load()
    assert Order.objects.filter(number="LM2026112002", contact_phone="", customer_ref="").exists()


def test_right_and_wrong_digits(order: Order) -> None:
    assert services.contact_confirm(order, "8001") == "ok"
    assert services.contact_confirm(order, "+86 138 0000 8001") == "ok"
    assert services.contact_confirm(order, "8002") == "wrong"
    assert services.contact_confirm(order, "") == "wrong"


def test_an_order_without_a_number_cannot_be_confirmed(order: Order) -> None:
    order.contact_phone = ""
    order.save()
    assert services.contact_confirm(order, "8001") == "no_contact"


def test_too_many_wrong_tries_lock_the_order_and_are_recorded(
    order: Order, conversation: Conversation
) -> None:
    for _ in range(services.CONTACT_MAX_FAILURES - 1):
        assert services.contact_confirm(order, "0000", conversation_id=conversation.pk) == "wrong"
    assert not AuditEvent.objects.filter(kind=AuditEvent.Kind.SECURITY).exists()
    assert services.contact_confirm(order, "0000", conversation_id=conversation.pk) == "locked"
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
        "conversation_id": conversation.pk,
        "failures": services.CONTACT_MAX_FAILURES,
    }
    # Another order is not locked.
    other = Order.objects.get(number="LM2026112002")
    assert services.contact_confirm(other, "8002") == "ok"
    # Each wrong try is kept, with the conversation it came from.
    failures = ContactCheckFailure.objects.filter(order=order)
    assert failures.count() == services.CONTACT_MAX_FAILURES
    assert set(failures.values_list("conversation_id", flat=True)) == {conversation.pk}


def test_the_lock_survives_a_cleared_cache(order: Order) -> None:
    # The embedded mode's cache is each process's memory: a restart, or another server
    # process, sees it empty. The wrong tries must still count.
    for _ in range(services.CONTACT_MAX_FAILURES - 1):
        assert services.contact_confirm(order, "0000") == "wrong"
        cache.clear()
    assert services.contact_confirm(order, "0000") == "locked"
    cache.clear()
    assert services.contact_locked(order)
    assert services.contact_confirm(order, "8001") == "locked"


def test_wrong_tries_older_than_the_hour_do_not_count(order: Order) -> None:
    for _ in range(services.CONTACT_MAX_FAILURES):
        services.contact_confirm(order, "0000")
    assert services.contact_locked(order)
    window = timedelta(seconds=services.CONTACT_LOCK_SECONDS)
    # All but one of them an hour old (and a second): no longer locked, and one try is left
    # before the limit is reached again.
    failures = ContactCheckFailure.objects.filter(order=order)
    old = list(failures.values_list("pk", flat=True)[: services.CONTACT_MAX_FAILURES - 1])
    ContactCheckFailure.objects.filter(pk__in=old).update(
        created_at=timezone.now() - window - timedelta(seconds=1)
    )
    assert not services.contact_locked(order)
    assert services.contact_confirm(order, "8001") == "ok"
    for _ in range(services.CONTACT_MAX_FAILURES - 2):
        assert services.contact_confirm(order, "0000") == "wrong"
    # The old rows went when the next wrong try was recorded.
    assert not failures.filter(pk__in=old).exists()
    assert failures.count() == services.CONTACT_MAX_FAILURES - 1
    assert services.contact_confirm(order, "0000") == "locked"
    # Reaching the limit again is a new event.
    assert len(lock_events()) == 2


def test_the_lock_is_recorded_once(order: Order) -> None:
    for _ in range(services.CONTACT_MAX_FAILURES + 3):
        services.contact_confirm(order, "0000")
    services.contact_confirm(order, "8001")
    [event] = lock_events()
    assert event.detail["failures"] == services.CONTACT_MAX_FAILURES
    # Tries while locked are not counted.
    assert ContactCheckFailure.objects.filter(order=order).count() == (
        services.CONTACT_MAX_FAILURES
    )


def test_wrong_tries_at_once_reach_the_limit_once(transactional_db: Any) -> None:
    services.demo_orders_load()
    order = Order.objects.get(number="LM2026112001")
    for _ in range(services.CONTACT_MAX_FAILURES - 2):
        services.contact_confirm(order, "0000")

    def wrong_try(_: int) -> str:
        try:
            return services.contact_confirm(order, "0000")
        finally:
            connection.close()  # each thread has a connection of its own

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(wrong_try, range(6)))
    assert outcomes.count("wrong") == 1
    assert outcomes.count("locked") == 5
    assert ContactCheckFailure.objects.filter(order=order).count() == (
        services.CONTACT_MAX_FAILURES
    )
    assert len(lock_events()) == 1


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


def test_the_wrong_tries_are_shown_read_only_in_the_admin(
    order: Order, conversation: Conversation, admin_client: Any, django_assert_max_num_queries: Any
) -> None:
    for _ in range(3):
        services.contact_confirm(order, "0000", conversation_id=conversation.pk)
    with django_assert_max_num_queries(10):
        page = admin_client.get(reverse("admin:orders_contactcheckfailure_changelist"))
    assert page.status_code == 200 and order.number in page.content.decode()
    assert admin_client.get(reverse("admin:orders_contactcheckfailure_add")).status_code == 403
    failure = ContactCheckFailure.objects.filter(order=order).first()
    assert failure is not None
    url = reverse("admin:orders_contactcheckfailure_change", args=[failure.pk])
    assert admin_client.post(url, {"order": order.pk}).status_code == 403


# --- The order's own store account, as an app vouched for ------------------------------------


def app_conversation(external_id: str, key: ApiKey | None, channel: str = Channel.API) -> int:
    """A conversation an app opened for its user `external_id`, with `key` (or none)."""
    kb = KnowledgeBase.objects.first() or knowledge_services.knowledge_base_create(
        name="App", languages=["en"]
    )
    return conversation_services.conversation_start(
        knowledge_base=kb, channel=channel, locale="en", external_id=external_id, api_key=key
    ).pk


def test_the_app_user_the_order_names_is_its_owner(order: Order, app_key: ApiKey) -> None:
    assert services.order_owner_confirmed(order, app_conversation("demo-user-1", app_key))
    # The id as the app spells it: pseudonyms are made of its normalised form.
    assert services.order_owner_confirmed(order, app_conversation(" Demo-User-1", app_key))
    assert not services.order_owner_confirmed(order, app_conversation("demo-user-2", app_key))
    # The same id from a channel that does not vouch for a store account.
    for channel in (Channel.WECHAT, Channel.WEB):
        opened = app_conversation("demo-user-1", app_key, channel)
        assert not services.order_owner_confirmed(order, opened)
    assert not services.order_owner_confirmed(order, 0)
    order.customer_ref = ""
    assert not services.order_owner_confirmed(order, app_conversation("demo-user-1", app_key))


def test_only_a_conversation_opened_with_an_active_key_vouches(
    order: Order, app_key: ApiKey
) -> None:
    # Anyone may open an API conversation with any external id and no key (unless
    # CHAT_API_REQUIRES_KEY is on).
    assert not services.order_owner_confirmed(order, app_conversation("demo-user-1", None))
    vouched = app_conversation("demo-user-1", app_key)
    assert services.order_owner_confirmed(order, vouched)
    # A key that expired or was revoked since vouches no more, for its old conversations too.
    ApiKey.objects.filter(pk=app_key.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert not services.order_owner_confirmed(order, vouched)
    ApiKey.objects.filter(pk=app_key.pk).update(expires_at=None)
    assert services.order_owner_confirmed(order, vouched)
    keys.api_key_revoke(app_key)
    assert not services.order_owner_confirmed(order, vouched)


def test_the_owner_is_recognised_under_an_earlier_key(
    order: Order, app_key: ApiKey, settings: Any
) -> None:
    old_key = settings.PSEUDONYM_KEY
    customer = app_conversation("demo-user-1", app_key)  # its external id made with the old key
    settings.PSEUDONYM_KEY = f"a-newer-key-for-the-test,{old_key}"
    assert services.order_owner_confirmed(order, customer)
    settings.PSEUDONYM_KEY = "a-newer-key-for-the-test"
    assert not services.order_owner_confirmed(order, customer)


def test_the_owner_sees_the_order_without_digits_and_it_is_remembered(
    order: Order, app_key: ApiKey
) -> None:
    opened = app_conversation("demo-user-1", app_key)
    context = ActionContext(conversation_id=opened, customer_id=0, language="en")
    shown = actions.order_status_lookup({"order_number": order.number}, context)
    assert order.tracking_number in shown.text and "ask" not in shown.data
    assert context.state["confirmed_orders"] == [order.number]
    # Another account's order is asked for as before, and not remembered.
    other = actions.order_status_lookup({"order_number": "LM2026112002"}, context)
    assert other.data == {"ask": actions.CONTACT_SLOT}
    assert context.state["confirmed_orders"] == [order.number]
    # The return form's check too: the owner's delivered order goes on to the reason.
    assert actions.return_request_check({"order_number": "LM2026111503"}, context) is None
    assert context.state["confirmed_orders"] == [order.number, "LM2026111503"]


def test_the_owner_sees_an_order_locked_by_guessers(order: Order, app_key: ApiKey) -> None:
    for _ in range(services.CONTACT_MAX_FAILURES):
        services.contact_confirm(order, "0000")
    assert services.contact_locked(order)
    stranger = ActionContext(
        conversation_id=app_conversation("demo-user-2", app_key), customer_id=0, language="en"
    )
    refused = actions.order_status_lookup({"order_number": order.number}, stranger)
    assert refused.handoff_reason == "order_unconfirmed"
    owner = ActionContext(
        conversation_id=app_conversation("demo-user-1", app_key), customer_id=0, language="en"
    )
    shown = actions.order_status_lookup({"order_number": order.number}, owner)
    assert order.tracking_number in shown.text and not shown.handoff_reason
    # Nothing the owner did counted as a try.
    assert ContactCheckFailure.objects.filter(order=order).count() == (
        services.CONTACT_MAX_FAILURES
    )


def test_the_store_account_is_on_the_order_form_and_searchable(
    order: Order, admin_client: Any
) -> None:
    page = admin_client.get(reverse("admin:orders_order_change", args=[order.pk]))
    assert page.status_code == 200 and 'name="customer_ref"' in page.content.decode()
    found = admin_client.get(reverse("admin:orders_order_changelist"), {"q": "demo-user-2"})
    html = found.content.decode()
    assert "LM2026112002" in html and "LM2026112001" not in html
