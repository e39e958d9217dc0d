"""PDFs: the erasure report and the readable access export, rendered with WeasyPrint from
templates. Labels are bilingual (English, then Chinese from the zh_Hans catalog), and the font is
Noto Sans CJK SC (Debian's fonts-noto-cjk), so Chinese text renders."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from apps.agents.models import EventKind
from apps.compliance import stores
from apps.compliance.models import DataSubjectRequest
from apps.safety.models import FlagDirection, ModerationCategory

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
    "order_contacts": stores.OrderContactsStore.label,
    "cache": _("Answer cache questions"),
    "audit_rows": _("Audit log entries naming these ids"),
    "status": _("Status"),
    "summary": _("Summary"),
    "none": _("None"),
    "reason": _("Reason"),
    "form": _("Form (dialogue state)"),
    "events": _("Agent events"),
    "note": _("Note"),
    "flags": _("Moderation flags"),
    "blocked": _("Blocked"),
    "flagged": _("Let through, flagged for review"),
    "admin_history": _("Admin change history"),
    "other": _("Other records"),
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


def _choice(choices: Any, value: str) -> dict[str, str]:
    """A stored choice's label in both languages (the value itself if it is not a choice)."""
    try:
        return bilingual(choices(value).label)
    except ValueError:
        return {"en": value, "zh": ""}


def _state_lines(state: dict[str, Any]) -> list[str]:
    """A conversation's dialogue state as lines a reader can follow: an open form's intent and
    the slot values given, then anything else kept there."""
    lines = []
    for key, value in state.items():
        if key == "form" and isinstance(value, dict):
            slots = ", ".join(f"{k}: {v}" for k, v in value.get("slots", {}).items())
            lines.append(f"{value.get('intent', '')}: {slots}" if slots else value.get("intent"))
            if value.get("skipped"):
                lines.append("skipped: " + ", ".join(map(str, value["skipped"])))
        elif value:  # counters at zero say nothing about the customer
            lines.append(f"{key}: {json.dumps(value, ensure_ascii=False)}")
    return [line for line in lines if line]


def access_export_pdf(request: DataSubjectRequest, export: dict[str, Any]) -> bytes:
    """The readable side of the JSON export: every store's part of it."""
    conversations = [*export.get("conversations", []), *export.get("archives", [])]
    for record in conversations:
        for message in record["messages"]:
            message["when"] = _when(message.get("created_at"))
        for event in record.get("events", []):
            event["when"] = _when(event.get("created_at"))
            event["kind_label"] = _choice(EventKind, event.get("kind", ""))
        record["started"] = _when(record["conversation"].get("created_at"))
        record["state_lines"] = _state_lines(record["conversation"].get("state") or {})
    flags = export.get("moderation_flags", [])
    for flag in flags:
        flag["when"] = _when(flag.get("created_at"))
        flag["direction_label"] = _choice(FlagDirection, flag["direction"])
        flag["category_labels"] = [_choice(ModerationCategory, c) for c in flag["categories"]]
    for entry in export.get("admin_history", []):
        entry["when"] = _when(entry.get("action_time"))
    questions = list(
        dict.fromkeys(
            e["question"]
            for key in ("semantic_cache", "exact_cache")
            for e in export.get(key, [])
            if e["question"]
        )
    )
    other = [
        {
            "label": bilingual(stores.BY_KEY[key].label),
            "lines": [line(item) for item in export.get(key, [])],
        }
        for key, line in (
            ("redis", lambda item: item["key"]),
            ("celery_results", lambda item: f"{item['key']}: {item['value']}"),
            ("exports", lambda item: f"{item['request']} ({_when(item['finished_at'])})"),
        )
        if export.get(key)
    ]
    return _pdf(
        "compliance/access_export.html",
        {
            **_request_context(request),
            "customers": export.get("customers", []),
            "conversations": conversations,
            "flags": flags,
            "returns": export.get("orders", []),
            "order_contacts": export.get("order_contacts", []),
            "questions": questions,
            "admin_history": export.get("admin_history", []),
            "other": other,
            "audit_rows": len(export.get("audit_log", [])),
        },
    )
