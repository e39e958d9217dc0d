"""Erasure across every store, with a real Redis (answer cache, Channels groups, Celery results),
the real engine filling the caches and forms, cold storage, and the PDF report checked with
pdftotext."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.files.storage import FileSystemStorage
from django.core.management import call_command
from django.utils import translation

from apps.agents.models import ConversationEvent, EventKind
from apps.audit.models import AuditEvent
from apps.compliance import retention, services
from apps.compliance.models import DataSubjectRequest, RequestStatus
from apps.compliance.tests.conftest import (
    close,
    old_conversation,
    pdf_layout,
    pdf_text,
    squash,
    start,
    table_row,
)
from apps.conversations import services as conversation_services
from apps.conversations.caches import AnswerCache
from apps.conversations.models import Conversation, Customer, Message, Role, SemanticCacheEntry
from apps.conversations.tests.conftest import say
from apps.orders.models import ReturnRequest
from tests.support.services import free_port

EMAIL = "wang.fang@example.com"
PHONE = "13800138000"


def _redis_keys(client: redis.Redis, token: str) -> list[bytes]:
    return [k for k in client.scan_iter(count=1000) if token.encode() in k]


def _answer_keys(client: redis.Redis, kb: Any, question: str) -> list[bytes]:
    """The exact answer cache's keys for `question`, any generation, any language."""
    digest = AnswerCache(kb, "en").exact_key(question).rsplit(":", 1)[1]
    return [k for k in _redis_keys(client, "chat:answer:") if k.endswith(digest.encode())]


def _archive_bytes(folder: Path) -> bytes:
    return b"".join(gzip.decompress(p.read_bytes()) for p in sorted(folder.glob("batches/*.gz")))


@pytest.mark.slow
def test_erasure_removes_the_customer_from_every_store_and_verifies_it(
    chat_kb: Any,
    officers: tuple[Any, Any],
    redis_everywhere: redis.Redis,
    compliance_storage: Path,
    run_on_commit: Any,
) -> None:
    requester, approver = officers
    client = redis_everywhere

    # The customer's old conversation, closed long ago: it goes to cold storage, in one batch
    # with another customer's.
    old = start(chat_kb, external_id="app-user-42")
    say(old, f"我的邮箱是 {EMAIL}，帮我查一下退款")
    close(old, days_ago=200)
    bystander_old = start(chat_kb, external_id="app-user-7")
    say(bystander_old, "运费怎么算")
    close(bystander_old, days_ago=200)
    assert retention.conversations_archive().conversations == 2
    assert not Conversation.objects.filter(pk__in=[old.pk, bystander_old.pk]).exists()

    # The customer's current conversation: an answer (caches), a rating, a return form whose
    # reason carries personal data, a message with a phone number (redacted + encrypted
    # original), an agent's note, an admin edit, and a socket on the conversation (Redis).
    conv = start(chat_kb, external_id="app-user-42")
    assert conv.customer_id == Customer.objects.get(public_id=conv.customer.public_id).pk
    answer = say(conv, "How much is shipping?")[0]
    conversation_services.message_rate(conv, answer.public_id, "up")
    say(conv, "我要退货")
    say(conv, "订单号 LM2026112002")
    say(conv, "8002")  # the last digits of the order's mobile number, to confirm it
    say(conv, f"耳机有杂音，请打 {PHONE} 联系我")
    say(conv, "跳过")
    returned = ReturnRequest.objects.get(conversation=conv)
    assert PHONE in returned.reason
    phone_message = conv.messages.filter(role=Role.CUSTOMER, text__contains="耳机").get()
    assert PHONE not in phone_message.text and phone_message.original_encrypted
    ConversationEvent.objects.create(conversation=conv, kind=EventKind.CLOSED, note="VIP, 王女士")
    LogEntry.objects.create(
        user=requester,
        content_type=ContentType.objects.get_for_model(Message),
        object_id=str(phone_message.pk),
        object_repr=str(phone_message),
        action_flag=CHANGE,
    )
    async_to_sync(get_channel_layer().group_add)(f"chat.{conv.public_id}", "specific.test!1")
    client.set(f"celery-task-meta-{conv.public_id}", json.dumps({"result": str(conv.public_id)}))
    close(conv, csat=5)
    assert SemanticCacheEntry.objects.filter(question__icontains="shipping").exists()
    assert _answer_keys(client, chat_kb, "How much is shipping?")
    assert _redis_keys(client, str(conv.public_id))

    # Someone else, who must not lose anything.
    other = start(chat_kb, external_id="app-user-99")
    say(other, "退款多久能到账？")
    other_messages = list(other.messages.values_list("pk", "text"))

    # Opened by e-mail: the address appears only in the archived conversation's encrypted
    # original, which must lead to the customer and from there to everything else.
    request = services.data_subject_request_create(
        user=requester, kind="erasure", identifier_kind="email", identifier=EMAIL.upper()
    )
    assert request.subject["customers"] == [str(conv.customer.public_id)]
    assert len(request.subject["archived_conversations"]) == 1
    assert EMAIL not in json.dumps(
        DataSubjectRequest.objects.filter(pk=request.pk).values()[0], default=str
    )
    services.data_subject_request_approve(request, approver)
    run_on_commit(services.data_subject_request_queue, request, approver)

    request.refresh_from_db()
    assert request.status == RequestStatus.COMPLETED, request.error
    results = request.results
    assert (results["customers"]["found"], results["customers"]["removed"]) == (1, 1)
    assert results["conversations"]["removed"] == 1
    assert results["messages"]["removed"] == conv.last_seq
    assert results["originals"]["removed"] >= 1
    assert results["feedback"]["removed"] == 2  # the answer's rating and the conversation's
    assert results["orders"]["removed"] == 1
    assert results["agent_events"]["removed"] == 1
    assert results["admin_history"]["removed"] == 1
    assert results["semantic_cache"]["removed"] >= 1
    assert results["exact_cache"]["removed"] >= 1
    assert results["redis"]["removed"] == 1  # the conversation's Channels group
    assert results["celery_results"]["removed"] == 1
    assert results["archives"]["removed"] == 1
    assert results["audit_log"]["kept"] is True

    # Verification ran and found nothing anywhere; checked here independently too.
    assert request.verification["ok"] is True
    assert all(s["found"] == 0 for s in request.verification["stores"].values())
    assert not Customer.objects.filter(external_id=conv.customer.external_id).exists()
    assert not Conversation.objects.filter(pk=conv.pk).exists()
    assert not Message.objects.filter(pk=phone_message.pk).exists()
    returned.refresh_from_db()
    assert (returned.reason, returned.photo_url, returned.conversation_id) == ("", "", None)
    assert SemanticCacheEntry.objects.filter(question__icontains="退款多久").exists()
    assert not SemanticCacheEntry.objects.filter(question__icontains="shipping").exists()
    assert not _answer_keys(client, chat_kb, "How much is shipping?")
    assert not _redis_keys(client, str(conv.public_id))
    assert not LogEntry.objects.filter(object_id=str(phone_message.pk)).exists()
    archived = _archive_bytes(compliance_storage / "archive")
    assert str(old.public_id).encode() not in archived
    assert str(bystander_old.public_id).encode() in archived  # the batch was rewritten
    assert str(conv.customer.public_id).encode() not in archived

    # The bystander is untouched.
    assert list(other.messages.values_list("pk", "text")) == other_messages

    # The request row keeps only the pseudonym: no e-mail, no encrypted copy.
    row = json.dumps(DataSubjectRequest.objects.filter(pk=request.pk).values()[0], default=str)
    assert EMAIL not in row and PHONE not in row and request.identifier_encrypted == ""

    # The report: a PDF whose SHA-256 is in the audit log, naming the request, who asked and
    # approved (Chinese names render), the counts per store and the verification.
    report = compliance_storage / "files" / request.report_file
    digest = hashlib.sha256(report.read_bytes()).hexdigest()
    assert digest == request.report_sha256
    event = AuditEvent.objects.filter(
        kind=AuditEvent.Kind.DATA_SUBJECT_REQUEST, detail__action="erasure_completed"
    ).get()
    assert event.detail["report_sha256"] == digest
    assert event.detail["request"] == str(request.public_id)
    assert EMAIL not in json.dumps(event.detail) and event.actor == approver.username
    actions = list(
        AuditEvent.objects.filter(detail__request=str(request.public_id))
        .order_by("id")
        .values_list("detail__action", flat=True)
    )
    assert actions == ["create", "approve", "execute", "erasure_completed"]

    layout = pdf_layout(report)
    text = squash(layout)
    assert str(request.public_id) in text
    assert squash("王芳 (wangfang)") in text and squash("李雷 (lilei)") in text
    for english in ("Data erasure report", "Verification passed"):
        assert squash(english) in text
        with translation.override("zh-hans"):
            assert squash(translation.gettext(english)) in text
    per_store = "Found and removed, per store"
    assert table_row(layout, per_store, "Customers") == (1, 1)
    messages = results["messages"]
    assert table_row(layout, per_store, "Messages") == (messages["found"], messages["removed"])
    assert table_row(layout, per_store, "Cold-storage archive") == (1, 1)
    assert table_row(layout, per_store, "Semantic answer cache")[1] >= 1
    assert "Verificationfailed" not in text


def test_erasure_by_channel_id_and_a_leftover_fails_the_verification(
    chat_kb: Any, officers: tuple[Any, Any], run_on_commit: Any, monkeypatch: Any
) -> None:
    requester, approver = officers
    conv = start(chat_kb, external_id="openid-abc", channel="wechat")
    say(conv, "你好")
    request = services.data_subject_request_create(
        user=requester,
        kind="erasure",
        identifier_kind="channel_id",
        identifier="openid-abc",
        channel="wechat",
    )
    assert request.subject["customers"] == [str(conv.customer.public_id)]
    services.data_subject_request_approve(request, approver)

    # A store that pretends to erase: the verification must catch what is left.
    from apps.compliance import stores

    monkeypatch.setattr(stores.MessagesStore, "erase", lambda self, subject: 0)
    monkeypatch.setattr(stores.ConversationsStore, "erase", lambda self, subject: 0)
    monkeypatch.setattr(stores.CustomersStore, "erase", lambda self, subject: 0)
    run_on_commit(services.data_subject_request_queue, request, approver)
    request.refresh_from_db()
    assert request.status == RequestStatus.FAILED
    assert request.verification["ok"] is False
    assert request.verification["stores"]["messages"]["found"] == 2
    assert request.verification["resolved_again"] == 1
    assert request.identifier_encrypted  # kept, so that it can run again
    text = pdf_text(Path(services.stores.files_storage().path(request.report_file)))
    assert "Verificationfailed" in text

    # Run again with the real stores: now it completes.
    monkeypatch.undo()
    run_on_commit(services.data_subject_request_queue, request, approver)
    request.refresh_from_db()
    assert request.status == RequestStatus.COMPLETED and request.verification["ok"]
    assert not Customer.objects.filter(pk=conv.customer_id).exists()
    # No Redis, no Celery result backend here: the report says so rather than claiming a search.
    assert request.results["celery_results"]["details"] == {"configured": False}
    text = pdf_text(Path(services.stores.files_storage().path(request.report_file)))
    assert squash("No result backend is configured: no task results are stored.") in text
    assert squash("No Redis configured") in text and "Verificationpassed" in text


def test_cached_questions_that_held_personal_data_are_found_and_erased(
    chat_kb: Any, officers: tuple[Any, Any], run_on_commit: Any
) -> None:
    """The caches keep a question without its personal data; erasure finds those entries from
    the stored (redacted) text and the original alike."""
    requester, approver = officers
    conv = start(chat_kb, external_id="app-user-9")
    reply = say(conv, f"How long does a refund take? {PHONE}")[0]
    assert reply.decision == "answer"
    entry = SemanticCacheEntry.objects.get(question="How long does a refund take?")
    exact_key = AnswerCache(chat_kb, "en").exact_key("How long does a refund take?")
    from django.core.cache import cache

    assert cache.get(exact_key) is not None

    request = services.data_subject_request_create(
        user=requester, kind="erasure", identifier_kind="channel_id", identifier="app-user-9"
    )
    services.data_subject_request_approve(request, approver)
    run_on_commit(services.data_subject_request_queue, request, approver)
    request.refresh_from_db()
    assert request.status == RequestStatus.COMPLETED and request.verification["ok"]
    assert request.results["semantic_cache"]["removed"] == 1
    assert request.results["exact_cache"]["found"] == 1
    assert not SemanticCacheEntry.objects.filter(pk=entry.pk).exists()
    assert cache.get(exact_key) is None


def _request_actions(request: DataSubjectRequest) -> list[tuple[str, str, str]]:
    return [
        (d["action"], d.get("store", ""), d.get("step", ""))
        for d in AuditEvent.objects.filter(detail__request=str(request.public_id))
        .order_by("id")
        .values_list("detail", flat=True)
    ]


def _database_state(conv: Conversation) -> dict[str, Any]:
    """The customer's rows as a user would notice them."""
    return {
        "customer": Customer.objects.filter(pk=conv.customer_id).exists(),
        "conversation": list(
            Conversation.objects.filter(pk=conv.pk).values("status", "state", "csat")
        ),
        "messages": list(
            Message.objects.filter(conversation=conv)
            .order_by("seq")
            .values_list("pk", "text", "original_encrypted", "rating")
        ),
    }


def test_an_unreachable_redis_fails_the_erasure_readably_and_a_run_after_fixing_it_completes(
    chat_kb: Any,
    officers: tuple[Any, Any],
    redis_url: str,
    settings: Any,
    run_on_commit: Any,
) -> None:
    """Every store is searched before anything is erased: a store that cannot be searched
    stops the request with nothing changed. Fixing the store's address and running the
    request again finishes it."""
    requester, approver = officers
    conv = start(chat_kb, external_id="app-user-5")
    answer = say(conv, "运费怎么算")[0]
    conversation_services.message_rate(conv, answer.public_id, "up")
    say(conv, f"请打 {PHONE} 联系我")
    close(conv, csat=4)
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    group = f"asgi:group:chat.{conv.public_id}"  # a socket's Channels group, as channels_redis
    client.zadd(group, {"specific.test!1": 1})
    before = _database_state(conv)
    assert len(before["messages"]) == conv.last_seq and before["customer"]

    request = services.data_subject_request_create(
        user=requester, kind="erasure", identifier_kind="channel_id", identifier="app-user-5"
    )
    services.data_subject_request_approve(request, approver)
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with translation.override("zh-hans"):
        run_on_commit(services.data_subject_request_queue, request, approver)
        store_label = translation.gettext("Hot session state in Redis")

    request.refresh_from_db()
    assert request.status == RequestStatus.FAILED
    # Readable and translated: names the store in the staff's language, not the exception.
    assert store_label != "Hot session state in Redis" and store_label in request.error
    assert "Error" not in request.error and "127.0.0.1" not in request.error
    assert request.error_detail == "redis (search) redis.exceptions.ConnectionError"
    # Nothing was erased: the database, the other Redis, the request's identifier.
    assert _database_state(conv) == before
    assert client.exists(group)
    assert request.identifier_encrypted and request.results == {} and not request.report_file
    assert _request_actions(request) == [
        ("create", "", ""),
        ("approve", "", ""),
        ("execute", "", ""),
        ("failed", "redis", "search"),
    ]

    # The address fixed, the same request runs again and completes.
    settings.REDIS_URL = redis_url
    run_on_commit(services.data_subject_request_queue, request, approver)
    request.refresh_from_db()
    assert request.status == RequestStatus.COMPLETED, (request.error, request.error_detail)
    assert (request.error, request.error_detail) == ("", "")
    assert request.verification["ok"] is True
    assert request.results["redis"]["removed"] == 1 and not client.exists(group)
    assert request.results["messages"]["removed"] == len(before["messages"])
    assert not Customer.objects.filter(pk=conv.customer_id).exists()
    assert _request_actions(request)[-2:] == [("execute", "", ""), ("erasure_completed", "", "")]


class ReadOnlyStorage(FileSystemStorage):
    """A cold storage that has become read-only (a revoked write permission on the bucket)."""

    def _save(self, name: str, content: Any) -> str:
        raise PermissionError(f"{name}: the storage is read-only")

    def delete(self, name: str) -> None:
        raise PermissionError(f"{name}: the storage is read-only")


def test_a_store_failing_mid_erasure_leaves_the_database_unchanged_and_a_rerun_finishes(
    chat_kb: Any,
    officers: tuple[Any, Any],
    redis_url: str,
    settings: Any,
    compliance_storage: Path,
    run_on_commit: Any,
) -> None:
    """Stores outside the database are erased one by one before the database (one
    transaction): a failure among them keeps what was erased erased and the database as it
    was; the run after the fix erases the rest, finding nothing twice."""
    requester, approver = officers
    old = start(chat_kb, external_id="app-user-8")
    say(old, "运费怎么算")
    close(old, days_ago=200)
    assert retention.conversations_archive().conversations == 1
    conv = start(chat_kb, external_id="app-user-8")
    say(conv, "退款多久能到账？")
    settings.REDIS_URL = redis_url
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    group = f"asgi:group:chat.{conv.public_id}"
    client.zadd(group, {"specific.test!1": 1})
    before = _database_state(conv)

    request = services.data_subject_request_create(
        user=requester, kind="erasure", identifier_kind="channel_id", identifier="app-user-8"
    )
    assert request.subject["archived_conversations"] == [str(old.public_id)]
    services.data_subject_request_approve(request, approver)
    # The archive can still be read (searched) but no longer written: its erasure fails after
    # Redis (earlier in the order) was erased.
    settings.STORAGES = {
        **settings.STORAGES,
        "cold": {
            "BACKEND": f"{__name__}.ReadOnlyStorage",
            "OPTIONS": {"location": str(compliance_storage / "archive")},
        },
    }
    settings.COMPLIANCE = {**settings.COMPLIANCE, "ARCHIVE_STORAGE": "cold"}
    run_on_commit(services.data_subject_request_queue, request, approver)

    request.refresh_from_db()
    assert request.status == RequestStatus.FAILED
    assert request.error == (
        "The erasure stopped: “Cold-storage archive (conversations)” could not be erased. The "
        "stores erased before it stay erased; the customer's data in the database is "
        "unchanged. Run it again once that store is reachable: it finishes the erasure."
    )
    assert request.error_detail == "archives (erase) builtins.PermissionError"
    assert not client.exists(group)  # erased before the archive failed, and stays so
    assert _database_state(conv) == before
    archived = [r["conversation"]["public_id"] for _, r in retention.archive_records()]
    assert archived == [str(old.public_id)]  # the batch as it was, still verified
    assert _request_actions(request)[-1] == ("failed", "archives", "erase")

    # Writable again: the run finishes the erasure.
    settings.COMPLIANCE = {**settings.COMPLIANCE, "ARCHIVE_STORAGE": ""}
    run_on_commit(services.data_subject_request_queue, request, approver)
    request.refresh_from_db()
    assert request.status == RequestStatus.COMPLETED, (request.error, request.error_detail)
    assert request.verification["ok"] is True
    assert request.results["archives"]["removed"] == 1
    assert request.results["redis"]["found"] == 0  # done by the first run
    assert request.results["messages"]["removed"] == len(before["messages"])
    assert list(retention.archive_records()) == []
    assert not Customer.objects.filter(pk=conv.customer_id).exists()


def test_erasure_by_channel_id_empties_the_returns_of_archived_conversations(
    chat_kb: Any, officers: tuple[Any, Any], compliance_storage: Path, run_on_commit: Any
) -> None:
    """Archiving a conversation cuts its returns' link to it; the archived record still names
    them, so an erasure by the app's user id finds their reason and photo."""
    requester, approver = officers
    old = old_conversation(chat_kb, "app-user-77")
    returned = ReturnRequest.objects.get(conversation=old)
    call_command("retention_archive", stdout=io.StringIO())
    returned.refresh_from_db()
    assert returned.conversation_id is None and returned.reason

    request = services.data_subject_request_create(
        user=requester, kind="erasure", identifier_kind="channel_id", identifier="app-user-77"
    )
    services.data_subject_request_approve(request, approver)
    run_on_commit(services.data_subject_request_queue, request, approver)
    request.refresh_from_db()
    assert request.status == RequestStatus.COMPLETED, (request.error, request.error_detail)
    returned.refresh_from_db()
    assert (returned.reason, returned.photo_url) == ("", "")
