"""The model pool and its prompts in the admin. Saves go through the services (the API key is
encrypted there and never shown again)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from apps.inference import selectors, services
from apps.inference.models import ModelEndpoint, PromptConfig


class ModelEndpointForm(forms.ModelForm):
    api_key = forms.CharField(
        label=_("API key"),
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text=_("Stored encrypted and never shown again. Leave empty to keep the current key."),
    )
    remove_api_key = forms.BooleanField(label=_("Remove the stored API key"), required=False)

    class Meta:
        model = ModelEndpoint
        fields = ("name", *services.ENDPOINT_FIELDS)


@admin.register(ModelEndpoint)
class ModelEndpointAdmin(admin.ModelAdmin):
    form = ModelEndpointForm
    list_display = (
        "name",
        "kind",
        "base_url",
        "model",
        "weight",
        "max_concurrency",
        "enabled",
        "healthy",
        "queue_waiting",
        "health_checked_at",
    )
    list_filter = ("kind", "enabled", "healthy")
    search_fields = ("name", "base_url", "model")
    readonly_fields = (
        "has_api_key",
        "healthy",
        "health_error",
        "health_checked_at",
        "queue_waiting",
    )
    actions = ["check_health"]

    @admin.display(boolean=True, description=_("API key stored"))
    def has_api_key(self, endpoint: ModelEndpoint) -> bool:
        return bool(endpoint.api_key_encrypted)

    def save_model(self, request: HttpRequest, obj: ModelEndpoint, form: Any, change: bool) -> None:
        api_key: str | None = form.cleaned_data.get("api_key") or None
        if form.cleaned_data.get("remove_api_key"):
            api_key = ""
        services.endpoint_save(obj, api_key=api_key)
        selectors.pool_reset()

    @admin.action(description=_("Check health now"))
    def check_health(self, request: HttpRequest, queryset: QuerySet[ModelEndpoint]) -> None:
        for endpoint in queryset:
            healthy, error, waiting = services.endpoint_probe(endpoint)
            services.endpoint_health_record(
                endpoint, healthy=healthy, error=error, queue_waiting=waiting
            )
            if healthy:
                self.message_user(request, _("%(name)s is healthy.") % {"name": endpoint.name})
            else:
                self.message_user(
                    request,
                    _("%(name)s is unhealthy: %(error)s") % {"name": endpoint.name, "error": error},
                    level=messages.WARNING,
                )


@admin.register(PromptConfig)
class PromptConfigAdmin(SimpleHistoryAdmin):
    list_display = (
        "__str__",
        "knowledge_base",
        "generation_enabled",
        "grounding_threshold",
        "version",
        "updated_at",
    )
    list_select_related = ("knowledge_base",)
    readonly_fields = ("version", "updated_at")
    fields = (
        "knowledge_base",
        "generation_enabled",
        "system_prompt",
        "instructions",
        "grounding_threshold",
        "max_output_tokens",
        "temperature",
        "first_token_deadline",
        "version",
        "updated_at",
    )

    def save_model(self, request: HttpRequest, obj: PromptConfig, form: Any, change: bool) -> None:
        services.prompt_config_save(obj)
