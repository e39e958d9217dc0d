"""PDFs: the erasure report and the readable access export, rendered with WeasyPrint from
templates. Labels are bilingual (English, then Chinese from the zh_Hans catalog), and the font is
Noto Sans CJK SC (Debian's fonts-noto-cjk), so Chinese text renders."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from apps.compliance.models import DataSubjectRequest

LABELS: dict[str, Promise] = {
    "erasure_title": _("Data erasure report"),
    "access_title": _("Personal data export"),
    "request_id": _("Request id"),
    "kind": _("Kind"),
    "identified_by": _("Identified by"),
    "requested": _("Requested by"),
    "approved": _("Approved by"),
    "executed": _("Executed by"),
    "started": _("Started"),
    "finished": _("Finished"),
    "subject": _("Data subject (pseudonymous ids)"),
    "customers": _("Customers"),
    "conversations": _("Conversations"),
    "archived": _("Archived conversations"),
    "stores": _("Found and removed, per store"),
    "store": _("Store"),
    "found": _("Found"),
    "removed": _("Removed"),
    "kept": _("kept"),
    "verification": _("Verification: every store searched again"),
    "found_after": _("Found afterwards"),
    "result": _("Result"),
    "passed": _("Nothing found"),
    "failed": _("Found"),
    "not_searchable": _("Cannot be searched"),
    "verified_ok": _("Verification passed: nothing of the data subject was found in any store."),
    "verified_failed": _("Verification failed: data was still found (see above)."),
    "identifier_again": _("The identifier, resolved again"),
    "sha_note": _(
        "The SHA-256 of this file is recorded in the audit log with the request id "
        "(kind: data-subject request)."
    ),
    "generated": _("Generated"),
    "messages": _("Messages"),
    "time": _("Time"),
    "role": _("Role"),
    "text": _("Text as written"),
    "returns": _("Returns"),
    "cache": _("Answer cache questions"),
    "audit_rows": _("Audit log entries naming these ids"),
    "status": _("Status"),
    "summary": _("Summary"),
    "none": _("None"),
    "reason": _("Reason"),
}


def bilingual_render(render: Callable[[], str]) -> dict[str, str]:
    """What `render` says in English, then in Chinese ("" where the catalog has no translation:
    the report then shows the English once)."""
    with translation.override("en"):
        en = render()
    with translation.override("zh-hans"):
        zh = render()
    return {"en": en, "zh": zh if zh != en else ""}


def bilingual(text: Any) -> dict[str, str]:
    """A lazy string in English and Chinese."""
    return bilingual_render(lambda: str(text))


def _labels() -> dict[str, dict[str, str]]:
    return {key: bilingual(text) for key, text in LABELS.items()}


def _when(value: datetime | str | None) -> str:
    if not value:
        return "-"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S %Z")


def person(user: Any) -> str:
    if user is None:
        return "-"
    name = user.get_full_name()
    return f"{name} ({user.get_username()})" if name else user.get_username()


def _pdf(template: str, context: dict[str, Any]) -> bytes:
    import weasyprint  # heavy (Pango, fonts): only where a PDF is made

    html = render_to_string(template, {"l": _labels(), **context})
    return weasyprint.HTML(string=html).write_pdf()


def _request_context(request: DataSubjectRequest) -> dict[str, Any]:
    return {
        "request": request,
        "kind": bilingual(request.get_kind_display()),
        "identified_by": bilingual(request.get_identifier_kind_display()),
        "requested_by": person(request.requested_by),
        "requested_at": _when(request.created_at),
        "approved_by": person(request.approved_by),
        "approved_at": _when(request.decided_at),
        "executed_by": person(request.executed_by),
        "started_at": _when(request.started_at),
        "generated_at": _when(timezone.now()),
    }


def erasure_report_pdf(
    request: DataSubjectRequest,
    *,
    rows: list[dict[str, Any]],
    verification: dict[str, Any],
    finished_at: datetime,
) -> bytes:
    """`rows`: one per store, {label, found, removed, kept, after, searchable} (label already
    a bilingual pair)."""
    subject = request.subject or {}
    return _pdf(
        "compliance/erasure_report.html",
        {
            **_request_context(request),
            "finished_at": _when(finished_at),
            "customers": subject.get("customers", []),
            "conversations": len(subject.get("conversations", [])),
            "archived": len(subject.get("archived_conversations", [])),
            "rows": rows,
            "verification": verification,
        },
    )


def access_export_pdf(request: DataSubjectRequest, export: dict[str, Any]) -> bytes:
    conversations = [*export.get("conversations", []), *export.get("archives", [])]
    for record in conversations:
        for message in record["messages"]:
            message["when"] = _when(message.get("created_at"))
        record["started"] = _when(record["conversation"].get("created_at"))
    return _pdf(
        "compliance/access_export.html",
        {
            **_request_context(request),
            "customers": export.get("customers", []),
            "conversations": conversations,
            "returns": export.get("orders", []),
            "questions": export.get("semantic_cache", []),
            "audit_rows": len(export.get("audit_log", [])),
        },
    )
