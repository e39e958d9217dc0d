"""Retention: closed conversations older than N days go to cold storage, and can come back.

Cold storage is any Django storage (`COMPLIANCE["ARCHIVE_STORAGE"]` names an entry of STORAGES,
e.g. S3 through django-storages; by default a folder, `COMPLIANCE["ARCHIVE_DIR"]`). Layout:

    batches/<batch>.r<revision>.jsonl.gz   one conversation per line (gzip, JSON Lines)
    manifests/<batch>.r<revision>.json     counts, ids and SHA-256 of the file, the record of truth

A batch's manifest is the one of its highest revision. Archives written before revisions were in
the manifest's name have `manifests/<batch>.json`, read as older than any revision named (only
a rewrite, later, writes those).

A line holds the customer, the conversation, its messages (encrypted originals stay encrypted)
and agent events as their database fields, and the numbers of the returns it opened.

Nothing leaves the database before its archive is read back from the storage and verified:
the file's SHA-256 and the content's, the number of lines and messages, and each line's
conversation id, in order. A batch is rewritten (a new revision, verified the same way, then the
manifest swapped and the old file deleted) when a conversation is restored or a data subject's
records are erased from it. The Storage API cannot rename, so the swap never overwrites: the new
revision's manifest is saved beside the old one and read back, and only then is the old one
deleted. A failure at any point leaves the batch a manifest pointing at a file that is there.
An older revision's manifest whose deletion failed is a leftover too: readers pass over it, and
the cleanup deletes it.

A batch file no batch's manifest refers to is a leftover: an old revision whose deletion failed,
a new one whose manifest was never swapped in, an archive run that rolled back. It may still hold a
data subject's records, so the search reads every file under `batches/`, not only the
manifests' (`stored_records`), and restores, erasures and the daily archive run delete the
leftovers under the archive lock (`leftovers_delete`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
import secrets
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.db import connection, models, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.agents.models import ConversationEvent
from apps.audit.models import ApiKey
from apps.compliance.models import ArchiveBatch, RetentionHold
from apps.conversations.models import Conversation, ConversationStatus, Customer, Message
from apps.core.exceptions import NotFoundError, ServiceError
from apps.knowledge.models import KnowledgeBase
from apps.orders.models import ReturnRequest
from apps.safety.models import ModerationFlag

logger = logging.getLogger(__name__)

FORMAT = 1
BATCHES = "batches"
MANIFESTS = "manifests"
# PostgreSQL advisory lock serialising rewrites of archive batches ("ARCHV" in ASCII; the audit
# log uses "AUDIT").
ARCHIVE_LOCK_KEY = 0x4152434856
# Deleting a file from the storage is tried this often, waiting DELETE_BACKOFF_SECONDS times the
# attempt's number in between (an S3 "SlowDown", a network blip).
DELETE_ATTEMPTS = 3
DELETE_BACKOFF_SECONDS = 0.2


class ArchiveVerificationError(Exception):
    """What was read back from cold storage is not what was written (or a file is damaged)."""


def archive_storage() -> Storage:
    alias = settings.COMPLIANCE["ARCHIVE_STORAGE"]
    if alias:
        return storages[alias]
    return FileSystemStorage(location=settings.COMPLIANCE["ARCHIVE_DIR"])


def _lock_archive() -> None:
    """Serialise every change to the archive's files until the transaction ends."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ARCHIVE_LOCK_KEY])


# --- Records ---------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """A field's value as archives and exports write it in JSON."""
    if isinstance(value, datetime | date):
        return value.isoformat()  # full precision (DjangoJSONEncoder drops microseconds)
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    return value


def model_fields(obj: models.Model) -> dict[str, Any]:
    """Every concrete column of a row, by attribute name (foreign keys as `<name>_id`)."""
    return {f.attname: jsonable(f.value_from_object(obj)) for f in obj._meta.concrete_fields}


def conversation_records(conversations: list[Conversation]) -> list[dict[str, Any]]:
    """One archive line per conversation (customer selected with it): the conversation with
    everything that hangs off it (messages, agent events, moderation flags, return links). One
    query per kind for them all, not one per conversation."""
    pks = [c.pk for c in conversations]
    messages: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for message in Message.objects.filter(conversation_id__in=pks).order_by("seq"):
        messages[message.conversation_id].append(model_fields(message))
    events: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for event in ConversationEvent.objects.filter(conversation_id__in=pks).order_by("pk"):
        events[event.conversation_id].append(model_fields(event))
    flags: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for flag in ModerationFlag.objects.filter(conversation_id__in=pks).order_by("pk"):
        flags[flag.conversation_id].append(model_fields(flag))
    returns: dict[int, list[str]] = defaultdict(list)
    for conversation_id, number in (
        ReturnRequest.objects.filter(conversation_id__in=pks)
        .order_by("pk")
        .values_list("conversation_id", "number")
    ):
        returns[conversation_id].append(number)
    return [
        {
            "format": FORMAT,
            "customer": model_fields(c.customer),
            "conversation": model_fields(c),
            "messages": messages[c.pk],
            "events": events[c.pk],
            "flags": flags[c.pk],
            "returns": returns[c.pk],
        }
        for c in conversations
    ]


def _encode(records: list[dict[str, Any]]) -> bytes:
    return b"".join(
        json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode() + b"\n" for r in records
    )


@dataclass
class Manifest:
    batch: str
    file: str
    revision: int
    created_at: str
    conversations: int
    messages: int
    sha256: str
    content_sha256: str
    conversation_ids: list[str] = field(default_factory=list)
    customer_ids: list[str] = field(default_factory=list)
    format: int = FORMAT

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _manifest_name(batch: str, revision: int) -> str:
    return f"{MANIFESTS}/{batch}.r{revision}.json"


# "<batch>.r<revision>.json", or "<batch>.json" as archives written before revisions were in the
# name have it (batch names hold no dot).
_MANIFEST_FILE = re.compile(r"(?P<batch>[^.]+?)(?:\.r(?P<revision>[1-9][0-9]*))?\.json")


def _manifest_names(storage: Storage) -> dict[str, list[str]]:
    """Each batch's manifests in the storage, by batch, oldest revision first: the last is the
    batch's manifest, any other an older revision whose deletion failed (a leftover). A manifest
    named without its revision counts as older than any named with one."""
    try:
        _, names = storage.listdir(MANIFESTS)
    except FileNotFoundError:
        return {}
    revisions: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for name in names:
        match = _MANIFEST_FILE.fullmatch(name)
        if match:
            revision = int(match["revision"] or 0)
            revisions[match["batch"]].append((revision, f"{MANIFESTS}/{name}"))
    return {batch: [name for _, name in sorted(revisions[batch])] for batch in sorted(revisions)}


def _read_manifest(storage: Storage, name: str) -> Manifest:
    """The manifest stored as `name` (one of `_manifest_names`); ArchiveVerificationError if it
    is not a manifest, or not the batch's and revision its name says."""
    match = _MANIFEST_FILE.fullmatch(name.rpartition("/")[2])
    assert match is not None, name
    try:
        manifest = Manifest(**json.loads(_read(storage, name)))
    except (ValueError, TypeError) as exc:  # not JSON, not UTF-8, other keys
        raise ArchiveVerificationError(f"{name}: not a manifest ({exc})") from exc
    if manifest.batch != match["batch"] or (
        match["revision"] and manifest.revision != int(match["revision"])
    ):
        raise ArchiveVerificationError(
            f"{name}: holds the manifest of {manifest.batch} revision {manifest.revision}"
        )
    return manifest


def _read(storage: Storage, name: str) -> bytes:
    with storage.open(name, "rb") as handle:
        return handle.read()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_verified(
    storage: Storage, batch: str, revision: int, created_at: str, records: list[dict[str, Any]]
) -> Manifest:
    """Write a batch file, read it back and check it; returns its manifest (not yet written).
    A file that does not verify is deleted and ArchiveVerificationError raised."""
    content = _encode(records)
    compressed = gzip.compress(content, mtime=0)
    name = storage.save(f"{BATCHES}/{batch}.r{revision}.jsonl.gz", ContentFile(compressed))
    manifest = Manifest(
        batch=batch,
        file=name,
        revision=revision,
        created_at=created_at,
        conversations=len(records),
        messages=sum(len(r["messages"]) for r in records),
        sha256=_sha256(compressed),
        content_sha256=_sha256(content),
        conversation_ids=[r["conversation"]["public_id"] for r in records],
        customer_ids=sorted({r["customer"]["public_id"] for r in records}),
    )
    try:
        read_back = list(_verified_records(storage, manifest))
    except ArchiveVerificationError:
        storage.delete(name)
        raise
    if [r["conversation"]["public_id"] for r in read_back] != manifest.conversation_ids:
        storage.delete(name)
        raise ArchiveVerificationError(f"{name}: the conversations read back differ")
    return manifest


def _verified_records(storage: Storage, manifest: Manifest) -> Iterator[dict[str, Any]]:
    try:
        compressed = _read(storage, manifest.file)
    except OSError as exc:
        raise ArchiveVerificationError(f"{manifest.file}: cannot be read ({exc})") from exc
    if _sha256(compressed) != manifest.sha256:
        raise ArchiveVerificationError(f"{manifest.file}: SHA-256 of the file does not match")
    try:
        content = gzip.decompress(compressed)
    except (OSError, EOFError) as exc:
        raise ArchiveVerificationError(f"{manifest.file}: not a gzip file ({exc})") from exc
    if _sha256(content) != manifest.content_sha256:
        raise ArchiveVerificationError(f"{manifest.file}: SHA-256 of the content does not match")
    lines = content.splitlines()
    records = [json.loads(line) for line in lines]
    if len(records) != manifest.conversations:
        raise ArchiveVerificationError(
            f"{manifest.file}: {len(records)} conversations, the manifest says "
            f"{manifest.conversations}"
        )
    if sum(len(r["messages"]) for r in records) != manifest.messages:
        raise ArchiveVerificationError(f"{manifest.file}: the number of messages differs")
    yield from records


def _write_manifest(
    storage: Storage, manifest: Manifest, superseded: list[str] | None = None
) -> None:
    """Save a batch's manifest under its revision's own name and read it back; only then delete
    the `superseded` manifests (the batch's earlier revisions, by name).

    Until the new one is verified the earlier ones stay as they are, so no failure leaves the
    batch without a manifest. A new one that fails is deleted again (the storage may have kept
    it, or part of it), which makes the previous revision the batch's manifest again; its file
    is still there, the caller deletes it only after this returns. An earlier one that cannot be
    deleted is an older revision: readers pass over it and `leftovers_delete` deletes it."""
    name = _manifest_name(manifest.batch, manifest.revision)
    data = json.dumps(manifest.as_dict(), indent=1, sort_keys=True).encode()
    saved = None
    try:
        saved = storage.save(name, ContentFile(data))
        if saved != name or _read(storage, saved) != data:
            raise ArchiveVerificationError(f"{name}: the manifest read back differs")
    except BaseException:
        # Should this fail too, what stays is either the whole new manifest (its file was
        # verified and is there) or a damaged one, which readers report rather than pass over.
        _delete_retrying(storage, saved or name)
        raise
    for old in superseded or []:
        _delete_retrying(storage, old)


def _current_manifests(storage: Storage, names: dict[str, list[str]]) -> list[Manifest]:
    return [_read_manifest(storage, batch_names[-1]) for batch_names in names.values()]


def manifests(storage: Storage | None = None) -> list[Manifest]:
    """Every batch's manifest (its highest revision), read from the storage (not from the
    database's index)."""
    storage = storage or archive_storage()
    return _current_manifests(storage, _manifest_names(storage))


def archive_records(
    storage: Storage | None = None, listed: list[Manifest] | None = None
) -> Iterator[tuple[Manifest, dict[str, Any]]]:
    """Every archived conversation, each batch verified against its manifest as it is read
    (`listed`: the manifests, when the caller has read them already)."""
    storage = storage or archive_storage()
    for manifest in manifests(storage) if listed is None else listed:
        for record in _verified_records(storage, manifest):
            yield manifest, record


def batch_files(storage: Storage | None = None) -> list[str]:
    """Every file under `batches/`, whether a manifest refers to it or not."""
    storage = storage or archive_storage()
    try:
        _, names = storage.listdir(BATCHES)
    except FileNotFoundError:
        return []
    return sorted(f"{BATCHES}/{name}" for name in names)


def unreferenced_files(
    storage: Storage | None = None, listed: list[Manifest] | None = None
) -> list[str]:
    """Batch files no manifest refers to (leftovers: see the module's docstring)."""
    storage = storage or archive_storage()
    referenced = {m.file for m in (manifests(storage) if listed is None else listed)}
    return [name for name in batch_files(storage) if name not in referenced]


def file_records(storage: Storage, name: str) -> list[dict[str, Any]]:
    """The records of a batch file read as it is, with no manifest to check it against (a
    leftover). ArchiveVerificationError if it cannot be read as gzip JSON Lines."""
    try:
        content = gzip.decompress(_read(storage, name))
        return [json.loads(line) for line in content.splitlines()]
    except (OSError, EOFError, ValueError) as exc:  # BadGzipFile is an OSError
        raise ArchiveVerificationError(f"{name}: cannot be read ({exc})") from exc


def stored_records(storage: Storage | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every record in every batch file, with the file's name: the manifests' batches (verified
    as they are read), then the leftovers no manifest refers to. A leftover that cannot be read
    is skipped here (logged); `stores.ArchiveStore` counts it as not searchable."""
    storage = storage or archive_storage()
    listed = manifests(storage)
    for manifest, record in archive_records(storage, listed):
        yield manifest.file, record
    for name in unreferenced_files(storage, listed):
        try:
            records = file_records(storage, name)
        except ArchiveVerificationError:
            logger.warning("archive leftover %s cannot be read; not searched", name)
            continue
        for record in records:
            yield name, record


# --- Archiving -------------------------------------------------------------------------------


@dataclass
class ArchiveRun:
    batches: list[str] = field(default_factory=list)
    conversations: int = 0
    messages: int = 0


def archivable(*, older_than_days: int | None = None, now: datetime | None = None) -> Any:
    """Closed conversations whose last activity is older than the retention period."""
    days = settings.COMPLIANCE["RETENTION_DAYS"] if older_than_days is None else older_than_days
    now = now or timezone.now()
    cutoff = now - timedelta(days=days)
    held = RetentionHold.objects.filter(until__gt=now).values("conversation_public_id")
    return (
        Conversation.objects.filter(status=ConversationStatus.CLOSED)
        .filter(
            Q(closed_at__lt=cutoff)
            | Q(closed_at__isnull=True, last_message_at__lt=cutoff)
            | Q(closed_at__isnull=True, last_message_at__isnull=True, created_at__lt=cutoff)
        )
        .exclude(public_id__in=held)
    )


def _batch_name(now: datetime) -> str:
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def conversations_archive(
    *,
    older_than_days: int | None = None,
    batch_size: int | None = None,
    max_batches: int | None = None,
    now: datetime | None = None,
) -> ArchiveRun:
    """Move closed conversations older than the retention period to cold storage, one verified
    batch at a time; each batch's conversations are deleted in the transaction that recorded
    the batch, and only after its file was read back and checked."""
    storage = archive_storage()
    leftovers_delete(storage)
    size = batch_size or settings.COMPLIANCE["ARCHIVE_BATCH_SIZE"]
    run = ArchiveRun()
    while max_batches is None or len(run.batches) < max_batches:
        with transaction.atomic():
            # Held until the batch is committed: a file written but not yet in a manifest must
            # not look like a leftover to a concurrent cleanup.
            _lock_archive()
            ids = list(
                archivable(older_than_days=older_than_days, now=now)
                .select_for_update(skip_locked=True)
                .order_by("pk")
                .values_list("pk", flat=True)[:size]
            )
            if not ids:
                break
            conversations = list(
                Conversation.objects.filter(pk__in=ids).select_related("customer").order_by("pk")
            )
            records = conversation_records(conversations)
            created = timezone.now()
            manifest = _write_verified(
                storage, _batch_name(created), 1, created.isoformat(), records
            )
            try:
                _write_manifest(storage, manifest)
                _index(manifest)
                Conversation.objects.filter(pk__in=ids).delete()
            except BaseException:
                # The database keeps the conversations (the transaction rolls back); the files
                # go, so they are not archived twice (a file left behind is a leftover, deleted
                # by the next cleanup). The manifest first: one left pointing at a deleted file
                # would make the archive unreadable.
                if _delete_retrying(storage, _manifest_name(manifest.batch, manifest.revision)):
                    _delete_retrying(storage, manifest.file)
                raise
        run.batches.append(manifest.batch)
        run.conversations += manifest.conversations
        run.messages += manifest.messages
        logger.info(
            "archived %d conversations (%d messages) to %s",
            manifest.conversations,
            manifest.messages,
            manifest.file,
        )
    return run


def _delete_retrying(storage: Storage, name: str) -> bool:
    """Delete a file from the archive storage, trying DELETE_ATTEMPTS times; whether it went.

    Any error of the storage backend counts, not only OSError: S3 through django-storages
    raises botocore's ClientError, other backends their own. A file that stays behind is not
    lost sight of: the search reads every batch file, leftovers included, and the next cleanup
    deletes it; so the failure is logged here rather than raised."""
    for attempt in range(1, DELETE_ATTEMPTS + 1):
        try:
            storage.delete(name)
        except Exception:  # the backend's own errors: see the docstring
            logger.warning(
                "could not delete %s from the archive storage (attempt %d of %d)",
                name,
                attempt,
                DELETE_ATTEMPTS,
                exc_info=True,
            )
            if attempt < DELETE_ATTEMPTS:
                time.sleep(DELETE_BACKOFF_SECONDS * attempt)
        else:
            return True
    return False


def _batch_of(name: str) -> str:
    """The batch a file under `batches/` belongs to ("<batch>.r<revision>...": batch names hold
    no dot)."""
    return name.rpartition("/")[2].split(".", 1)[0]


@dataclass
class Leftovers:
    deleted: list[str] = field(default_factory=list)
    # Could not be deleted (tried DELETE_ATTEMPTS times): the next cleanup tries again.
    failed: list[str] = field(default_factory=list)
    # Kept on purpose: see leftovers_delete.
    kept: list[str] = field(default_factory=list)
    # Records `matches` selected in the deleted files.
    matching: int = 0


def leftovers_delete(
    storage: Storage | None = None, *, matches: Callable[[dict[str, Any]], bool] | None = None
) -> Leftovers:
    """Delete the manifests of older revisions and the batch files no batch's manifest refers
    to, under the archive lock. `matches` counts the records it selects in the files deleted (an
    erasure's count of what it removed).

    Deleted: a manifest of a batch's older revision (its deletion failed when the batch was
    rewritten; readers pass over it), another revision of a batch that has a manifest
    (superseded, or a rewrite that stopped before swapping its manifest), and a file of a batch
    neither a manifest nor the index knows (an archive run rolled back, an emptied batch). Kept:
    a file of a batch the index lists but whose manifest is missing (left by earlier versions,
    which deleted the old manifest before writing the new one, when the write failed); it may be
    the only copy of other customers' conversations, so it waits for a person, and the search
    still reads it."""
    storage = storage or archive_storage()
    result = Leftovers()
    with transaction.atomic():
        _lock_archive()
        names = _manifest_names(storage)
        listed = _current_manifests(storage, names)
        for name in (name for batch_names in names.values() for name in batch_names[:-1]):
            (result.deleted if _delete_retrying(storage, name) else result.failed).append(name)
        leftovers = unreferenced_files(storage, listed)
        with_manifest = {m.batch for m in listed}
        indexed = set(
            ArchiveBatch.objects.filter(name__in={_batch_of(n) for n in leftovers}).values_list(
                "name", flat=True
            )
        )
        for name in leftovers:
            batch = _batch_of(name)
            if batch not in with_manifest and batch in indexed:
                logger.error(
                    "archive batch %s has no manifest but is indexed: %s kept for inspection",
                    batch,
                    name,
                )
                result.kept.append(name)
                continue
            matching = 0
            if matches is not None:
                try:
                    matching = sum(matches(r) for r in file_records(storage, name))
                except ArchiveVerificationError:
                    matching = 0  # unreadable: nothing can be counted, it goes all the same
            if _delete_retrying(storage, name):
                result.deleted.append(name)
                result.matching += matching
            else:
                result.failed.append(name)
    if result.deleted:
        logger.info("deleted %d leftover archive files and manifests", len(result.deleted))
    return result


def _index(manifest: Manifest) -> None:
    values = {
        "data_file": manifest.file,
        "conversations": manifest.conversations,
        "messages": manifest.messages,
        "sha256": manifest.sha256,
        "conversation_ids": manifest.conversation_ids,
        "customer_ids": manifest.customer_ids,
    }
    if manifest.revision > 1:
        values["updated_at"] = timezone.now()
    ArchiveBatch.objects.update_or_create(name=manifest.batch, defaults=values)


def batch_rewrite(
    manifest: Manifest, drop: Callable[[dict[str, Any]], bool], storage: Storage | None = None
) -> int:
    """Rewrite a batch without the records `drop` selects; returns how many were dropped. The
    new revision is verified, then its manifest written and verified, before the old manifest
    and file are deleted; an emptied batch disappears with its manifests. An old file or
    manifest that could not be deleted is a leftover: callers run `leftovers_delete`
    afterwards."""
    storage = storage or archive_storage()
    with transaction.atomic():
        _lock_archive()
        # Read again under the lock: another rewrite may have replaced the file meanwhile, or
        # emptied the batch.
        names = _manifest_names(storage).get(manifest.batch)
        if not names:
            return 0
        current = _read_manifest(storage, names[-1])
        records = list(_verified_records(storage, current))
        kept = [r for r in records if not drop(r)]
        dropped = len(records) - len(kept)
        if not dropped:
            return 0
        if not kept:
            # Older revisions' manifests first, the batch's own last: deleted before one of
            # them, it would make that one (and its file, if still there) the batch again. Each
            # failure stops here, with the manifest pointing at its file. The file after the
            # manifests: without them it is a leftover, which the cleanup deletes.
            for name in names:
                storage.delete(name)
            _delete_retrying(storage, current.file)
            ArchiveBatch.objects.filter(name=current.batch).delete()
            return dropped
        rewritten = _write_verified(
            storage, current.batch, current.revision + 1, current.created_at, kept
        )
        _write_manifest(storage, rewritten, superseded=names)
        _delete_retrying(storage, current.file)
        _index(rewritten)
    return dropped


# --- Restoring -------------------------------------------------------------------------------


def _field_values(model: type[models.Model], values: dict[str, Any]) -> dict[str, Any]:
    by_attname = {f.attname: f for f in model._meta.concrete_fields}
    return {
        name: by_attname[name].to_python(value)
        for name, value in values.items()
        if name in by_attname and name != "id"
    }


def _set_timestamps(obj: models.Model, values: dict[str, Any]) -> None:
    by_attname = {f.attname: f for f in obj._meta.concrete_fields}
    for name in _timestamps(type(obj)):
        setattr(obj, name, by_attname[name].to_python(values[name]))


def _existing_users(*ids: Any) -> set[int]:
    wanted = {i for i in ids if i is not None}
    return set(get_user_model().objects.filter(pk__in=wanted).values_list("pk", flat=True))


def _timestamps(model: type[models.Model]) -> list[str]:
    # auto_now / auto_now_add fields are set to "now" on insert: put the archived times back.
    return [
        f.attname
        for f in model._meta.concrete_fields
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
    ]


def _restore_rows(
    model: type[models.Model],
    rows: list[dict[str, Any]],
    conversation: Conversation,
    **links: Callable[[Any], Any],
) -> None:
    """Create the archived `rows` of `model` that hang off a restored conversation (agent
    events, moderation flags), each foreign key named in `links` mapped from its archived value
    to today's, with their archived times."""
    objs = []
    for values in rows:
        fields = _field_values(model, values)
        fields.update({name: link(fields.get(name)) for name, link in links.items()})
        fields["conversation_id"] = conversation.pk
        objs.append(model(**fields))
    created = model._default_manager.bulk_create(objs)
    for obj, values in zip(created, rows, strict=True):
        _set_timestamps(obj, values)
    if created and _timestamps(model):
        model._default_manager.bulk_update(created, _timestamps(model))


def _restore_record(record: dict[str, Any]) -> Conversation:
    conv_values = _field_values(Conversation, record["conversation"])
    if Conversation.objects.filter(public_id=conv_values["public_id"]).exists():
        return Conversation.objects.get(public_id=conv_values["public_id"])
    if not KnowledgeBase.objects.filter(pk=conv_values["knowledge_base_id"]).exists():
        raise ServiceError(
            _("The conversation's knowledge base no longer exists; it cannot be restored."),
            code="knowledge_base_gone",
        )
    customer_values = _field_values(Customer, record["customer"])
    customer = Customer.objects.filter(public_id=customer_values["public_id"]).first()
    if customer is None:
        customer = Customer.objects.create(**customer_values)
        Customer.objects.filter(pk=customer.pk).update(
            **{n: customer_values[n] for n in _timestamps(Customer)}
        )
    users = _existing_users(
        conv_values.get("assigned_agent_id"),
        *(m.get("author_id") for m in record["messages"]),
        *(e.get("actor_id") for e in record["events"]),
        *(e.get("agent_id") for e in record["events"]),
        *(f.get("reviewed_by_id") for f in record.get("flags", [])),
    )

    def user(value: Any) -> Any:
        return value if value in users else None

    # The API key that opened it, while it exists (a key deleted since vouches for nobody).
    api_key_id = conv_values.get("api_key_id")
    if api_key_id is not None and not ApiKey.objects.filter(pk=api_key_id).exists():
        api_key_id = None
    conv_values.update(
        customer_id=customer.pk,
        assigned_agent_id=user(conv_values.get("assigned_agent_id")),
        api_key_id=api_key_id,
    )
    conversation = Conversation.objects.create(**conv_values)
    Conversation.objects.filter(pk=conversation.pk).update(
        **{n: conv_values[n] for n in _timestamps(Conversation)}
    )

    old_ids: list[int] = []
    messages = []
    for values in record["messages"]:
        old_ids.append(values["id"])
        fields = _field_values(Message, values)
        fields.update(
            conversation_id=conversation.pk,
            reply_to_id=None,
            author_id=user(fields.get("author_id")),
        )
        messages.append(Message(**fields))
    created = Message.objects.bulk_create(messages)
    new_ids = dict(zip(old_ids, (m.pk for m in created), strict=True))
    for message, values in zip(created, record["messages"], strict=True):
        _set_timestamps(message, values)
        message.reply_to_id = new_ids.get(values.get("reply_to_id"))
    Message.objects.bulk_update(created, ["reply_to_id", *_timestamps(Message)])

    _restore_rows(ConversationEvent, record["events"], conversation, actor_id=user, agent_id=user)
    # Archives written before flags were kept have none.
    _restore_rows(
        ModerationFlag,
        record.get("flags", []),
        conversation,
        message_id=new_ids.get,
        reviewed_by_id=user,
    )
    ReturnRequest.objects.filter(number__in=record["returns"], conversation__isnull=True).update(
        conversation=conversation
    )
    return conversation


def conversation_restore(public_id: Any) -> Conversation:
    """Bring one archived conversation back into the database, held there for
    COMPLIANCE["RESTORE_HOLD_DAYS"], and take it out of its archive batch. Running it again
    after a failure finishes the job (the conversation is not created twice)."""
    try:
        wanted = str(uuid.UUID(str(public_id)))
    except ValueError:
        raise NotFoundError(_("That is not a conversation id."), code="not_found") from None
    storage = archive_storage()
    found: tuple[Manifest, dict[str, Any]] | None = None
    indexed = set(
        ArchiveBatch.objects.filter(conversation_ids__contains=[wanted]).values_list(
            "name", flat=True
        )
    )
    # The index first; the storage's manifests are the truth when the index is behind.
    candidates = sorted(manifests(storage), key=lambda m: m.batch not in indexed)
    for manifest in candidates:
        if wanted not in manifest.conversation_ids:
            continue
        for record in _verified_records(storage, manifest):
            if record["conversation"]["public_id"] == wanted:
                found = (manifest, record)
                break
        if found:
            break
    if found is None:
        raise NotFoundError(_("No archived conversation has that id."), code="not_found")
    manifest, record = found
    hold_until = timezone.now() + timedelta(days=settings.COMPLIANCE["RESTORE_HOLD_DAYS"])
    with transaction.atomic():
        conversation = _restore_record(record)
        RetentionHold.objects.update_or_create(
            conversation_public_id=conversation.public_id, defaults={"until": hold_until}
        )
    # Only once the restore is committed does the archive let go of it: a failure in between
    # leaves it in both places, never in neither.
    batch_rewrite(manifest, lambda r: r["conversation"]["public_id"] == wanted, storage)
    # An old revision that could not be deleted still holds the conversation: it goes now, with
    # any other leftover.
    leftovers_delete(storage)
    return conversation
