"""Cold storage through the Storage API alone: Django's in-memory storage (no files, no
`.path()`), S3 through django-storages against moto's in-process S3 (a fake of the remote
service; no network), and the production settings building the archive storage from the
environment."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from django.core.files.base import ContentFile
from django.core.files.storage import InMemoryStorage, Storage, storages
from django.utils import timezone
from moto import mock_aws
from storages.backends.s3 import S3Storage

from apps.compliance import retention, selectors, services, stores
from apps.compliance.models import ArchiveBatch, RequestStatus, RetentionHold
from apps.compliance.tests.conftest import (
    close,
    conversation_snapshot,
    old_conversation,
    pdf_layout,
    request_run,
    start,
)
from apps.conversations.models import Conversation, Customer, Message, Role
from apps.conversations.tests.conftest import say
from apps.core.exceptions import NotFoundError

IN_MEMORY = "django.core.files.storage.InMemoryStorage"
EMAIL = "wang.fang@example.com"
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def memory_storages(settings: Any) -> tuple[Storage, Storage]:
    """The archive and the reports/exports each in an in-memory storage of their own."""
    settings.STORAGES = {
        **settings.STORAGES,
        "cold": {"BACKEND": IN_MEMORY},
        "private": {"BACKEND": IN_MEMORY},
    }
    settings.COMPLIANCE = {
        **settings.COMPLIANCE,
        "ARCHIVE_STORAGE": "cold",
        "FILES_STORAGE": "private",
    }
    cold, private = storages["cold"], storages["private"]
    assert isinstance(cold, InMemoryStorage) and isinstance(private, InMemoryStorage)
    return cold, private


def _archived_lines(storage: Storage) -> list[str]:
    """Every archived line, read with the Storage API only (listdir, open)."""
    try:
        _, names = storage.listdir(retention.BATCHES)
    except FileNotFoundError:
        return []
    lines: list[str] = []
    for name in sorted(names):
        with storage.open(f"{retention.BATCHES}/{name}", "rb") as handle:
            lines += gzip.decompress(handle.read()).decode().splitlines()
    return lines


def _archived_with_a_bystander(kb: Any) -> tuple[Conversation, Conversation, Conversation]:
    """The customer's old conversation (their e-mail only in its encrypted original) and a
    bystander's, archived in one batch; the customer's current conversation."""
    old = start(kb, external_id="app-user-42")
    say(old, f"我的邮箱是 {EMAIL}，帮我查一下退款")
    close(old, days_ago=200)
    bystander = start(kb, external_id="app-user-7")
    say(bystander, "运费怎么算")
    close(bystander, days_ago=200)
    assert retention.conversations_archive().conversations == 2
    current = start(kb, external_id="app-user-42")
    say(current, "你好")
    return old, bystander, current


def test_archive_verify_delete_restore_round_trip_in_memory(
    chat_kb: Any, memory_storages: tuple[Storage, Storage]
) -> None:
    cold, _ = memory_storages
    old = old_conversation(chat_kb, "u-1")
    recent = start(chat_kb, external_id="u-2")
    say(recent, "你好")
    close(recent, days_ago=10)
    before = conversation_snapshot(old)

    run = retention.conversations_archive()
    assert (run.conversations, run.messages) == (1, len(before["messages"]))
    assert not Conversation.objects.filter(public_id=old.public_id).exists()
    assert Conversation.objects.filter(pk=recent.pk).exists()
    # In the storage: one batch file and its manifest, the content as the manifest says.
    batch = ArchiveBatch.objects.get()
    assert cold.listdir(retention.MANIFESTS) == ([], [f"{batch.name}.r1.json"])
    with cold.open(f"{retention.MANIFESTS}/{batch.name}.r1.json", "rb") as handle:
        manifest = json.loads(handle.read())
    with cold.open(manifest["file"], "rb") as handle:
        compressed = handle.read()
    assert hashlib.sha256(compressed).hexdigest() == manifest["sha256"] == batch.sha256
    lines = _archived_lines(cold)
    assert len(lines) == manifest["conversations"] == 1
    assert json.loads(lines[0])["conversation"]["public_id"] == str(old.public_id)
    assert "13800138000" not in lines[0]  # the original stays encrypted

    # Read back it verifies; a damaged copy does not, and nothing is restored from it.
    assert [r["conversation"]["public_id"] for _, r in retention.archive_records()] == [
        str(old.public_id)
    ]
    cold.delete(manifest["file"])
    cold.save(manifest["file"], ContentFile(compressed[:-9]))
    with pytest.raises(retention.ArchiveVerificationError, match="SHA-256"):
        retention.conversation_restore(old.public_id)
    assert not Conversation.objects.filter(public_id=old.public_id).exists()
    cold.delete(manifest["file"])
    cold.save(manifest["file"], ContentFile(compressed))

    restored = retention.conversation_restore(old.public_id)
    assert conversation_snapshot(old) == before
    original = restored.messages.filter(role=Role.CUSTOMER, text__contains="尺码").get()
    assert "13800138000" in original.original_text
    # Out of the archive (the emptied batch and its manifest deleted), held from re-archiving.
    assert _archived_lines(cold) == []
    assert cold.listdir(retention.MANIFESTS) == ([], [])
    assert not ArchiveBatch.objects.exists()
    assert RetentionHold.objects.filter(conversation_public_id=old.public_id).exists()
    assert retention.conversations_archive().conversations == 0
    with pytest.raises(NotFoundError):
        retention.conversation_restore(old.public_id)


def test_erasure_finds_and_removes_the_customer_in_an_in_memory_archive(
    chat_kb: Any,
    officers: tuple[Any, Any],
    memory_storages: tuple[Storage, Storage],
    run_on_commit: Any,
) -> None:
    cold, private = memory_storages
    requester, approver = officers
    old, bystander, current = _archived_with_a_bystander(chat_kb)
    customer_id = str(current.customer.public_id)
    assert any(customer_id in line for line in _archived_lines(cold))

    request = services.data_subject_request_create(
        user=requester, kind="erasure", identifier_kind="email", identifier=EMAIL
    )
    assert request.subject["customers"] == [customer_id]
    assert request.subject["archived_conversations"] == [str(old.public_id)]
    services.data_subject_request_approve(request, approver)
    run_on_commit(services.data_subject_request_queue, request, approver)

    request.refresh_from_db()
    assert request.status == RequestStatus.COMPLETED, (request.error, request.error_detail)
    assert request.results["archives"] == {**request.results["archives"], "found": 1, "removed": 1}
    assert request.verification["ok"] is True
    assert request.verification["stores"]["archives"] == {
        "found": 0,
        "searchable": True,
        "details": {"batches": 0},
    }
    # The batch was rewritten without the customer; the bystander is still archived. Every
    # file under batches/ is read here, so no leftover holds the customer either.
    assert retention.unreferenced_files(cold) == []
    lines = _archived_lines(cold)
    assert len(lines) == 1
    assert customer_id not in lines[0] and str(old.public_id) not in lines[0]
    assert json.loads(lines[0])["conversation"]["public_id"] == str(bystander.public_id)
    assert ArchiveBatch.objects.get().conversation_ids == [str(bystander.public_id)]
    assert not Customer.objects.filter(public_id=customer_id).exists()
    assert not Message.objects.filter(conversation__public_id=current.public_id).exists()
    with pytest.raises(NotFoundError):
        retention.conversation_restore(old.public_id)

    # The report is in the in-memory files storage, its SHA-256 the one recorded.
    with private.open(request.report_file, "rb") as handle:
        report = handle.read()
    assert report.startswith(b"%PDF")
    assert hashlib.sha256(report).hexdigest() == request.report_sha256


def _production_settings(var_dir: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    """Load cs_platform.settings.production in a fresh interpreter with only `environment`
    (and the secrets it requires) set; prints the compliance storage settings as JSON."""
    script = (
        "import json; from cs_platform.settings import production as s; "
        "print(json.dumps({'storages': s.STORAGES, "
        "'archive': s.COMPLIANCE['ARCHIVE_STORAGE'], 'files': s.COMPLIANCE['FILES_STORAGE']}))"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", ""),
        "CS_VAR_DIR": str(var_dir),
        "DATABASE_URL": "postgres://user:password@127.0.0.1:9/unused",
        "DJANGO_SECRET_KEY": "test-secret-key",
        "DATA_ENCRYPTION_KEY": "test-data-encryption-key",
        "PSEUDONYM_KEY": "test-pseudonym-key",
        **environment,
    }
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _production_loaded(var_dir: Path, **environment: str) -> dict[str, Any]:
    """The compliance storage settings production builds from `environment` (it must load)."""
    loaded = _production_settings(var_dir, **environment)
    assert loaded.returncode == 0, loaded.stderr
    return json.loads(loaded.stdout.strip().splitlines()[-1])


def test_production_settings_build_the_archive_storage_from_the_environment(
    tmp_path: Path,
) -> None:
    loaded = _production_loaded(tmp_path)
    assert loaded["archive"] == "" and "compliance_archive" not in loaded["storages"]

    bad = _production_settings(
        tmp_path,
        COMPLIANCE_ARCHIVE_STORAGE_BACKEND="storages.backends.s3.S3Storage",
        COMPLIANCE_ARCHIVE_STORAGE_OPTIONS="{bucket_name: archive}",
    )
    assert bad.returncode == 1
    assert "COMPLIANCE_ARCHIVE_STORAGE_OPTIONS is not valid JSON" in bad.stderr

    missing = _production_settings(tmp_path, COMPLIANCE_ARCHIVE_STORAGE_BACKEND="nowhere.Storage")
    assert missing.returncode == 1
    assert "COMPLIANCE_ARCHIVE_STORAGE_BACKEND: no module 'nowhere'" in missing.stderr


def test_production_settings_build_the_reports_and_exports_storage_from_the_environment(
    tmp_path: Path,
) -> None:
    loaded = _production_loaded(tmp_path)
    assert loaded["files"] == "" and "compliance_files" not in loaded["storages"]

    options = {"location": str(tmp_path / "private"), "file_permissions_mode": 0o600}
    loaded = _production_loaded(
        tmp_path,
        COMPLIANCE_FILES_STORAGE_BACKEND="django.core.files.storage.FileSystemStorage",
        COMPLIANCE_FILES_STORAGE_OPTIONS=json.dumps(options),
    )
    assert loaded["files"] == "compliance_files"
    assert loaded["storages"]["compliance_files"] == {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": options,
    }
    assert loaded["archive"] == ""  # each storage on its own

    failures = [
        (
            {"COMPLIANCE_FILES_STORAGE_OPTIONS": "{location: /srv}"},
            "COMPLIANCE_FILES_STORAGE_OPTIONS is not valid JSON",
        ),
        (
            {"COMPLIANCE_FILES_STORAGE_OPTIONS": '["private"]'},
            "COMPLIANCE_FILES_STORAGE_OPTIONS must be a JSON object.",
        ),
        (
            {"COMPLIANCE_FILES_STORAGE_BACKEND": "nowhere.Storage"},
            "COMPLIANCE_FILES_STORAGE_BACKEND: no module 'nowhere'",
        ),
        (
            {"COMPLIANCE_FILES_STORAGE": "private"},
            "Set COMPLIANCE_FILES_STORAGE_BACKEND or COMPLIANCE_FILES_STORAGE, not both.",
        ),
    ]
    for environment, message in failures:
        bad = _production_settings(
            tmp_path,
            **{
                "COMPLIANCE_FILES_STORAGE_BACKEND": "storages.backends.s3.S3Storage",
                **environment,
            },
        )
        assert bad.returncode == 1, environment
        assert message in bad.stderr, (environment, bad.stderr)


@pytest.mark.slow
def test_reports_and_exports_on_s3_as_production_settings_configure_them(
    chat_kb: Any,
    officers: tuple[Any, Any],
    tmp_path: Path,
    settings: Any,
    run_on_commit: Any,
) -> None:
    """Access exports written to, downloaded from and deleted from S3 (moto's in-process S3),
    the storage built by the production settings from the environment."""
    options = {"bucket_name": "cs-compliance", "region_name": "us-east-1", "default_acl": "private"}
    production = _production_loaded(
        tmp_path,
        COMPLIANCE_FILES_STORAGE_BACKEND="storages.backends.s3.S3Storage",
        COMPLIANCE_FILES_STORAGE_OPTIONS=json.dumps(options),
    )
    approver = officers[1]
    conv = start(chat_kb, external_id="app-user-3")
    say(conv, "耳机左边没声音")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="cs-compliance")
        settings.STORAGES = {
            **settings.STORAGES,
            "compliance_files": production["storages"]["compliance_files"],
        }
        settings.COMPLIANCE = {**settings.COMPLIANCE, "FILES_STORAGE": production["files"]}
        request = request_run(officers, run_on_commit, "access", "channel_id", "app-user-3")
        assert request.status == RequestStatus.COMPLETED, (request.error, request.error_detail)

        listed = client.list_objects_v2(Bucket="cs-compliance").get("Contents", [])
        keys = {item["Key"] for item in listed}
        assert keys == {request.export_json_file, request.export_pdf_file}
        stored = client.get_object(Bucket="cs-compliance", Key=request.export_json_file)
        data, _ = services.data_subject_request_file(request, "json", approver)
        assert data == stored["Body"].read()
        assert (
            "耳机左边没声音"
            in json.loads(data)["stores"]["conversations"][0]["messages"][0]["text"]
        )

        later = timezone.now() + timedelta(days=settings.COMPLIANCE["EXPORT_DAYS"] + 1)
        assert services.access_exports_expire(now=later) == 2
        assert client.list_objects_v2(Bucket="cs-compliance").get("KeyCount") == 0


@pytest.fixture
def s3_archive(settings: Any, tmp_path: Path) -> Iterator[Any]:
    """The archive on S3 as production settings configure it from the environment, against
    moto's in-process S3 (moto patches botocore: no request leaves the process)."""
    options = {"bucket_name": "cs-archive", "region_name": "us-east-1", "location": "archive"}
    production = _production_loaded(
        tmp_path,
        COMPLIANCE_ARCHIVE_STORAGE_BACKEND="storages.backends.s3.S3Storage",
        COMPLIANCE_ARCHIVE_STORAGE_OPTIONS=json.dumps(options),
    )
    assert production["archive"] == "compliance_archive"
    assert production["storages"]["compliance_archive"] == {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": options,
    }
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="cs-archive")
        settings.STORAGES = {
            **settings.STORAGES,
            "compliance_archive": production["storages"]["compliance_archive"],
        }
        settings.COMPLIANCE = {**settings.COMPLIANCE, "ARCHIVE_STORAGE": production["archive"]}
        yield client


def _bucket(client: Any) -> dict[str, bytes]:
    listed = client.list_objects_v2(Bucket="cs-archive").get("Contents", [])
    return {
        item["Key"]: client.get_object(Bucket="cs-archive", Key=item["Key"])["Body"].read()
        for item in listed
    }


class ManifestPutFailsS3Storage(S3Storage):
    """S3 whose PutObject of a manifest fails while `failing` is set, after S3 stored the object
    (the answer lost on the way back: the caller cannot tell whether it was written)."""

    failing = False

    def _save(self, name: str, content: Any) -> str:
        saved: str = super()._save(name, content)
        if self.failing and name.startswith(f"{retention.MANIFESTS}/"):
            raise ClientError(
                {
                    "Error": {
                        "Code": "InternalError",
                        "Message": "We encountered an internal error.",
                    }
                },
                "PutObject",
            )
        return saved


def test_a_manifest_put_that_fails_on_s3_leaves_the_batch_its_manifest_and_file(
    chat_kb: Any, s3_archive: Any, settings: Any
) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "compliance_archive": {
            **settings.STORAGES["compliance_archive"],
            "BACKEND": f"{__name__}.ManifestPutFailsS3Storage",
        },
    }
    cold = storages["compliance_archive"]
    assert isinstance(cold, ManifestPutFailsS3Storage)
    old, bystander, _ = _archived_with_a_bystander(chat_kb)
    batch = ArchiveBatch.objects.get()
    before = _bucket(s3_archive)  # the batch's manifest and file
    assert len(before) == 2 and f"archive/{batch.data_file}" in before
    subject = selectors.subject_resolve("email", EMAIL)

    cold.failing = True
    with pytest.raises(ClientError):
        stores.ArchiveStore().erase(subject)

    # The manifest and the file as they were (the new manifest deleted again); the new
    # revision's file is a leftover.
    after = _bucket(s3_archive)
    assert {key: after.get(key) for key in before} == before
    (new_file,) = set(after) - set(before)
    assert new_file.startswith(f"archive/{retention.BATCHES}/{batch.name}.r2")
    assert ArchiveBatch.objects.get().data_file == batch.data_file
    # Still searchable and restorable.
    found = stores.ArchiveStore().find(subject)
    assert (found.count, found.searchable, found.details) == (1, True, {"batches": 1})
    cold.failing = False
    retention.conversation_restore(old.public_id)
    assert Conversation.objects.filter(public_id=old.public_id).exists()
    assert set(_bucket(s3_archive)) == {
        f"archive/{retention.MANIFESTS}/{batch.name}.r2.json",
        f"archive/{retention.BATCHES}/{batch.name}.r2.jsonl.gz",
    }
    assert [r["conversation"]["public_id"] for _, r in retention.archive_records()] == [
        str(bystander.public_id)
    ]


def test_manifests_named_as_earlier_versions_wrote_them_are_still_read_on_s3(
    chat_kb: Any, s3_archive: Any
) -> None:
    first = old_conversation(chat_kb, "u-1")
    second = old_conversation(chat_kb, "u-2")
    assert retention.conversations_archive().conversations == 2
    batch = ArchiveBatch.objects.get()
    both = [str(first.public_id), str(second.public_id)]
    # The manifest as earlier versions stored it, "manifests/<batch>.json" (moved with boto3).
    revision_key = f"archive/{retention.MANIFESTS}/{batch.name}.r1.json"
    old_key = f"archive/{retention.MANIFESTS}/{batch.name}.json"
    body = s3_archive.get_object(Bucket="cs-archive", Key=revision_key)["Body"].read()
    s3_archive.put_object(Bucket="cs-archive", Key=old_key, Body=body)
    s3_archive.delete_object(Bucket="cs-archive", Key=revision_key)

    (manifest,) = retention.manifests()
    assert (manifest.batch, manifest.revision, manifest.conversation_ids) == (batch.name, 1, both)
    assert [r["conversation"]["public_id"] for _, r in retention.archive_records()] == both
    assert retention.unreferenced_files() == []
    cleanup = retention.leftovers_delete()
    assert (cleanup.deleted, cleanup.kept, cleanup.failed) == ([], [], [])
    subject = selectors.subject_resolve("channel_id", "u-2")
    assert subject.archived_conversation_ids == {str(second.public_id)}

    # Rewritten, the batch's next revision has its manifest under its own name, and the
    # old-named one goes.
    retention.conversation_restore(first.public_id)
    assert Conversation.objects.filter(public_id=first.public_id).exists()
    rewritten = {
        f"archive/{retention.MANIFESTS}/{batch.name}.r2.json",
        f"archive/{retention.BATCHES}/{batch.name}.r2.jsonl.gz",
    }
    assert set(_bucket(s3_archive)) == rewritten

    # An old-named manifest beside a later revision's (its deletion failed) is an older
    # revision: passed over, and deleted by the cleanup.
    s3_archive.put_object(Bucket="cs-archive", Key=old_key, Body=body)
    (manifest,) = retention.manifests()
    assert (manifest.revision, manifest.conversation_ids) == (2, [str(second.public_id)])
    assert [r["conversation"]["public_id"] for _, r in retention.archive_records()] == [
        str(second.public_id)
    ]
    cleanup = retention.leftovers_delete()
    assert (cleanup.deleted, cleanup.failed) == ([f"{retention.MANIFESTS}/{batch.name}.json"], [])
    assert set(_bucket(s3_archive)) == rewritten


def test_archive_and_restore_on_s3_through_django_storages(chat_kb: Any, s3_archive: Any) -> None:
    old = old_conversation(chat_kb, "u-1")
    before = conversation_snapshot(old)

    assert retention.conversations_archive().conversations == 1
    assert not Conversation.objects.filter(public_id=old.public_id).exists()
    # What the bucket holds, read with boto3 (not through the platform's code).
    objects = _bucket(s3_archive)
    batch = ArchiveBatch.objects.get()
    manifest_key = f"archive/{retention.MANIFESTS}/{batch.name}.r1.json"
    data_key = f"archive/{batch.data_file}"
    assert set(objects) == {manifest_key, data_key}
    assert (
        json.loads(objects[manifest_key])["sha256"] == hashlib.sha256(objects[data_key]).hexdigest()
    )
    lines = gzip.decompress(objects[data_key]).decode().splitlines()
    assert [json.loads(line)["conversation"]["public_id"] for line in lines] == [str(old.public_id)]

    retention.conversation_restore(old.public_id)
    assert conversation_snapshot(old) == before
    assert _bucket(s3_archive) == {}
    assert not ArchiveBatch.objects.exists()


# --- Leftover batch files ----------------------------------------------------------------------


class FlakyDeleteStorage(InMemoryStorage):
    """An in-memory cold storage whose deletes of the names starting with `failing` (batch
    files unless told) fail `failures` times before they work again, with the error S3 gives
    through django-storages (botocore's ClientError, not an OSError)."""

    def __init__(self, failures: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failures = failures
        self.failing = f"{retention.BATCHES}/"
        self.failed: list[str] = []

    def delete(self, name: str) -> None:
        if name.startswith(self.failing) and self.failures > 0:
            self.failures -= 1
            self.failed.append(name)
            raise ClientError(
                {"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}},
                "DeleteObject",
            )
        super().delete(name)


@pytest.fixture
def flaky_cold(settings: Any) -> FlakyDeleteStorage:
    settings.STORAGES = {**settings.STORAGES, "cold": {"BACKEND": f"{__name__}.FlakyDeleteStorage"}}
    settings.COMPLIANCE = {**settings.COMPLIANCE, "ARCHIVE_STORAGE": "cold"}
    cold = storages["cold"]
    assert isinstance(cold, FlakyDeleteStorage)
    return cold


def _files_holding(storage: Storage, *tokens: str) -> list[str]:
    """Every file under batches/ (manifest or not) whose content holds one of `tokens`."""
    return [
        name
        for name in retention.batch_files(storage)
        if any(t in gzip.decompress(storage.open(name, "rb").read()).decode() for t in tokens)
    ]


def test_a_delete_failing_once_is_tried_again_and_leaves_no_leftover(
    chat_kb: Any,
    officers: tuple[Any, Any],
    flaky_cold: FlakyDeleteStorage,
    run_on_commit: Any,
) -> None:
    old, bystander, current = _archived_with_a_bystander(chat_kb)
    customer_id = str(current.customer.public_id)
    (first,) = retention.batch_files(flaky_cold)
    flaky_cold.failures = 1

    request = request_run(officers, run_on_commit, "erasure", "email", EMAIL)

    # The old revision's delete failed once (as S3 fails: not an OSError) and was tried again.
    assert flaky_cold.failed == [first] and flaky_cold.failures == 0
    assert request.status == RequestStatus.COMPLETED, (request.error, request.error_detail)
    assert request.verification["ok"] is True
    assert request.results["archives"]["removed"] == 1
    # No file under batches/, referenced or not, holds the customer; the bystander's is there.
    assert retention.unreferenced_files(flaky_cold) == []
    assert _files_holding(flaky_cold, customer_id, str(old.public_id), EMAIL) == []
    assert _files_holding(flaky_cold, str(bystander.public_id)) == retention.batch_files(flaky_cold)
    assert first not in retention.batch_files(flaky_cold)


def test_a_leftover_that_cannot_be_deleted_fails_the_verification_and_a_rerun_deletes_it(
    chat_kb: Any,
    officers: tuple[Any, Any],
    flaky_cold: FlakyDeleteStorage,
    run_on_commit: Any,
    tmp_path: Path,
) -> None:
    old, bystander, current = _archived_with_a_bystander(chat_kb)
    customer_id = str(current.customer.public_id)
    (first,) = retention.batch_files(flaky_cold)
    # Every attempt fails: the rewrite's delete of the old revision, then the cleanup's.
    flaky_cold.failures = 2 * retention.DELETE_ATTEMPTS

    request = request_run(officers, run_on_commit, "erasure", "email", EMAIL)

    assert flaky_cold.failed == [first] * (2 * retention.DELETE_ATTEMPTS)
    # The manifest points to the rewritten batch; the old file, still holding the customer,
    # is a leftover no manifest refers to, and the verification found it there.
    assert retention.unreferenced_files(flaky_cold) == [first]
    assert _files_holding(flaky_cold, customer_id) == [first]
    assert request.status == RequestStatus.FAILED
    assert request.verification["ok"] is False
    archives = request.verification["stores"]["archives"]
    assert archives["found"] == 1 and archives["details"]["leftover_files"] == 1
    assert all(
        s["found"] == 0 for key, s in request.verification["stores"].items() if key != "archives"
    )
    assert "Cold-storage archive (conversations)" in request.error
    assert request.identifier_encrypted  # kept, so that it can run again
    with stores.files_storage().open(request.report_file, "rb") as handle:
        report = handle.read()
    path = tmp_path / "report.pdf"
    path.write_bytes(report)
    layout = pdf_layout(path)
    verification = layout[layout.index("Verification: every store searched again") :]
    assert re.search(r"^\s*Cold-storage archive.*?\s1\s+Found\b", verification, re.MULTILINE)
    assert "Verification failed" in verification

    # The storage works again: the same request finds the leftover, deletes it and completes.
    assert flaky_cold.failures == 0
    request = _erasure_again(request, officers, run_on_commit)
    assert request.status == RequestStatus.COMPLETED, (request.error, request.error_detail)
    assert request.verification["ok"] is True
    found = request.results["archives"]
    assert (found["found"], found["removed"], found["details"]) == (
        1,
        1,
        {"batches": 0, "leftover_files": 1},
    )
    assert retention.unreferenced_files(flaky_cold) == []
    assert _files_holding(flaky_cold, customer_id, str(old.public_id), EMAIL) == []
    assert [r["conversation"]["public_id"] for _, r in retention.stored_records()] == [
        str(bystander.public_id)
    ]


def _erasure_again(request: Any, officers: tuple[Any, Any], run_on_commit: Any) -> Any:
    run_on_commit(services.data_subject_request_queue, request, officers[1])
    request.refresh_from_db()
    return request


def test_a_restore_whose_old_file_stays_is_searched_and_the_next_restore_deletes_it(
    chat_kb: Any, flaky_cold: FlakyDeleteStorage
) -> None:
    first_conv = old_conversation(chat_kb, "u-1")
    second_conv = old_conversation(chat_kb, "u-2")
    assert retention.conversations_archive().conversations == 2
    (first,) = retention.batch_files(flaky_cold)
    flaky_cold.failures = 2 * retention.DELETE_ATTEMPTS

    retention.conversation_restore(first_conv.public_id)
    assert Conversation.objects.filter(public_id=first_conv.public_id).exists()
    # The old revision stays behind, holding the restored conversation: the search sees it.
    assert retention.unreferenced_files(flaky_cold) == [first]
    customer = str(Conversation.objects.get(public_id=first_conv.public_id).customer.public_id)
    subject = selectors.subject_resolve("pseudonym", customer)
    assert subject.archived_conversation_ids == {str(first_conv.public_id)}

    # Deletes work again: restoring the other conversation empties the batch, and the leftover
    # goes with it.
    retention.conversation_restore(second_conv.public_id)
    assert retention.batch_files(flaky_cold) == []
    assert retention.manifests(flaky_cold) == []
    assert not ArchiveBatch.objects.exists()


def test_leftovers_are_deleted_unless_they_may_be_the_only_copy(
    chat_kb: Any, memory_storages: tuple[Storage, Storage]
) -> None:
    cold, _ = memory_storages
    kept_conv = old_conversation(chat_kb, "u-1")
    assert retention.conversations_archive().conversations == 1
    batch = ArchiveBatch.objects.get()
    # A rewrite by an earlier version that stopped between deleting the old manifest and
    # writing the new one: the index still lists the batch, its file is the only copy of the
    # conversation.
    cold.delete(f"{retention.MANIFESTS}/{batch.name}.r1.json")
    # An archive run that rolled back (no manifest, no index row), and a damaged one.
    with cold.open(batch.data_file, "rb") as handle:
        data = handle.read()
    stray = cold.save(
        f"{retention.BATCHES}/20200101T000000Z-0badf11e.r1.jsonl.gz", ContentFile(data)
    )
    damaged = cold.save(
        f"{retention.BATCHES}/20200101T000000Z-da3a9ed0.r1.jsonl.gz", ContentFile(b"not gzip")
    )
    subject = selectors.subject_resolve("channel_id", "u-1")
    assert subject.archived_conversation_ids == {str(kept_conv.public_id)}
    found = stores.ArchiveStore().find(subject)
    assert (found.count, found.searchable) == (2, False)
    assert found.details == {"batches": 0, "leftover_files": 2, "unreadable_files": 1}

    cleanup = retention.leftovers_delete(cold, matches=lambda r: stores.record_matches(subject, r))
    assert sorted(cleanup.deleted) == sorted([stray, damaged])
    assert cleanup.kept == [batch.data_file] and cleanup.failed == []
    assert cleanup.matching == 1  # the stray copy's record
    assert retention.batch_files(cold) == [batch.data_file]
    found = stores.ArchiveStore().find(subject)
    assert (found.count, found.searchable, found.details["leftover_files"]) == (1, True, 1)


def test_an_older_manifest_left_behind_is_passed_over_and_deleted_by_the_cleanup(
    chat_kb: Any, flaky_cold: FlakyDeleteStorage
) -> None:
    first_conv = old_conversation(chat_kb, "u-1")
    second_conv = old_conversation(chat_kb, "u-2")
    assert retention.conversations_archive().conversations == 2
    batch = ArchiveBatch.objects.get().name
    (first,) = retention.batch_files(flaky_cold)
    old_manifest = f"{retention.MANIFESTS}/{batch}.r1.json"
    # Every delete fails while the restore runs: the rewrite's of the old manifest and file,
    # then the cleanup's.
    flaky_cold.failing = ""
    flaky_cold.failures = 4 * retention.DELETE_ATTEMPTS

    retention.conversation_restore(first_conv.public_id)

    assert flaky_cold.failures == 0
    assert flaky_cold.listdir(retention.MANIFESTS) == ([], [f"{batch}.r1.json", f"{batch}.r2.json"])
    # The old manifest, pointing at the old file (both conversations), is no second copy of the
    # batch: readers take revision 2, and the old file is a leftover.
    (current,) = retention.manifests(flaky_cold)
    assert (current.revision, current.conversation_ids) == (2, [str(second_conv.public_id)])
    assert [
        (m.revision, r["conversation"]["public_id"])
        for m, r in retention.archive_records(flaky_cold)
    ] == [(2, str(second_conv.public_id))]
    assert retention.unreferenced_files(flaky_cold) == [first]
    customer = str(Conversation.objects.get(public_id=first_conv.public_id).customer.public_id)
    subject = selectors.subject_resolve("pseudonym", customer)
    found = stores.ArchiveStore().find(subject)
    assert (found.count, found.details) == (1, {"batches": 0, "leftover_files": 1})

    # Emptying the batch deletes the older manifest before the batch's own: when that fails,
    # revision 2 stays the batch's manifest (revision 1 does not come back).
    flaky_cold.failing, flaky_cold.failures = old_manifest, 1
    with pytest.raises(ClientError):
        retention.conversation_restore(second_conv.public_id)
    assert retention.manifests(flaky_cold) == [current]

    cleanup = retention.leftovers_delete(flaky_cold)
    assert (cleanup.deleted, cleanup.kept, cleanup.failed) == ([old_manifest, first], [], [])
    assert flaky_cold.listdir(retention.MANIFESTS) == ([], [f"{batch}.r2.json"])
    assert retention.batch_files(flaky_cold) == [current.file]

    retention.conversation_restore(second_conv.public_id)
    assert retention.manifests(flaky_cold) == [] and retention.batch_files(flaky_cold) == []
    assert flaky_cold.listdir(retention.MANIFESTS) == ([], [])
    assert not ArchiveBatch.objects.exists()
