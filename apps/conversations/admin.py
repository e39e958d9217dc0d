"""Conversations in the admin: staff see what was said and why the bot did what it did."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from apps.conversations.models import Conversation, Customer, Message


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    can_delete = False
    fields = (
        "seq",
        "role",
        "text",
        "decision",
        "intent",
        "confidence",
        "cache_hit",
        "generation_status",
        "grounding_score",
        "handoff_reason",
        "latency_ms",
        "rating",
        "created_at",
    )
    readonly_fields = fields
    ordering = ("seq",)

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "status",
        "channel",
        "language",
        "intent",
        "handoff_reason",
        "last_seq",
        "last_message_at",
    )
    list_filter = ("status", "channel", "language", "handoff_reason", "knowledge_base")
    search_fields = ("public_id", "intent", "summary", "messages__text")
    readonly_fields = (
        "public_id",
        "customer",
        "knowledge_base",
        "channel",
        "status",
        "language",
        "intent",
        "state",
        "summary",
        "api_key",
        "handoff_reason",
        "handed_off_at",
        "closed_at",
        "last_seq",
        "last_message_at",
        "created_at",
    )
    inlines = [MessageInline]
    list_select_related = ("customer",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        queryset, _may_have_duplicates = super().get_search_results(request, queryset, search_term)
        return queryset.distinct(), False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Every message with the engine's decision; filter by rating to review bad answers."""

    list_display = (
        "conversation",
        "seq",
        "role",
        "short_text",
        "decision",
        "intent",
        "confidence",
        "cache_hit",
        "generation_status",
        "grounding_score",
        "endpoint",
        "rating",
        "latency_ms",
        "created_at",
    )
    list_filter = (
        "role",
        "decision",
        "generation_status",
        "rating",
        "cache_hit",
        "handoff_reason",
        "language",
        "endpoint",
    )
    search_fields = ("text", "intent")
    list_select_related = ("conversation",)
    readonly_fields = [f.name for f in Message._meta.fields]

    @admin.display(description=_("text"))
    def short_text(self, message: Message) -> str:
        return message.text[:80]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("public_id", "channel", "locale", "created_at")
    list_filter = ("channel", "locale")
    search_fields = ("public_id", "external_id")
    readonly_fields = ("public_id", "created_at")
