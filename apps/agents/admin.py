"""Agents, their recorded actions and the canned replies in the admin."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from apps.agents.models import AgentProfile, ConversationEvent, Macro


@admin.register(AgentProfile)
class AgentProfileAdmin(admin.ModelAdmin):
    list_display = ("user", "presence", "capacity", "languages", "last_seen_at")
    list_filter = ("presence",)
    search_fields = ("user__username", "user__first_name", "user__last_name")
    list_select_related = ("user",)
    readonly_fields = ("presence", "last_seen_at")


@admin.register(ConversationEvent)
class ConversationEventAdmin(admin.ModelAdmin):
    """Every claim, assignment, transfer and close: read-only, it is the record."""

    list_display = ("created_at", "conversation", "kind", "actor", "agent", "note")
    list_filter = ("kind",)
    search_fields = ("conversation__public_id", "note", "actor__username", "agent__username")
    list_select_related = ("conversation", "actor", "agent")
    readonly_fields = ("conversation", "kind", "actor", "agent", "note", "created_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Macro)
class MacroAdmin(admin.ModelAdmin):
    list_display = ("shortcut", "title", "enabled", "updated_at")
    list_filter = ("enabled",)
    search_fields = ("shortcut", "title", "body_en", "body_zh")
