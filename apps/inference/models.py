"""The language-model pool (OpenAI-compatible servers such as vLLM) and the prompts it is given."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from apps.core import crypto
from apps.core.models import TimeStampedModel


class EndpointKind(models.TextChoices):
    CHAT = "chat", _("Chat completions")
    EMBEDDING = "embedding", _("Embeddings")


def validate_base_url(value: str) -> None:
    # Not URLField: pool members are often bare service names ("http://vllm-0:8000/v1").
    if not value.startswith(("http://", "https://")) or len(value.split("://", 1)[1]) < 1:
        raise ValidationError(_("The base URL starts with http:// or https://."))


class GenerationStatus(models.TextChoices):
    """What became of an answer the pool was asked to generate (kept on the bot message)."""

    NONE = "", _("Not generated")
    GENERATED = "generated", _("Generated")
    REGENERATED = "regenerated", _("Generated on the second try")
    UNGROUNDED = "ungrounded", _("Extractive: generated answer not grounded")
    UNAVAILABLE = "unavailable", _("Extractive: model pool unavailable")
    TIMEOUT = "timeout", _("Extractive: model pool too slow")
    CANCELLED = "cancelled", _("Extractive: customer left")


class ModelEndpoint(TimeStampedModel):
    """One OpenAI-compatible server of the pool. Requests go to the least busy healthy endpoint
    of a kind (outstanding requests divided by weight); `healthy` is kept by the health task."""

    name = models.SlugField(_("name"), max_length=64, unique=True)
    kind = models.CharField(
        _("kind"), max_length=16, choices=EndpointKind.choices, default=EndpointKind.CHAT
    )
    base_url = models.CharField(
        _("base URL"),
        max_length=300,
        validators=[validate_base_url],
        help_text=_("The server's OpenAI API root, e.g. http://vllm-0:8000/v1"),
    )
    model = models.CharField(_("model"), max_length=200, help_text=_("The served model name."))
    weight = models.PositiveSmallIntegerField(
        _("weight"),
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text=_("Relative share of the traffic (a bigger GPU gets a bigger weight)."),
    )
    max_concurrency = models.PositiveIntegerField(
        _("max concurrent requests"), default=32, validators=[MinValueValidator(1)]
    )
    connect_timeout = models.FloatField(
        _("connect timeout (s)"), default=2.0, validators=[MinValueValidator(0.05)]
    )
    request_timeout = models.FloatField(
        _("request timeout (s)"),
        default=60.0,
        validators=[MinValueValidator(0.1)],
        help_text=_("The longest a whole answer may take once it has started."),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    api_key_encrypted = models.TextField(_("API key (encrypted)"), blank=True, editable=False)
    healthy = models.BooleanField(_("healthy"), default=True)
    health_checked_at = models.DateTimeField(_("health checked at"), null=True, blank=True)
    health_error = models.TextField(_("health error"), blank=True)
    queue_waiting = models.PositiveIntegerField(
        _("queued requests"),
        null=True,
        blank=True,
        help_text=_("Requests waiting on the server at the last health check (vLLM /metrics)."),
    )

    class Meta:
        verbose_name = _("model endpoint")
        verbose_name_plural = _("model endpoints")
        ordering = ["kind", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    @property
    def api_key(self) -> str:
        return crypto.decrypt(self.api_key_encrypted)

    @property
    def root_url(self) -> str:
        """The server root, where vLLM serves /health and /metrics."""
        url = self.base_url.rstrip("/")
        return url[: -len("/v1")] if url.endswith("/v1") else url


class PromptConfig(TimeStampedModel):
    """What the model is told. The row without a knowledge base is the default for every base;
    a base's own row overrides it. Every save is a new version (history kept)."""

    knowledge_base = models.OneToOneField(
        "knowledge.KnowledgeBase",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="prompt_config",
        verbose_name=_("knowledge base"),
        help_text=_("Empty: the default for every knowledge base without its own."),
    )
    generation_enabled = models.BooleanField(
        _("generate answers"),
        default=True,
        help_text=_("Off: answers are taken from the best source as written (extractive)."),
    )
    system_prompt = models.TextField(
        _("system prompt"), blank=True, help_text=_("Empty: the built-in system prompt.")
    )
    instructions = models.TextField(
        _("instructions"),
        blank=True,
        help_text=_("Added to the system prompt: tone, brand name, what never to promise."),
    )
    grounding_threshold = models.FloatField(
        _("grounding threshold"),
        default=0.6,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text=_(
            "Share of an answer's sentences that must be supported by the sources; below it the "
            "answer is regenerated once, then replaced by the extractive answer."
        ),
    )
    max_output_tokens = models.PositiveIntegerField(_("max output tokens"), default=400)
    temperature = models.FloatField(
        _("temperature"), default=0.2, validators=[MinValueValidator(0), MaxValueValidator(2)]
    )
    first_token_deadline = models.FloatField(
        _("first-token deadline (s)"),
        default=6.0,
        validators=[MinValueValidator(0.1)],
        help_text=_("Past this without a first token, the customer gets the extractive answer."),
    )
    version = models.PositiveIntegerField(_("version"), default=1, editable=False)
    history = HistoricalRecords()

    class Meta:
        verbose_name = _("prompt")
        verbose_name_plural = _("prompts")
        constraints = [
            models.UniqueConstraint(
                fields=["knowledge_base"],
                name="one_prompt_per_knowledge_base",
                nulls_distinct=False,
            )
        ]

    def __str__(self) -> str:
        base = self.knowledge_base.name if self.knowledge_base is not None else _("default")
        return f"{base} v{self.version}"
