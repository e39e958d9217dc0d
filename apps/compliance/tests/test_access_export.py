"""The access export holds everything an erasure would remove: every store's part, in the JSON
file and in the readable PDF (its text extracted with pdftotext)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.utils import translation

from apps.agents.models import ConversationEvent, EventKind
from apps.compliance import retention, stores
from apps.compliance.models import RequestStatus
from apps.compliance.tests.conftest import close, export_files, request_run, squash, start
from apps.conversations import services as conversation_services
from apps.conversations.models import Message, Role
from apps.conversations.tests.conftest import say
from apps.safety.models import ModerationFlag


def test_every_store_is_exported_by_itself_or_with_another() -> None:
    """A store added later cannot be left out of the access export unnoticed."""
    for store in stores.STORES:
        exports = type(store).export is not stores.Store.export
        assert exports != bool(store.exported_with), store.key
        if store.exported_with:
            holder = stores.BY_KEY[store.exported_with]
            assert type(holder).export is not stores.Store.export, store.key


def _access(officers: tuple[Any, Any], run_on_commit: Any, identifier: str) -> Any:
    request = request_run(officers, run_on_commit, "access", "channel_id", identifier)
    assert request.status == RequestStatus.COMPLETED, (request.error, request.error_detail)
    return request


@pytest.mark.slow
def test_the_access_export_holds_what_every_store_holds(
    chat_kb: Any,
    officers: tuple[Any, Any],
    redis_everywhere: redis.Redis,
    compliance_storage: Path,
    run_on_commit: Any,
) -> None:
    client = redis_everywhere
    # An old conversation, in cold storage now.
    old = start(chat_kb, external_id="app-user-42")
    say(old, "运费怎么算")
    close(old, days_ago=200)
    assert retention.conversations_archive().conversations == 1

    # Then: an answer (both caches) rated up, a return form left half-filled, an agent's note,
    # a conversation rating; a message the moderator flagged (in a later conversation: the
    # flag hands the conversation to an agent, which ends the form); an admin edit, a socket
    # (a Channels group in Redis), a task result naming the conversation.
    conv = start(chat_kb, external_id="app-user-42")
    answer = say(conv, "How much is shipping?")[0]
    conversation_services.message_rate(conv, answer.public_id, "up")
    say(conv, "我要退货")
    say(conv, "订单号 LM2026112002")
    assert conv.state["form"]["slots"] == {"order_number": "LM2026112002"}
    ConversationEvent.objects.create(conversation=conv, kind=EventKind.CLOSED, note="VIP, 王女士")
    close(conv, csat=5)
    later = start(chat_kb, external_id="app-user-42")
    assert later.customer_id == conv.customer_id and later.pk != conv.pk
    say(later, "The idiot courier left my parcel in the rain")
    flagged = later.messages.get(role=Role.CUSTOMER, text__contains="courier")
    flag = ModerationFlag.objects.get(message=flagged)
    assert (flag.direction, flag.blocked, flag.categories) == ("input", False, ["insult"])
    LogEntry.objects.create(
        user=officers[0],
        content_type=ContentType.objects.get_for_model(Message),
        object_id=str(flagged.pk),
        object_repr=str(flagged),
        action_flag=CHANGE,
    )
    async_to_sync(get_channel_layer().group_add)(f"chat.{later.public_id}", "specific.test!1")
    task_key = f"celery-task-meta-{later.public_id}"
    client.set(task_key, json.dumps({"status": "SUCCESS", "result": str(later.public_id)}))

    first = _access(officers, run_on_commit, "app-user-42")
    request = _access(officers, run_on_commit, "app-user-42")  # the first one's files: a store
    exported, text = export_files(request, officers[1], compliance_storage)

    for store in stores.STORES:
        assert (store.exported_with or store.key) in exported, store.key
    # Moderation flags: in the JSON with what the flag says, in the PDF in both languages.
    assert exported["moderation_flags"] == [
        {
            "conversation": str(later.public_id),
            "message": str(flagged.public_id),
            "message_seq": flagged.seq,
            "direction": "input",
            "source": "lexicon",
            "blocked": False,
            "score": flag.score,
            "categories": ["insult"],
            "created_at": retention.jsonable(flag.created_at),
            "reviewed_at": None,
        }
    ]
    for english in (
        "Moderation flags",
        "Customer message",
        "Insult or profanity",
        "Let through, flagged for review",
    ):
        assert squash(english) in text, english
        with translation.override("zh-hans"):
            assert squash(translation.gettext(english)) in text, english
    assert squash(f"{later.public_id} #{flagged.seq}") in text

    # The conversation: ratings, the form's state, the agent's note; the archived one too.
    current, _ = exported["conversations"]
    assert current["conversation"]["public_id"] == str(conv.public_id)
    assert current["conversation"]["csat"] == 5
    assert current["conversation"]["state"]["form"]["slots"] == {"order_number": "LM2026112002"}
    assert [m["rating"] for m in current["messages"] if m["rating"]] == ["up"]
    assert [e["note"] for e in current["events"]] == ["VIP, 王女士"]
    assert [r["conversation"]["public_id"] for r in exported["archives"]] == [str(old.public_id)]
    assert squash("Form (dialogue state)") in text and "order_number:LM2026112002" in text
    assert squash("VIP, 王女士") in text and "[up]" in text and "运费怎么算" in text

    # The answer caches' questions, the admin's history, Redis, the task result, the earlier
    # export.
    assert {
        "question": "How much is shipping?",
        "knowledge_base": chat_kb.pk,
        "language": "en",
    } in (exported["exact_cache"])
    # The archived conversation's question was cached too.
    assert [e["question"] for e in exported["semantic_cache"]] == [
        "运费怎么算",
        "How much is shipping?",
    ]
    cache_section = text[text.index(squash("Answer cache questions")) :]
    cache_section = cache_section[: cache_section.index(squash("Admin change history"))]
    assert squash("How much is shipping?") in cache_section and "运费怎么算" in cache_section
    (edit,) = exported["admin_history"]
    assert (edit["action"], edit["object_type"], edit["object"]) == (
        "changed",
        "message",
        str(flagged),
    )
    assert "user" not in json.dumps(edit)  # the staff member's part is theirs
    assert squash(str(flagged)) in text
    assert exported["redis"] == [{"key": f"asgi:group:chat.{later.public_id}"}]
    assert [r["key"] for r in exported["celery_results"]] == [task_key]
    assert str(later.public_id) in exported["celery_results"][0]["value"]
    assert [e["request"] for e in exported["exports"]] == [str(first.public_id)]
    assert squash("Other records") in text
    for line in (f"asgi:group:chat.{later.public_id}", task_key, str(first.public_id)):
        assert squash(line) in text, line

    # What the export showed is what an erasure removes.
    erasure = request_run(officers, run_on_commit, "erasure", "channel_id", "app-user-42")
    assert erasure.status == RequestStatus.COMPLETED, erasure.error
    assert erasure.results["moderation_flags"] == {
        **erasure.results["moderation_flags"],
        "found": 1,
        "removed": 1,
    }
    assert erasure.verification["stores"]["moderation_flags"]["found"] == 0
    assert not ModerationFlag.objects.filter(pk=flag.pk).exists()
