"""Intents with their examples (inline, plus a box to paste many at once) and the classifier
versions with a "Train now" button. Every change goes through `services`."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from apps.core.exceptions import ServiceError
from apps.nlu import actions, services
from apps.nlu.models import ClassifierVersion, Intent, IntentExample


class IntentAdminForm(forms.ModelForm):
    action = forms.ChoiceField(label=_("action"), required=False)
    keywords = forms.CharField(
        label=_("keywords"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text=_(
            "One a line. Used until a classifier is trained: a message containing one of "
            "these (case ignored) gets this intent."
        ),
    )
    new_examples = forms.CharField(
        label=_("add examples"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 80}),
        help_text=_("One a line, in either language; added to the examples below."),
    )

    class Meta:
        model = Intent
        fields = [
            "name",
            "description",
            "is_active",
            "keywords",
            "handoff_policy",
            "response_en",
            "response_zh",
            "slots",
            "action",
            "start_label_en",
            "start_label_zh",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Registered by other apps at start-up, so read when the form is built.
        action_field = self.fields["action"]
        assert isinstance(action_field, forms.ChoiceField)
        action_field.choices = [("", "---------"), *actions.choices()]
        if self.instance.pk and isinstance(self.instance.keywords, list):
            self.initial["keywords"] = "\n".join(self.instance.keywords)

    def clean_keywords(self) -> list[str]:
        value = self.cleaned_data.get("keywords") or ""
        return [line.strip() for line in value.splitlines() if line.strip()]


class IntentExampleInline(admin.TabularInline):
    model = IntentExample
    fields = ["text", "language"]
    readonly_fields = ["language"]
    extra = 1


@admin.register(Intent)
class IntentAdmin(admin.ModelAdmin):
    form = IntentAdminForm
    inlines = [IntentExampleInline]
    list_display = ["name", "is_active", "example_count", "action", "handoff_policy", "updated_at"]
    list_filter = ["is_active", "handoff_policy"]
    search_fields = ["name", "description", "examples__text"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Intent]:
        return super().get_queryset(request).annotate(n_examples=Count("examples"))

    @admin.display(description=_("examples"), ordering="n_examples")
    def example_count(self, intent: Intent) -> int:
        return intent.n_examples  # type: ignore[attr-defined]

    def save_model(self, request: HttpRequest, obj: Intent, form: Any, change: bool) -> None:
        fields = {name: form.cleaned_data[name] for name in services.EDITABLE_FIELDS}
        new_examples = (form.cleaned_data.get("new_examples") or "").splitlines()
        if change:
            current = Intent.objects.get(pk=obj.pk)
            services.intent_update(current, **fields)
            for text in new_examples:
                if text.strip():
                    services.intent_example_add(current, text)
        else:
            created = services.intent_create(**fields, examples=new_examples)
            obj.pk = created.pk
            obj._state.adding = False

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        intent = Intent.objects.get(pk=form.instance.pk)
        # What the admin's change message (history) reads from a saved formset.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for inline_form in formset.forms:
            if not getattr(inline_form, "cleaned_data", None):
                continue
            example = inline_form.instance
            text = inline_form.cleaned_data.get("text", "")
            try:
                if inline_form.cleaned_data.get("DELETE") and example.pk:
                    services.intent_example_delete(example)
                    formset.deleted_objects.append(example)
                elif example.pk and inline_form.has_changed():
                    # The form has already written the new text onto its instance.
                    stored = IntentExample.objects.get(pk=example.pk)
                    services.intent_example_update(stored, text)
                    formset.changed_objects.append((stored, inline_form.changed_data))
                elif not example.pk and text.strip():
                    formset.new_objects.append(services.intent_example_add(intent, text))
            except ServiceError as exc:
                messages.warning(request, exc.message)

    def delete_model(self, request: HttpRequest, obj: Intent) -> None:
        services.intent_delete(obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Intent]) -> None:
        for intent in queryset:
            services.intent_delete(intent)


@admin.register(ClassifierVersion)
class ClassifierVersionAdmin(admin.ModelAdmin):
    change_list_template = "admin/nlu/classifierversion/change_list.html"
    list_display = [
        "number",
        "status",
        "is_active",
        "accuracy_display",
        "macro_f1_display",
        "example_count",
        "intent_count",
        "train_seconds",
        "created_at",
    ]
    list_filter = ["status", "is_active"]
    fields = (
        "number",
        "status",
        "is_active",
        "created_at",
        "finished_at",
        "example_count",
        "intent_count",
        "oos_threshold",
        "train_seconds",
        "labels",
        "metrics",
        "error",
    )
    readonly_fields = fields
    actions = ["make_active"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ClassifierVersion]:
        # The serialised model can be megabytes: never read it for the admin.
        return super().get_queryset(request).defer("model")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("accuracy (CV)"))
    def accuracy_display(self, version: ClassifierVersion) -> str:
        return f"{version.accuracy:.3f}" if version.accuracy is not None else "-"

    @admin.display(description=_("macro F1 (CV)"))
    def macro_f1_display(self, version: ClassifierVersion) -> str:
        return f"{version.macro_f1:.3f}" if version.macro_f1 is not None else "-"

    @admin.action(description=_("Make the selected version active"), permissions=["view"])
    def make_active(self, request: HttpRequest, queryset: QuerySet[ClassifierVersion]) -> None:
        if not request.user.has_perm("nlu.change_intent"):
            raise PermissionDenied
        if queryset.count() != 1:
            self.message_user(request, _("Select exactly one version."), messages.WARNING)
            return
        try:
            version = services.classifier_activate(queryset.get())
        except ServiceError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        self.message_user(request, _("Version %(n)d is active.") % {"n": version.number})

    def get_urls(self) -> list:
        extra = [
            path(
                "train/",
                self.admin_site.admin_view(require_POST(self.train_view)),
                name="nlu_classifierversion_train",
            )
        ]
        return extra + super().get_urls()

    def train_view(self, request: HttpRequest) -> HttpResponse:
        """Queue a retraining on the current examples (runs at once in the embedded mode)."""
        # Whoever may edit intents may retrain on them.
        if not request.user.has_perm("nlu.change_intent"):
            raise PermissionDenied
        services.classifier_retrain_queue(force=True)
        self.message_user(
            request, _("Training queued; the new version appears here when it is ready.")
        )
        return HttpResponseRedirect(reverse("admin:nlu_classifierversion_changelist"))
