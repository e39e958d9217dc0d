"""The audit log in the admin: read-only for everyone, visible only with audit.view_audit_log
(the "compliance" group) or as a superuser, exportable as CSV."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from apps.audit.keys import OTHER_USER_REFUSED, api_key_create, api_key_revoke
from apps.audit.middleware import request_context, request_id_of
from apps.audit.models import ApiKey, AuditEvent, Scope
from apps.audit.selectors import api_keys_visible_to, audit_csv_lines
from apps.audit.services import audit_record


def _csv_response(request: HttpRequest, events: QuerySet[AuditEvent], how: str) -> Any:
    # Who took a copy of the log is itself worth recording.
    audit_record(
        AuditEvent.Kind.OTHER,
        actor=request.user,
        **request_context(request),
        detail={"action": "audit_export", "how": how, "rows": events.count()},
    )
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    return StreamingHttpResponse(
        audit_csv_lines(events),
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="audit-log-{stamp}.csv"'},
    )


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "created_at",
        "kind",
        "actor",
        "method",
        "endpoint",
        "status",
        "latency_ms",
        "address",
        "request_id",
    )
    list_filter = ("kind", "status")
    date_hierarchy = "created_at"
    search_fields = ("=request_id", "actor", "endpoint", "=ip", "=ip_pseudonym")
    list_per_page = 100
    # Counting a large log on every page is slow; the filtered count is still shown.
    show_full_result_count = False
    actions = ["export_csv"]

    @admin.display(description=_("address"), ordering="ip")
    def address(self, event: AuditEvent) -> str:
        """The IP address, or its pseudonym where the address is a data subject's."""
        return event.ip or event.ip_pseudonym or ""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # has_perm is True for active superusers and False for inactive users.
        return request.user.has_perm("audit.view_audit_log")

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description=_("Export CSV"), permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet[AuditEvent]) -> Any:
        return _csv_response(request, queryset, "selected")

    def get_urls(self) -> list[URLPattern]:
        export = path(
            "export/",
            self.admin_site.admin_view(self.export_view),
            name="audit_auditevent_export",
        )
        return [export, *super().get_urls()]

    def export_view(self, request: HttpRequest) -> Any:
        """The changelist's current filters and search, every matching row, as CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        changelist = self.get_changelist_instance(request)
        return _csv_response(request, changelist.get_queryset(request), "filtered")


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        label=_("scopes"), choices=Scope.choices, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = ApiKey
        fields = ("name", "user", "scopes", "rate_limit", "expires_at")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are made here and shown once, on the page after saving; afterwards only the prefix
    is visible. A key cannot be edited (make a new one), only revoked."""

    form = ApiKeyForm
    list_display = (
        "name",
        "prefix",
        "user",
        "scopes",
        "status",
        "expires_at",
        "last_used_at",
        "created_at",
    )
    list_filter = ("scopes",)
    search_fields = ("name", "=prefix", "user__username")
    readonly_fields = ("prefix", "revoked_at", "last_used_at", "created_by", "created_at")
    actions = ["revoke"]

    @admin.display(description=_("status"))
    def status(self, key: ApiKey) -> str:
        return str({"revoked": _("revoked"), "expired": _("expired")}.get(key.state, _("active")))

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiKey]:
        # The same keys as the admin API shows: a key acts as its user, so a staff member
        # manages (and revokes) only their own unless a superuser.
        return api_keys_visible_to(request.user)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        user = request.user
        if db_field.name == "user" and user.is_authenticated and not user.is_superuser:
            # Only themselves to choose from (and no list of every account to browse); the
            # rule itself is api_key_owner_check's, which api_key_create applies as well.
            kwargs["queryset"] = get_user_model().objects.filter(pk=user.pk)
            kwargs["error_messages"] = {"invalid_choice": OTHER_USER_REFUSED}
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"user": request.user.pk, **super().get_changeform_initial_data(request)}

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None:  # made keys are not edited: their scopes and owner stay as issued
            return (*self.form.Meta.fields, *self.readonly_fields)
        return self.readonly_fields

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            return
        created = api_key_create(
            name=obj.name,
            user=obj.user,
            scopes=list(form.cleaned_data["scopes"]),
            expires_at=obj.expires_at,
            rate_limit=obj.rate_limit,
            created_by=request.user,
            request_id=request_id_of(request),
        )
        obj.pk = created.api_key.pk
        obj.prefix = created.api_key.prefix
        messages.warning(
            request,
            _("The new API key, shown only this once; copy it now: %(key)s") % {"key": created.key},
        )

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    @admin.action(description=_("Revoke the selected keys"), permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        request_id = request_id_of(request)
        revoked = sum(
            api_key_revoke(key, by=request.user, request_id=request_id) for key in queryset
        )
        self.message_user(request, _("%(n)d key(s) revoked.") % {"n": revoked})
