"""Data-subject requests and the archive in the admin, for compliance staff only (the
`compliance.manage_requests` permission, granted to the "compliance" group). Requests are opened
with a form and moved on with buttons (approve, reject, run, download); each calls a service,
which checks the permission and the four-eyes rule and writes the audit log."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from apps.compliance import services, stores
from apps.compliance.models import (
    ArchiveBatch,
    DataSubjectRequest,
    IdentifierKind,
    RequestKind,
    RequestStatus,
)
from apps.conversations.models import Channel
from apps.core.exceptions import ServiceError


class RequestOpenForm(forms.Form):
    kind = forms.ChoiceField(label=_("Kind"), choices=RequestKind.choices)
    identifier_kind = forms.ChoiceField(label=_("Identified by"), choices=IdentifierKind.choices)
    identifier = forms.CharField(
        label=_("Identifier"),
        max_length=320,
        help_text=_(
            "A customer's or conversation's public id or stored pseudonym, a channel's user id, "
            "an e-mail address or a phone number. Stored only as a pseudonym (and encrypted "
            "until the request is done)."
        ),
    )
    channel = forms.ChoiceField(
        label=_("Channel"),
        choices=[("", _("Any channel")), *Channel.choices],
        required=False,
        help_text=_("For a channel id only."),
    )


class ComplianceOnly:
    """View-only admin pages for the compliance permission (superusers have every permission)."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return services.can_manage(request.user)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return services.can_manage(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(DataSubjectRequest)
class DataSubjectRequestAdmin(ComplianceOnly, admin.ModelAdmin):
    list_display = (
        "short_id",
        "kind",
        "identifier_kind",
        "status",
        "requested_by",
        "approved_by",
        "created_at",
        "finished_at",
    )
    list_filter = ("kind", "status", "identifier_kind")
    list_select_related = ("requested_by", "approved_by")
    search_fields = ("=public_id",)
    change_form_template = "admin/compliance/datasubjectrequest/change_form.html"
    fields = (
        "public_id",
        "kind",
        "identifier_kind",
        "channel",
        "identifier_pseudonym",
        "status",
        "requested_by",
        "created_at",
        "approved_by",
        "rejected_by",
        "decided_at",
        "executed_by",
        "started_at",
        "finished_at",
        "subject_display",
        "results_display",
        "verification_display",
        "report_sha256",
        "error",
        "error_detail",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return services.can_manage(request.user)

    @admin.display(description=_("request id"))
    def short_id(self, obj: DataSubjectRequest) -> str:
        return str(obj.public_id)[:8]

    @admin.display(description=_("data subject"))
    def subject_display(self, obj: DataSubjectRequest) -> str:
        subject = obj.subject or {}
        return format_html(
            "{}: {} · {}: {} · {}: {}<br><small>{}</small>",
            gettext("customers"),
            len(subject.get("customers", [])),
            gettext("conversations"),
            len(subject.get("conversations", [])),
            gettext("archived conversations"),
            len(subject.get("archived_conversations", [])),
            ", ".join(subject.get("customers", [])),
        )

    @admin.display(description=_("per-store results"))
    def results_display(self, obj: DataSubjectRequest) -> str:
        if not obj.results:
            return "-"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    store.label,
                    obj.results.get(store.key, {}).get("found", "-"),
                    gettext("kept")
                    if obj.results.get(store.key, {}).get("kept")
                    else obj.results.get(store.key, {}).get("removed", "-"),
                )
                for store in stores.STORES
            ),
        )
        return format_html(
            "<table><tr><th>{}</th><th>{}</th><th>{}</th></tr>{}</table>",
            gettext("Store"),
            gettext("Found"),
            gettext("Removed"),
            rows,
        )

    @admin.display(description=_("verification"))
    def verification_display(self, obj: DataSubjectRequest) -> str:
        if not obj.verification:
            return "-"
        leftovers = [
            f"{stores.BY_KEY[key].label}: {value['found']}"
            for key, value in obj.verification.get("stores", {}).items()
            if key in stores.BY_KEY and (value["found"] or not value["searchable"])
        ]
        if obj.verification.get("ok"):
            return gettext("Passed: nothing found in any store.")
        return gettext("Failed: %(where)s") % {"where": "; ".join(leftovers) or "-"}

    # --- Opening -------------------------------------------------------------------------

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = RequestOpenForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                created = services.data_subject_request_create(
                    user=request.user, **form.cleaned_data
                )
            except ValidationError as exc:
                form.add_error("identifier", exc)
            else:
                messages.success(request, gettext("The request is open."))
                return HttpResponseRedirect(
                    reverse("admin:compliance_datasubjectrequest_change", args=[created.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Open a data-subject request"),
            "form": form,
            "opts": self.opts,
            "four_eyes": settings.COMPLIANCE["FOUR_EYES"],
            **(extra_context or {}),
        }
        return TemplateResponse(
            request, "admin/compliance/datasubjectrequest/open_form.html", context
        )

    # --- Buttons ---------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        def route(suffix: str, view: Any, name: str) -> URLPattern:
            return path(
                f"<int:pk>/{suffix}/",
                self.admin_site.admin_view(view),
                name=f"compliance_datasubjectrequest_{name}",
            )

        return [
            route("approve", self.approve_view, "approve"),
            route("reject", self.reject_view, "reject"),
            route("execute", self.execute_view, "execute"),
            route("download/<str:which>", self.download_view, "download"),
            *super().get_urls(),
        ]

    def _act(self, request: HttpRequest, pk: int, action: Any, done: str) -> HttpResponse:
        if not services.can_manage(request.user):
            raise PermissionDenied
        obj = get_object_or_404(DataSubjectRequest, pk=pk)
        try:
            action(obj, request.user)
        except ServiceError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, done)
        return HttpResponseRedirect(
            reverse("admin:compliance_datasubjectrequest_change", args=[pk])
        )

    def approve_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        return require_POST(
            lambda r: self._act(r, pk, services.data_subject_request_approve, gettext("Approved."))
        )(request)

    def reject_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        return require_POST(
            lambda r: self._act(r, pk, services.data_subject_request_reject, gettext("Rejected."))
        )(request)

    def execute_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        return require_POST(
            lambda r: self._act(
                r, pk, services.data_subject_request_queue, gettext("The request is running.")
            )
        )(request)

    def download_view(self, request: HttpRequest, pk: int, which: str) -> HttpResponse:
        if not services.can_manage(request.user):
            raise PermissionDenied
        obj = get_object_or_404(DataSubjectRequest, pk=pk)
        try:
            data, filename = services.data_subject_request_file(obj, which, request.user)
        except ServiceError as exc:
            messages.error(request, exc.message)
            return HttpResponseRedirect(
                reverse("admin:compliance_datasubjectrequest_change", args=[pk])
            )
        content_type = "application/json" if filename.endswith(".json") else "application/pdf"
        return HttpResponse(
            data,
            content_type=content_type,
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any
    ) -> Any:
        obj = kwargs.get("obj") or context.get("original")
        if obj is not None:
            context["buttons"] = {
                "approve": obj.status == RequestStatus.AWAITING_APPROVAL,
                "reject": obj.status in (RequestStatus.AWAITING_APPROVAL, RequestStatus.APPROVED),
                "execute": obj.status in (RequestStatus.APPROVED, RequestStatus.FAILED),
                "report": bool(obj.report_file),
                "json": bool(obj.export_json_file),
                "pdf": bool(obj.export_pdf_file),
            }
        return super().render_change_form(request, context, *args, **kwargs)


@admin.register(ArchiveBatch)
class ArchiveBatchAdmin(ComplianceOnly, admin.ModelAdmin):
    list_display = ("name", "created_at", "updated_at", "conversations", "messages", "sha256")
    fields = (
        "name",
        "data_file",
        "created_at",
        "updated_at",
        "conversations",
        "messages",
        "sha256",
        "conversation_ids",
    )
    readonly_fields = fields
    search_fields = ("=name",)
