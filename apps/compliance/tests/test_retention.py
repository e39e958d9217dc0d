"""Retention: archive closed conversations to compressed JSONL with manifests, verify before
deleting, restore one; a corrupt write deletes nothing."""

from __future__ import annotations

import errno
import gzip
import json
import os
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, storages
from django.core.management import CommandError, call_command

from apps.audit import keys
from apps.audit.models import ApiKey, Scope
from apps.compliance import retention, selectors
from apps.compliance.models import ArchiveBatch, RetentionHold
from apps.compliance.tests.conftest import close, conversation_snapshot, old_conversation, start
from apps.conversations.models import Conversation, Message, Role
from apps.conversations.tests.conftest import say
from apps.orders.models import ReturnRequest
from apps.safety.models import FlagDirection, FlagSource, ModerationFlag


class CorruptingStorage(FileSystemStorage):
    """A storage whose writes silently lose the last bytes (a truncated upload)."""

    def save(self, name: str | None, content: Any, max_length: int | None = None) -> str:
        data = content.read()
        if name and name.endswith(".gz"):
            data = data[:-7]
        return super().save(name, ContentFile(data), max_length)


def test_archive_verifies_then_deletes_and_restore_brings_it_back(
    chat_kb: Any, compliance_storage: Path
) -> None:
    old = old_conversation(chat_kb, "u-1")
    ModerationFlag.objects.create(
        conversation=old,
        message=old.messages.get(text__contains="尺码"),
        direction=FlagDirection.INPUT,
        source=FlagSource.CLASSIFIER,
        blocked=False,
        score=0.61,
        categories=["insult"],
    )
    recent = start(chat_kb, external_id="u-2")
    say(recent, "你好")
    close(recent, days_ago=10)
    still_open = start(chat_kb, external_id="u-3")
    say(still_open, "你好")
    before = conversation_snapshot(old)
    assert any(m["original_encrypted"] for m in before["messages"])
    assert before["flags"] == [(7, "input", "classifier", False, 0.61)]

    out = StringIO()
    call_command("retention_archive", stdout=out)
    assert "Archived 1 conversations" in out.getvalue()

    # Gone from the database, kept in the archive (only the old, closed one).
    assert not Conversation.objects.filter(public_id=old.public_id).exists()
    assert not Message.objects.filter(conversation_id=old.pk).exists()
    assert not ModerationFlag.objects.filter(conversation_id=old.pk).exists()
    assert Conversation.objects.filter(pk__in=[recent.pk, still_open.pk]).count() == 2
    assert ReturnRequest.objects.get(order__number="LM2026112002").conversation_id is None
    batch = ArchiveBatch.objects.get()
    manifest_path = compliance_storage / "archive" / "manifests" / f"{batch.name}.r1.json"
    manifest = json.loads(manifest_path.read_text())
    data = (compliance_storage / "archive" / manifest["file"]).read_bytes()
    lines = gzip.decompress(data).decode().splitlines()
    assert manifest["conversations"] == len(lines) == 1
    assert manifest["conversation_ids"] == [str(old.public_id)] == batch.conversation_ids
    assert manifest["messages"] == len(before["messages"])
    record = json.loads(lines[0])
    assert [m["text"] for m in record["messages"]] == [m["text"] for m in before["messages"]]
    assert "13800138000" not in lines[0]  # originals stay encrypted in the archive

    assert [f["categories"] for f in record["flags"]] == [["insult"]]

    # Restored: the same conversation, messages, replies, ratings, events, moderation flags
    # (on the same message) and return link.
    out = StringIO()
    call_command("retention_restore", str(old.public_id), stdout=out)
    assert "Restored conversation" in out.getvalue()
    assert conversation_snapshot(old) == before
    restored = Conversation.objects.get(public_id=old.public_id)
    assert ReturnRequest.objects.get(order__number="LM2026112002").conversation_id == restored.pk
    original = restored.messages.filter(role=Role.CUSTOMER, text__contains="尺码").get()
    assert "13800138000" in original.original_text
    # Taken out of the archive (the emptied batch with it), and held from re-archiving.
    assert not ArchiveBatch.objects.exists()
    assert not list((compliance_storage / "archive").glob("**/*.gz"))
    assert RetentionHold.objects.filter(conversation_public_id=old.public_id).exists()
    assert retention.conversations_archive().conversations == 0
    assert Conversation.objects.filter(public_id=old.public_id).exists()

    with pytest.raises(CommandError, match="No archived conversation"):
        call_command("retention_restore", str(old.public_id))


def test_a_batch_keeps_its_other_conversations_when_one_is_restored(
    chat_kb: Any, compliance_storage: Path
) -> None:
    conversations = []
    for n in range(3):
        conversation = start(chat_kb, external_id=f"u-{n}")
        say(conversation, "运费怎么算")
        close(conversation, days_ago=100)
        conversations.append(conversation)
    run = retention.conversations_archive(batch_size=2)
    assert run.conversations == 3 and len(run.batches) == 2
    first = ArchiveBatch.objects.get(conversations=2)
    sha_before = first.sha256
    wanted = first.conversation_ids[0]
    retention.conversation_restore(wanted)
    first.refresh_from_db()
    assert first.conversations == 1 and wanted not in first.conversation_ids
    assert first.sha256 != sha_before and first.data_file.endswith(".r2.jsonl.gz")
    kept = [cid for m in retention.manifests() for cid in m.conversation_ids]
    assert sorted(kept) == sorted(
        str(c.public_id) for c in conversations if str(c.public_id) != wanted
    )
    # Everything still reads back and verifies.
    assert len(list(retention.archive_records())) == 2


def test_nothing_is_deleted_when_the_archive_does_not_verify(
    chat_kb: Any, settings: Any, compliance_storage: Path
) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "cold": {
            "BACKEND": f"{__name__}.CorruptingStorage",
            "OPTIONS": {"location": str(compliance_storage / "cold")},
        },
    }
    settings.COMPLIANCE = {**settings.COMPLIANCE, "ARCHIVE_STORAGE": "cold"}
    old = start(chat_kb)
    say(old, "运费怎么算")
    close(old, days_ago=365)
    messages = old.messages.count()

    with pytest.raises(retention.ArchiveVerificationError, match="SHA-256"):
        retention.conversations_archive()
    assert Conversation.objects.filter(pk=old.pk).exists()
    assert old.messages.count() == messages
    assert not ArchiveBatch.objects.exists()
    # The bad file is not left behind to be mistaken for an archive.
    assert not list((compliance_storage / "cold").glob("**/*.gz"))
    assert retention.manifests() == []

    with pytest.raises(CommandError, match="nothing was deleted"):
        call_command("retention_archive")
    assert Conversation.objects.filter(pk=old.pk).exists()


def test_the_beat_task_archives_with_the_configured_retention(chat_kb: Any, settings: Any) -> None:
    from apps.compliance.tasks import retention_archive_task

    conversation = start(chat_kb)
    say(conversation, "运费怎么算")
    close(conversation, days_ago=40)
    assert retention_archive_task() == 0  # default: 90 days
    settings.COMPLIANCE = {**settings.COMPLIANCE, "RETENTION_DAYS": 30}
    assert retention_archive_task() == 1
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert "compliance-retention-archive" in settings.CELERY_BEAT_SCHEDULE


class DiskFullStorage(FileSystemStorage):
    """A folder on a disk that is full while `full` is set: writing a manifest stops halfway
    with ENOSPC, the part written left on disk (FileSystemStorage does not remove it)."""

    full = False

    def save(self, name: str | None, content: Any, max_length: int | None = None) -> str:
        if not (self.full and name and name.startswith(f"{retention.MANIFESTS}/")):
            return super().save(name, content, max_length)
        data = content.read()
        path = Path(self.path(name))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)


def test_a_full_disk_while_the_new_manifest_is_written_leaves_the_batch_as_it_was(
    chat_kb: Any, settings: Any, compliance_storage: Path
) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "cold": {
            "BACKEND": f"{__name__}.DiskFullStorage",
            "OPTIONS": {"location": str(compliance_storage / "cold")},
        },
    }
    settings.COMPLIANCE = {**settings.COMPLIANCE, "ARCHIVE_STORAGE": "cold"}
    cold = storages["cold"]
    assert isinstance(cold, DiskFullStorage)
    first = old_conversation(chat_kb, "u-1")
    second = old_conversation(chat_kb, "u-2")
    second_before = conversation_snapshot(second)
    assert retention.conversations_archive().conversations == 2
    (before,) = retention.manifests()
    both = [str(first.public_id), str(second.public_id)]
    assert before.conversation_ids == both

    cold.full = True
    with pytest.raises(OSError, match="No space left"):
        retention.conversation_restore(first.public_id)

    # Restored (committed before the archive is touched) and still archived: never in neither.
    assert Conversation.objects.filter(public_id=first.public_id).exists()
    # The batch's manifest and file as they were; the half-written manifest is gone again, the
    # new revision's file is a leftover.
    assert retention.manifests() == [before]
    assert cold.listdir(retention.MANIFESTS) == ([], [f"{before.batch}.r1.json"])
    assert [r["conversation"]["public_id"] for _, r in retention.archive_records()] == both
    assert ArchiveBatch.objects.get().data_file == before.file
    (new_file,) = retention.unreferenced_files()
    assert new_file.startswith(f"{retention.BATCHES}/{before.batch}.r2")
    # Still searchable, and the cleanup deletes only the new revision's file.
    subject = selectors.subject_resolve("channel_id", "u-2")
    assert subject.archived_conversation_ids == {str(second.public_id)}
    cleanup = retention.leftovers_delete()
    assert (cleanup.deleted, cleanup.kept, cleanup.failed) == ([new_file], [], [])
    assert retention.batch_files() == [before.file]

    # With room on the disk again, both restores finish.
    cold.full = False
    retention.conversation_restore(second.public_id)
    assert conversation_snapshot(second) == second_before
    (after,) = retention.manifests()
    assert (after.revision, after.conversation_ids) == (2, [str(first.public_id)])
    retention.conversation_restore(first.public_id)
    assert retention.manifests() == [] and retention.batch_files() == []
    assert not ArchiveBatch.objects.exists()


def test_a_restored_conversation_keeps_the_api_key_that_opened_it_while_the_key_exists(
    chat_kb: Any, compliance_storage: Path, app_key: ApiKey
) -> None:
    kept = app_key
    deleted = keys.api_key_create(name="deleted", user=kept.user, scopes=[Scope.CHAT]).api_key
    opened = {key.pk: old_conversation(chat_kb, f"u-{key.pk}") for key in (kept, deleted)}
    for key_id, conversation in opened.items():
        Conversation.objects.filter(pk=conversation.pk).update(api_key_id=key_id)
    call_command("retention_archive", stdout=StringIO())
    assert not Conversation.objects.filter(pk__in=[c.pk for c in opened.values()]).exists()
    ApiKey.objects.filter(pk=deleted.pk).delete()

    for conversation in opened.values():
        call_command("retention_restore", str(conversation.public_id), stdout=StringIO())
    restored = {
        key_id: Conversation.objects.get(public_id=c.public_id).api_key_id
        for key_id, c in opened.items()
    }
    assert restored == {kept.pk: kept.pk, deleted.pk: None}
