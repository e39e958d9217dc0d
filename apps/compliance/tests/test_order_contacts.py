"""An order's contact mobile number (`Order.contact_phone`) belongs to the data subject whose
phone number it is, whose return is for the order, or whose conversation confirmed the order in
a chat; an order placed by a store account (`Order.customer_ref`) is that app user's, account
and number: exported, emptied by an erasure (the order itself stays), and searched for again."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from apps.compliance import retention, selectors, services, stores
from apps.compliance.models import RequestStatus
from apps.compliance.tests.conftest import (
    close,
    export_files,
    pdf_layout,
    request_run,
    squash,
    start,
    table_row,
)
from apps.conversations.models import ConversationStatus
from apps.conversations.tests.conftest import english, say
from apps.orders.models import Order, ReturnRequest

LABEL = "Orders' contact mobile numbers and store accounts"


def _phones() -> dict[str, str]:
    return dict(Order.objects.values_list("number", "contact_phone"))


def _accounts() -> dict[str, str]:
    return dict(Order.objects.values_list("number", "customer_ref"))


def _item(number: str) -> str:
    return Order.objects.get(number=number).item


def _confirm(conversation: Any, number: str) -> None:
    """The customer asks about an order and confirms it with its number's last 4 digits."""
    say(conversation, f"我的订单 {number} 到哪了")
    say(conversation, Order.objects.get(number=number).contact_phone[-4:])
    assert number in conversation.state["confirmed_orders"]


def test_a_phone_request_exports_and_erases_that_numbers_orders_only(
    chat_kb: Any, officers: tuple[Any, Any], compliance_storage: Path, run_on_commit: Any
) -> None:
    # The demo order LM2026112002 is delivered to 13800008002; staff typed the same number
    # with a country code and separators on another order. A third order's number ends in the
    # same 4 digits but is someone else's.
    Order.objects.filter(number="LM2026111503").update(contact_phone="+86 138-0000-8002")
    Order.objects.filter(number="LM2026111804").update(contact_phone="139 0000 8002")
    before = _phones()

    access = request_run(officers, run_on_commit, "access", "phone", "138 0000 8002")
    assert access.status == RequestStatus.COMPLETED, (access.error, access.error_detail)
    assert access.results["order_contacts"]["found"] == 2
    exported, text = export_files(access, officers[1], compliance_storage)
    assert exported["order_contacts"] == [
        {
            "number": "LM2026111503",
            "item": _item("LM2026111503"),
            "contact_phone": "+86 138-0000-8002",
            "customer_ref": "",  # demo-user-1's: not the phone's owner's to see
        },
        {
            "number": "LM2026112002",
            "item": _item("LM2026112002"),
            "contact_phone": "13800008002",
            "customer_ref": "",
        },
    ]
    section = text[text.index(squash(LABEL)) : text.index(squash("Answer cache questions"))]
    assert "LM2026112002" in section and "13800008002" in section
    assert squash("+86 138-0000-8002") in section and "LM2026111804" not in section
    assert squash(_item("LM2026112002")) in section

    erasure = request_run(officers, run_on_commit, "erasure", "phone", "13800008002")
    assert erasure.status == RequestStatus.COMPLETED, (erasure.error, erasure.error_detail)
    results = erasure.results["order_contacts"]
    assert (results["found"], results["removed"]) == (2, 2)
    assert erasure.verification["ok"] is True
    assert erasure.verification["stores"]["order_contacts"]["found"] == 0
    # The two orders stay, without the number; every other order keeps its own. The store
    # accounts stay: the phone's owner placed neither order.
    after = _phones()
    assert after == {**before, "LM2026111503": "", "LM2026112002": ""}
    assert "" not in _accounts().values()
    assert after["LM2026111804"] == "139 0000 8002"

    layout = pdf_layout(compliance_storage / "files" / erasure.report_file)
    assert table_row(layout, "Found and removed, per store", "Orders' contact") == (2, 2)
    verification = layout[layout.index("Verification: every store searched") :]
    # The label, its Chinese, then the count found again.
    assert re.search(rf"^\s*{LABEL}\s[^\n]*?\s0\s+Nothing found", verification, re.MULTILINE)
    assert squash("2 orders kept (the store's records) with their contact mobile number") in (
        squash(layout)
    )


@pytest.mark.slow
def test_an_app_users_request_covers_the_orders_their_conversations_confirmed(
    chat_kb: Any, officers: tuple[Any, Any], compliance_storage: Path, run_on_commit: Any
) -> None:
    # An old conversation, in cold storage now, confirmed LM2026112002; the current one
    # confirmed LM2026112001, and a return for LM2026101506 was opened in it for the customer.
    old = start(chat_kb, external_id="app-user-31")
    _confirm(old, "LM2026112002")
    close(old, days_ago=200)
    assert retention.conversations_archive().conversations == 1
    conv = start(chat_kb, external_id="app-user-31")
    _confirm(conv, "LM2026112001")
    ReturnRequest.objects.create(
        number="RT261120000031",
        order=Order.objects.get(number="LM2026101506"),
        reason="鞋码偏小",
        conversation=conv,
    )
    # Someone else confirmed another order: theirs.
    other = start(chat_kb, external_id="app-user-32")
    _confirm(other, "LM2026111503")
    before = _phones()

    access = request_run(officers, run_on_commit, "access", "channel_id", "app-user-31")
    assert access.status == RequestStatus.COMPLETED, (access.error, access.error_detail)
    exported, text = export_files(access, officers[1], compliance_storage)
    # Only the last 4 digits: confirming an order shows the customer knew those, not that the
    # number is theirs.
    assert [(o["number"], o["contact_phone"]) for o in exported["order_contacts"]] == [
        ("LM2026101506", "*******8006"),
        ("LM2026112001", "*******8001"),
        ("LM2026112002", "*******8002"),
    ]
    section = text[text.index(squash(LABEL)) : text.index(squash("Answer cache questions"))]
    assert all(phone in section for phone in ("*******8006", "*******8001", "*******8002"))
    assert "13800008" not in text

    erasure = request_run(officers, run_on_commit, "erasure", "channel_id", "app-user-31")
    assert erasure.status == RequestStatus.COMPLETED, (erasure.error, erasure.error_detail)
    results = erasure.results["order_contacts"]
    assert (results["found"], results["removed"]) == (3, 3)
    assert erasure.verification["ok"] is True
    assert erasure.verification["stores"]["order_contacts"]["found"] == 0
    emptied = {"LM2026101506": "", "LM2026112001": "", "LM2026112002": ""}
    assert _phones() == {**before, **emptied}
    assert Order.objects.filter(number__in=emptied).count() == 3

    # Such an order can no longer be confirmed in a chat: a person takes it.
    someone = english(chat_kb)
    say(someone, "where is my order LM2026112001")
    assert someone.status == ConversationStatus.WAITING_AGENT
    assert someone.handoff_reason == "order_unconfirmed"


def test_a_contact_number_left_behind_fails_the_verification(
    chat_kb: Any, officers: tuple[Any, Any], run_on_commit: Any, monkeypatch: Any
) -> None:
    conv = start(chat_kb, external_id="app-user-33")
    _confirm(conv, "LM2026112001")

    monkeypatch.setattr(stores.OrderContactsStore, "erase", lambda self, subject: 0)
    erasure = request_run(officers, run_on_commit, "erasure", "channel_id", "app-user-33")
    assert erasure.status == RequestStatus.FAILED
    # The conversation (and its state) is gone: the order was found through the subject.
    assert erasure.verification["stores"]["order_contacts"]["found"] == 1
    assert str(stores.OrderContactsStore.label) in erasure.error

    monkeypatch.undo()
    run_on_commit(services.data_subject_request_queue, erasure, officers[1])
    erasure.refresh_from_db()
    assert erasure.status == RequestStatus.COMPLETED, erasure.error
    assert Order.objects.get(number="LM2026112001").contact_phone == ""


# The demo store accounts: demo-user-1 placed the odd-numbered demo orders, demo-user-2 the rest.
USER_1_ORDERS = ["LM2026111007", "LM2026111503", "LM2026112001", "LM2026112205"]


def test_an_app_users_request_covers_the_orders_their_store_account_placed(
    chat_kb: Any, officers: tuple[Any, Any], compliance_storage: Path, run_on_commit: Any
) -> None:
    # The app opened a conversation for its user demo-user-1; nothing was asked about orders.
    customer = start(chat_kb, external_id="demo-user-1").customer
    before_phones, before_accounts = _phones(), _accounts()
    assert sorted(n for n, ref in before_accounts.items() if ref == "demo-user-1") == USER_1_ORDERS

    # Found by the customer's public id: only the stored pseudonym of the account is known.
    public_id = str(customer.public_id)
    access = request_run(officers, run_on_commit, "access", "pseudonym", public_id)
    assert access.status == RequestStatus.COMPLETED, (access.error, access.error_detail)
    exported, text = export_files(access, officers[1], compliance_storage)
    assert [
        (o["number"], o["customer_ref"], o["contact_phone"]) for o in exported["order_contacts"]
    ] == [(n, "demo-user-1", "*******80" + n[-2:]) for n in USER_1_ORDERS]
    # The PDF gives the account beside each order too.
    assert text.count("demo-user-1") == len(USER_1_ORDERS)

    erasure = request_run(officers, run_on_commit, "erasure", "pseudonym", public_id)
    assert erasure.status == RequestStatus.COMPLETED, (erasure.error, erasure.error_detail)
    results = erasure.results["order_contacts"]
    assert (results["found"], results["removed"]) == (4, 4)
    assert erasure.verification["ok"] is True
    assert erasure.verification["stores"]["order_contacts"]["found"] == 0
    emptied = dict.fromkeys(USER_1_ORDERS, "")
    assert _accounts() == {**before_accounts, **emptied}
    assert _phones() == {**before_phones, **emptied}
    layout = pdf_layout(compliance_storage / "files" / erasure.report_file)
    assert squash("4 orders kept with the subject's store account emptied") in squash(layout)


@pytest.mark.parametrize(
    ("identifier_kind", "channel", "found"),
    [
        # The account asked about by its id, for the app: its orders, though it never chatted.
        ("channel_id", "api", 3),
        ("channel_id", "", 3),
        # The same string as a WeChat openid is no store account.
        ("channel_id", "wechat", 0),
        ("wechat_customer", "", 0),
        ("app_customer", "", 3),
    ],
)
def test_only_an_app_users_id_is_a_store_account(
    chat_kb: Any, identifier_kind: str, channel: str, found: int
) -> None:
    value = "demo-user-2"
    if identifier_kind.endswith("_customer"):
        customer_channel = "wechat" if identifier_kind == "wechat_customer" else "api"
        customer = start(chat_kb, external_id="demo-user-2", channel=customer_channel).customer
        identifier_kind, value = "pseudonym", str(customer.public_id)
    subject = selectors.subject_resolve(identifier_kind, value, channel=channel)
    result = stores.OrderContactsStore().find(subject)
    assert (result.count, result.details["accounts"]) == (found, found)


def test_a_store_account_left_behind_fails_the_verification(
    chat_kb: Any, officers: tuple[Any, Any], run_on_commit: Any, monkeypatch: Any
) -> None:
    public_id = str(start(chat_kb, external_id="demo-user-1").customer.public_id)
    monkeypatch.setattr(stores.OrderContactsStore, "erase", lambda self, subject: 0)
    erasure = request_run(officers, run_on_commit, "erasure", "pseudonym", public_id)
    assert erasure.status == RequestStatus.FAILED
    # The customer is gone, and with it its channel: the account is still found, by the
    # pseudonym the request recorded.
    assert erasure.verification["stores"]["order_contacts"]["found"] == 4

    monkeypatch.undo()
    run_on_commit(services.data_subject_request_queue, erasure, officers[1])
    erasure.refresh_from_db()
    assert erasure.status == RequestStatus.COMPLETED, erasure.error
    assert Order.objects.filter(customer_ref="demo-user-1").count() == 0
    assert Order.objects.filter(customer_ref="demo-user-2").count() == 3
