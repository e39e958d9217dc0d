"""Moderation in the admin: the lexicon (editable), and the flags staff review."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from apps.safety.models import ModerationFlag, ModerationTerm
from apps.safety.services import moderation_flags_review


@admin.register(ModerationTerm)
class ModerationTermAdmin(admin.ModelAdmin):
    list_display = ("term", "language", "category", "action", "enabled", "updated_at")
    list_editable = ("action", "enabled")
    list_filter = ("enabled", "action", "language", "category")
    search_fields = ("term",)


class ReviewedFilter(admin.SimpleListFilter):
    title = _("reviewed")
    parameter_name = "reviewed"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("no", _("Not yet")), ("yes", _("Reviewed"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("no", "yes"):
            return queryset.filter(reviewed_at__isnull=self.value() == "no")
        return queryset


@admin.register(ModerationFlag)
class ModerationFlagAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "direction",
        "blocked",
        "source",
        "score",
        "categories",
        "conversation_link",
        "reviewed_by",
        "reviewed_at",
    )
    list_filter = (ReviewedFilter, "direction", "source", "blocked")
    list_select_related = ("conversation", "reviewed_by")
    date_hierarchy = "created_at"
    actions = ["mark_reviewed"]
    fields = (
        "created_at",
        "direction",
        "blocked",
        "source",
        "score",
        "categories",
        "conversation_link",
        "message_text",
        "reviewed_by",
        "reviewed_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # flags are made by the moderator only

    @admin.display(description=_("conversation"))
    def conversation_link(self, flag: ModerationFlag) -> str:
        url = reverse("admin:conversations_conversation_change", args=[flag.conversation_id])
        return format_html('<a href="{}">{}</a>', url, flag.conversation)

    @admin.display(description=_("customer's message"))
    def message_text(self, flag: ModerationFlag) -> str:
        # The flag holds no copy: this is the message as stored (and gone once it is erased).
        return flag.message.text if flag.message else "—"

    @admin.action(description=_("Mark as reviewed"))
    def mark_reviewed(self, request: HttpRequest, queryset: QuerySet[ModerationFlag]) -> None:
        count = moderation_flags_review(queryset, request.user)
        self.message_user(
            request, _("%(count)d flags marked as reviewed.") % {"count": count}, messages.SUCCESS
        )
