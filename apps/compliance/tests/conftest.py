from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from django.contrib.auth.models import Group, Permission
from django.utils import timezone

from apps.agents.models import ConversationEvent, EventKind
from apps.compliance import retention, services
from apps.compliance.models import DataSubjectRequest
from apps.conversations import services as conversation_services
from apps.conversations.models import Conversation, ConversationStatus
from apps.conversations.tests.conftest import (  # noqa: F401 (fixtures)
    _fresh_cache,
    chat_kb,
    conversation,
    say,
)
from apps.orders.models import Order, ReturnRequest


@pytest.fixture(autouse=True)
def compliance_storage(settings: Any, tmp_path: Path) -> Path:
    """Cold storage and report files in a folder of the test's own."""
    settings.COMPLIANCE = {
        **settings.COMPLIANCE,
        "ARCHIVE_STORAGE": "",
        "ARCHIVE_DIR": str(tmp_path / "archive"),
        "FILES_STORAGE": "",
        "FILES_DIR": str(tmp_path / "files"),
        "FOUR_EYES": True,
    }
    return tmp_path


def compliance_group() -> Group:
    """The group the migrations made (a transactional test's flush removes it: re-create)."""
    group, _ = Group.objects.get_or_create(name="compliance")
    group.permissions.add(
        *Permission.objects.filter(
            content_type__app_label__in=["compliance", "audit"],
            codename__in=["manage_requests", "view_audit_log"],
        )
    )
    return group


@pytest.fixture
def redis_everywhere(settings: Any, redis_url: str) -> Iterator[redis.Redis]:
    """The Django cache, the Channels layer and the Celery result backend on a real Redis."""
    settings.REDIS_URL = redis_url
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url}
    }
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_url]},
        }
    }
    settings.CELERY_RESULT_BACKEND = redis_url
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def make_officer(django_user_model: Any) -> Callable[..., Any]:
    """A compliance officer: admin staff in the "compliance" group."""

    def make(username: str, first_name: str = "", last_name: str = "") -> Any:
        user = django_user_model.objects.create_user(
            username,
            password="pw-" + username,
            is_staff=True,
            first_name=first_name,
            last_name=last_name,
        )
        user.groups.add(compliance_group())
        return django_user_model.objects.get(pk=user.pk)  # fresh permission cache

    return make


@pytest.fixture
def officers(make_officer: Callable[..., Any]) -> tuple[Any, Any]:
    # Chinese display names: the report must render them.
    return make_officer("wangfang", "王芳"), make_officer("lilei", "李雷")


def close(closing: Conversation, *, days_ago: float = 0, csat: int | None = None) -> None:
    when = timezone.now() - timedelta(days=days_ago)
    Conversation.objects.filter(pk=closing.pk).update(
        status=ConversationStatus.CLOSED, closed_at=when, last_message_at=when, csat=csat
    )


def start(kb: Any, *, external_id: str = "", channel: str = "api") -> Conversation:
    return conversation_services.conversation_start(
        knowledge_base=kb, channel=channel, locale="zh-hans", external_id=external_id
    )


def returnable_order() -> str:
    """LM2026112002 (delivered last week) while no return is open for it, else a copy of it
    under a new number: a second return of one order is refused as soon as its number is
    given, and each old conversation here opens its own."""
    order = Order.objects.get(number="LM2026112002")
    if not ReturnRequest.objects.filter(order=order).exists():
        return order.number
    order.pk = None
    order.number = f"LM2099{Order.objects.count():06d}"
    order.save()
    return order.number


def old_conversation(kb: Any, external_id: str) -> Conversation:
    """A closed conversation past the retention period with a bit of everything: a return form
    with a phone number (redacted, original encrypted), a rating, an agent's event."""
    old = start(kb, external_id=external_id)
    say(old, "我要退货")
    say(old, f"订单号 {returnable_order()}")
    say(old, "8002")  # the last digits of the order's mobile number, to confirm it
    say(old, "尺码太小了，电话 13800138000")
    say(old, "跳过")
    answer = say(old, "运费怎么算")[0]
    conversation_services.message_rate(old, answer.public_id, "down")
    ConversationEvent.objects.create(conversation=old, kind=EventKind.CLOSED, note="已解决")
    close(old, days_ago=120, csat=4)
    return old


def request_run(
    officers: tuple[Any, Any], run_on_commit: Any, kind: str, identifier_kind: str, identifier: str
) -> DataSubjectRequest:
    """A request made by the first officer, approved and run by the second; as stored after."""
    requester, approver = officers
    request = services.data_subject_request_create(
        user=requester, kind=kind, identifier_kind=identifier_kind, identifier=identifier
    )
    services.data_subject_request_approve(request, approver)
    run_on_commit(services.data_subject_request_queue, request, approver)
    request.refresh_from_db()
    return request


def conversation_snapshot(which: Conversation) -> dict[str, Any]:
    """What a user would notice of a conversation: its fields and its messages'."""
    fresh = Conversation.objects.get(public_id=which.public_id)
    skip = {"id", "conversation_id", "reply_to_id", "customer_id"}
    return {
        "conversation": {k: v for k, v in retention.model_fields(fresh).items() if k not in skip},
        "messages": [
            {k: v for k, v in retention.model_fields(m).items() if k not in skip}
            for m in fresh.messages.order_by("seq")
        ],
        "replies": [
            (m.seq, m.reply_to.seq if m.reply_to else None) for m in fresh.messages.order_by("seq")
        ],
        "events": [(e.kind, e.note) for e in fresh.agent_events.all()],
        "flags": [
            (f.message.seq if f.message else None, f.direction, f.source, f.blocked, f.score)
            for f in fresh.moderation_flags.order_by("pk")
        ],
        "customer": str(fresh.customer.public_id),
    }


def pdf_layout(path: Path) -> str:
    """The PDF's text as pdftotext (poppler-utils) extracts it, laid out as on the page."""
    return subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True
    ).stdout


def pdf_text(path: Path) -> str:
    """The PDF's text with white space removed, so that words wrapped in a cell still match."""
    return "".join(pdf_layout(path).split())


def export_files(request: DataSubjectRequest, officer: Any, folder: Path) -> tuple[dict, str]:
    """An access request's JSON export (its stores) and its PDF's text (white space removed)."""
    data, _ = services.data_subject_request_file(request, "json", officer)
    pdf, _ = services.data_subject_request_file(request, "pdf", officer)
    path = folder / f"{request.public_id}.pdf"
    path.write_bytes(pdf)
    return json.loads(data)["stores"], pdf_text(path)


def table_row(layout: str, after: str, label_start: str) -> tuple[int, int]:
    """The two numbers ending the first table row, below the heading `after`, whose label
    starts with `label_start` (rows are top-aligned: a wrapped label's numbers are on its
    first line)."""
    below = layout[layout.index(after) :]
    pattern = re.compile(rf"^\s*{re.escape(label_start)}.*?\s(\d+)\s+(\d+)\s*$", re.MULTILINE)
    match = pattern.search(below)
    assert match is not None, f"no row {label_start!r} below {after!r}"
    return int(match.group(1)), int(match.group(2))


def squash(text: str) -> str:
    return "".join(text.split())
