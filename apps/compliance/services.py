"""Data-subject requests: open, approve (four eyes), reject, queue, run (access export or
erasure with verification and a PDF report), fail. Every step is recorded in the audit log with
pseudonymous ids and counts only.

The stores themselves (what is searched, erased and exported where) are in `stores`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.compliance import identifiers, reports, selectors, stores
from apps.compliance.models import (
    DataSubjectRequest,
    IdentifierKind,
    RequestKind,
    RequestStatus,
)
from apps.conversations.models import Channel
from apps.core import crypto
from apps.core.exceptions import ServiceError

logger = logging.getLogger(__name__)

PERMISSION = "compliance.manage_requests"

T = TypeVar("T")


def can_manage(user: Any) -> bool:
    return bool(user is not None and user.is_active and user.has_perm(PERMISSION))


def _require(user: Any) -> None:
    if not can_manage(user):
        raise PermissionDenied


def _audit(
    request: DataSubjectRequest, action: str, *, actor: Any = None, **detail: Any
) -> AuditEvent:
    return audit_record(
        AuditEvent.Kind.DATA_SUBJECT_REQUEST,
        actor=actor,
        detail={
            "action": action,
            "request": str(request.public_id),
            "kind": request.kind,
            "identifier_kind": request.identifier_kind,
            **detail,
        },
    )


def _subject(request: DataSubjectRequest) -> selectors.Subject:
    """What the request's identifier leads to now, with the customers earlier runs recorded."""
    return selectors.subject_resolve(
        request.identifier_kind,
        crypto.decrypt(request.identifier_encrypted),
        channel=request.channel,
        known=request.subject,
    )


def data_subject_request_create(
    *, user: Any, kind: str, identifier_kind: str, identifier: str, channel: str = ""
) -> DataSubjectRequest:
    """Open a request. With four eyes (COMPLIANCE["FOUR_EYES"]) it waits for a second
    compliance user's approval; without, the requester's own opening approves it. The
    identifier is resolved now so that the approver sees what it leads to."""
    _require(user)
    if kind not in RequestKind.values:
        raise ValidationError(_("Unknown request kind."))
    if identifier_kind not in IdentifierKind.values:
        raise ValidationError(_("Unknown kind of identifier."))
    if channel and channel not in Channel.values:
        raise ValidationError(_("Unknown channel."))
    value = identifiers.normalise(identifier_kind, identifier)
    subject = selectors.subject_resolve(identifier_kind, value, channel=channel)
    four_eyes = settings.COMPLIANCE["FOUR_EYES"]
    now = timezone.now()
    with transaction.atomic():
        request = DataSubjectRequest.objects.create(
            kind=kind,
            identifier_kind=identifier_kind,
            channel=channel if identifier_kind == IdentifierKind.CHANNEL_ID else "",
            identifier_pseudonym=identifiers.identifier_pseudonym(identifier_kind, value),
            identifier_encrypted=crypto.encrypt(value),
            requested_by=user,
            status=RequestStatus.AWAITING_APPROVAL if four_eyes else RequestStatus.APPROVED,
            approved_by=None if four_eyes else user,
            decided_at=None if four_eyes else now,
            subject=subject.as_record(),
        )
        _audit(
            request,
            "create",
            actor=user,
            four_eyes=four_eyes,
            customers=len(subject.customer_ids),
            conversations=len(subject.conversation_ids),
            archived_conversations=len(subject.archived_conversation_ids),
        )
    return request


def _locked(request: DataSubjectRequest | int) -> DataSubjectRequest:
    pk = request.pk if isinstance(request, DataSubjectRequest) else request
    return DataSubjectRequest.objects.select_for_update().get(pk=pk)


def data_subject_request_approve(
    request: DataSubjectRequest | int, user: Any
) -> DataSubjectRequest:
    _require(user)
    with transaction.atomic():
        locked = _locked(request)
        if locked.status != RequestStatus.AWAITING_APPROVAL:
            raise ServiceError(_("Only a request awaiting approval can be approved."), code="state")
        if settings.COMPLIANCE["FOUR_EYES"] and locked.requested_by_id == user.pk:
            raise ServiceError(
                _("A second compliance user must approve: you opened this request."),
                code="four_eyes",
            )
        locked.status = RequestStatus.APPROVED
        locked.approved_by = user
        locked.decided_at = timezone.now()
        locked.save(update_fields=["status", "approved_by", "decided_at"])
        _audit(locked, "approve", actor=user)
    return locked


def data_subject_request_reject(request: DataSubjectRequest | int, user: Any) -> DataSubjectRequest:
    _require(user)
    with transaction.atomic():
        locked = _locked(request)
        if locked.status not in (RequestStatus.AWAITING_APPROVAL, RequestStatus.APPROVED):
            raise ServiceError(_("This request can no longer be rejected."), code="state")
        locked.status = RequestStatus.REJECTED
        locked.rejected_by = user
        locked.decided_at = timezone.now()
        locked.identifier_encrypted = ""  # a closed request keeps only the pseudonym
        locked.save(update_fields=["status", "rejected_by", "decided_at", "identifier_encrypted"])
        _audit(locked, "reject", actor=user)
    return locked


def data_subject_request_queue(request: DataSubjectRequest | int, user: Any) -> DataSubjectRequest:
    """Run an approved (or failed) request in Celery once this transaction commits."""
    _require(user)
    from apps.compliance.tasks import data_subject_request_run_task

    with transaction.atomic():
        locked = _locked(request)
        if locked.status not in (RequestStatus.APPROVED, RequestStatus.FAILED):
            raise ServiceError(_("Only an approved request can be run."), code="state")
        if locked.status == RequestStatus.FAILED:
            locked.status = RequestStatus.APPROVED
        locked.executed_by = user
        locked.error = ""
        locked.error_detail = ""
        locked.save(update_fields=["status", "executed_by", "error", "error_detail"])
        _audit(locked, "execute", actor=user)
        pk = locked.pk
        transaction.on_commit(lambda: data_subject_request_run_task.delay(pk))
    return locked


def data_subject_request_run(request_id: int) -> DataSubjectRequest | None:
    """The task's work: take an approved request (once), run it, record the outcome. Returns
    None when there was nothing to do (already running or done)."""
    with transaction.atomic():
        request = DataSubjectRequest.objects.select_for_update().filter(pk=request_id).first()
        if request is None or request.status != RequestStatus.APPROVED:
            return None
        request.status = RequestStatus.RUNNING
        request.started_at = timezone.now()
        request.save(update_fields=["status", "started_at"])
    try:
        if request.kind == RequestKind.ERASURE:
            return erasure_request_execute(request)
        return access_request_execute(request)
    except Exception as exc:
        # Any failure (a store unreachable, a damaged archive) ends in a recorded, re-runnable
        # "failed" state rather than a request stuck "running". Staff read a summary naming the
        # store; the error itself (its text may name hosts, files or data) goes to the log only,
        # and is re-raised so that the task shows as failed.
        logger.exception("data-subject request %s failed", request.public_id)
        failure = exc if isinstance(exc, stores.StoreFailure) else None
        cause = exc.__cause__ if failure and exc.__cause__ else exc
        data_subject_request_failed(
            request.pk,
            failure_summary(failure),
            detail=(f"{failure} " if failure else "") + _error_type(cause),
            store=failure.store.key if failure else "",
            step=failure.step if failure else "",
        )
        raise


def _error_type(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


def failure_summary(failure: stores.StoreFailure | None) -> str:
    """What staff read about a failed run: which store, at which step, what it left behind.

    The erasure's steps: every store is searched first (a failure there changes nothing); then
    the stores outside the database are erased one by one (each one's erasure stays done), then
    the database stores in one transaction (a failure rolls all of them back); then the search
    again. Every step can run again, so the answer is always to run the request again."""
    if failure is None:
        return _(
            "The request stopped on an unexpected error (its type is under technical detail, "
            "the error itself in the worker's log). It can run again."
        )
    store = str(failure.store.label)
    if failure.step == "search":
        return _(
            "The request stopped before changing anything: “%(store)s” could not be searched. "
            "Run it again once that store is reachable."
        ) % {"store": store}
    if failure.step == "erase":
        return _(
            "The erasure stopped: “%(store)s” could not be erased. The stores erased before it "
            "stay erased; the customer's data in the database is unchanged. Run it again once "
            "that store is reachable: it finishes the erasure."
        ) % {"store": store}
    if failure.step == "verify":
        return _(
            "The erasure ran, but “%(store)s” could not be searched again to verify it. Run it "
            "again once that store is reachable."
        ) % {"store": store}
    return _(
        "The export stopped: “%(store)s” could not be read. Run it again once that store is "
        "reachable."
    ) % {"store": store}


def data_subject_request_failed(
    request_id: int, error: str, *, detail: str = "", store: str = "", step: str = ""
) -> None:
    """Record a failed run: `error` for staff (translated), `detail` the technical side (the
    store, the step, the error's type; never its text), `store` and `step` for the audit log."""
    with transaction.atomic():
        request = _locked(request_id)
        request.status = RequestStatus.FAILED
        request.finished_at = timezone.now()
        request.error = error[:2000]
        request.error_detail = detail[:255]
        request.save(update_fields=["status", "finished_at", "error", "error_detail"])
        _audit(request, "failed", store=store, step=step)


def _in_store(
    store: stores.Store, step: str, call: Callable[[selectors.Subject], T], subject: Any
) -> T:
    """Run one store's step; any error becomes a StoreFailure naming the store and the step."""
    try:
        return call(subject)
    except Exception as exc:
        raise stores.StoreFailure(store, step) from exc


def _files_name(request: DataSubjectRequest, filename: str) -> str:
    return f"requests/{request.public_id}/{filename}"


def _save_file(request: DataSubjectRequest, filename: str, data: bytes) -> str:
    storage = stores.files_storage()
    name = _files_name(request, filename)
    if storage.exists(name):
        storage.delete(name)
    return storage.save(name, ContentFile(data))


def erasure_request_execute(request: DataSubjectRequest) -> DataSubjectRequest:
    """Erase the subject from every store, search every store again, write the PDF report and
    record its SHA-256 in the audit log. Verification finding anything leaves the request
    "failed" (with its report) so that it can be run again."""
    subject = _subject(request)
    found = {store.key: _in_store(store, "search", store.find, subject) for store in stores.STORES}
    removed: dict[str, int] = {}
    for key in stores.EXTERNAL_ERASE_ORDER:
        store = stores.BY_KEY[key]
        removed[key] = _in_store(store, "erase", store.erase, subject)
    with transaction.atomic():
        for key in stores.DATABASE_ERASE_ORDER:
            store = stores.BY_KEY[key]
            removed[key] = _in_store(store, "erase", store.erase, subject)

    verification = erasure_verify(subject)
    finished = timezone.now()
    results = {
        store.key: {
            "found": found[store.key].count,
            "removed": removed.get(store.key, 0),
            "kept": store.kept,
            "details": found[store.key].details,
        }
        for store in stores.STORES
    }
    request.subject = subject.as_record()
    rows = [
        {
            "label": reports.bilingual(store.label),
            "found": results[store.key]["found"],
            "removed": results[store.key]["removed"],
            "kept": store.kept,
            "note": reports.bilingual_render(partial(store.note, found[store.key].details)),
            "after": verification["stores"][store.key]["found"],
            "searchable": verification["stores"][store.key]["searchable"],
        }
        for store in stores.STORES
    ]
    pdf = reports.erasure_report_pdf(
        request, rows=rows, verification=verification, finished_at=finished
    )
    digest = hashlib.sha256(pdf).hexdigest()
    report_file = _save_file(request, "erasure-report.pdf", pdf)
    with transaction.atomic():
        request.status = RequestStatus.COMPLETED if verification["ok"] else RequestStatus.FAILED
        request.finished_at = finished
        request.results = results
        request.verification = verification
        request.report_file = report_file
        request.report_sha256 = digest
        request.error = "" if verification["ok"] else verification_failure(verification)
        if verification["ok"]:
            request.identifier_encrypted = ""
        request.save(
            update_fields=[
                "status",
                "finished_at",
                "results",
                "verification",
                "report_file",
                "report_sha256",
                "error",
                "identifier_encrypted",
                "subject",
            ]
        )
        _audit(
            request,
            "erasure_completed" if verification["ok"] else "erasure_verification_failed",
            actor=request.executed_by,
            customers=sorted(subject.customer_ids),
            removed={key: value["removed"] for key, value in results.items()},
            verified=verification["ok"],
            report_sha256=digest,
        )
    return request


def verification_failure(verification: dict[str, Any]) -> str:
    """What staff read when the verification found something: the stores, by name."""
    where = [
        str(store.label)
        for store in stores.STORES
        if verification["stores"][store.key]["found"]
        or not verification["stores"][store.key]["searchable"]
    ]
    if verification["resolved_again"]:
        where.append(_("the identifier still leads to a customer"))
    return _(
        "Verification found data afterwards, or could not search, in: %(stores)s. Run the "
        "request again: it erases what was left."
    ) % {"stores": "; ".join(where)}


def erasure_verify(subject: selectors.Subject) -> dict[str, Any]:
    """Search every store again for the subject (ids, pseudonyms, the texts, the identifier
    itself) and resolve the identifier again: everything must come back empty."""
    per_store = {}
    for store in stores.STORES:
        result = _in_store(store, "verify", store.verify, subject)
        per_store[store.key] = {
            "found": result.count,
            "searchable": result.searchable,
            "details": result.details,
        }
    again = selectors.subject_resolve(
        subject.identifier_kind, subject.value, channel=subject.channel
    )
    resolved_again = len(again.customer_pks) + len(again.archived_conversation_ids)
    ok = resolved_again == 0 and all(
        r["found"] == 0 and r["searchable"] for r in per_store.values()
    )
    return {
        "ok": ok,
        "checked_at": timezone.now().isoformat(),
        "resolved_again": resolved_again,
        "stores": per_store,
    }


def access_request_execute(request: DataSubjectRequest) -> DataSubjectRequest:
    """Collect everything held about the subject into a JSON file and a readable PDF."""
    subject = _subject(request)
    export: dict[str, Any] = {}
    results: dict[str, Any] = {}
    for store in stores.STORES:
        found = _in_store(store, "search", store.find, subject)
        results[store.key] = {
            "found": found.count,
            "removed": 0,
            "kept": True,
            "details": found.details,
        }
        data = _in_store(store, "export", store.export, subject)
        if data is not None:
            export[store.key] = data
    request.subject = subject.as_record()
    document = {
        "request": str(request.public_id),
        "generated_at": timezone.now().isoformat(),
        "identifier_kind": request.identifier_kind,
        "stores": export,
    }
    data = json.dumps(document, ensure_ascii=False, indent=1).encode()
    pdf = reports.access_export_pdf(request, export)
    json_file = _save_file(request, "access-export.json", data)
    pdf_file = _save_file(request, "access-export.pdf", pdf)
    with transaction.atomic():
        request.status = RequestStatus.COMPLETED
        request.finished_at = timezone.now()
        request.results = results
        request.export_json_file = json_file
        request.export_pdf_file = pdf_file
        request.identifier_encrypted = ""
        request.save(
            update_fields=[
                "status",
                "finished_at",
                "results",
                "export_json_file",
                "export_pdf_file",
                "identifier_encrypted",
                "subject",
            ]
        )
        _audit(
            request,
            "access_export_completed",
            actor=request.executed_by,
            customers=sorted(subject.customer_ids),
            found={key: value["found"] for key, value in results.items()},
            json_sha256=hashlib.sha256(data).hexdigest(),
            pdf_sha256=hashlib.sha256(pdf).hexdigest(),
        )
    return request


def data_subject_request_file(
    request: DataSubjectRequest, which: str, user: Any
) -> tuple[bytes, str]:
    """The report or an export file's bytes and its download name; the download is audited
    (an export is a copy of personal data leaving the platform)."""
    _require(user)
    names = {
        "report": (request.report_file, "erasure-report-{}.pdf"),
        "json": (request.export_json_file, "access-export-{}.json"),
        "pdf": (request.export_pdf_file, "access-export-{}.pdf"),
    }
    if which not in names or not names[which][0]:
        raise ServiceError(_("There is no such file for this request."), code="no_file")
    name, download = names[which]
    with stores.files_storage().open(name, "rb") as handle:
        data = handle.read()
    _audit(request, "download", actor=user, file=which, sha256=hashlib.sha256(data).hexdigest())
    return data, download.format(request.public_id)


def access_exports_expire(*, now: datetime | None = None) -> int:
    """Delete access exports older than COMPLIANCE["EXPORT_DAYS"]: they are copies of personal
    data, made to be downloaded, not kept. Returns how many files were deleted."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.COMPLIANCE["EXPORT_DAYS"])
    storage = stores.files_storage()
    removed = 0
    expired = DataSubjectRequest.objects.filter(finished_at__lt=cutoff).exclude(
        export_json_file="", export_pdf_file=""
    )
    for request in expired:
        removed += stores.export_files_delete(request, storage)
        _audit(request, "access_export_expired")
    return removed
