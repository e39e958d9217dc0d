"""Customers, their conversations, and every message with what the engine decided about it."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from pgvector.django import VectorField

from apps.core import crypto
from apps.core.models import TimeStampedModel
from apps.inference.models import GenerationStatus


class Channel(models.TextChoices):
    WEB = "web", _("Web chat")
    API = "api", _("App API")
    WECHAT = "wechat", _("WeChat")
    EMAIL = "email", _("E-mail")


class Customer(TimeStampedModel):
    """A pseudonymous customer: a random id per channel identity, no name or contact data."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    channel = models.CharField(_("channel"), max_length=16, choices=Channel.choices)
    external_id = models.CharField(
        _("external id"),
        max_length=128,
        blank=True,
        db_index=True,
        help_text=_(
            "A keyed pseudonym of the channel's own id for this customer (an app user id, a "
            "WeChat openid); the id itself is never stored."
        ),
    )
    locale = models.CharField(_("locale"), max_length=16, default="en")

    class Meta:
        verbose_name = _("customer")
        verbose_name_plural = _("customers")

    def __str__(self) -> str:
        return f"{self.channel}:{str(self.public_id)[:8]}"


class ConversationStatus(models.TextChoices):
    BOT = "bot", _("With the bot")
    WAITING_AGENT = "waiting_agent", _("Waiting for an agent")
    AGENT = "agent", _("With an agent")
    CLOSED = "closed", _("Closed")


class Conversation(TimeStampedModel):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="conversations", verbose_name=_("customer")
    )
    knowledge_base = models.ForeignKey(
        "knowledge.KnowledgeBase",
        on_delete=models.PROTECT,
        related_name="conversations",
        verbose_name=_("knowledge base"),
    )
    channel = models.CharField(_("channel"), max_length=16, choices=Channel.choices)
    status = models.CharField(
        _("status"), max_length=16, choices=ConversationStatus.choices, default="bot"
    )
    language = models.CharField(_("language"), max_length=8, default="en")
    intent = models.CharField(_("last intent"), max_length=64, blank=True)
    state = models.JSONField(
        _("dialogue state"),
        default=dict,
        blank=True,
        help_text=_("The open form and its slots, the low-confidence streak."),
    )
    summary = models.TextField(_("summary"), blank=True)
    api_key = models.ForeignKey(
        "audit.ApiKey",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("opened with API key"),
        help_text=_(
            "The integration that opened the conversation through the API, when it sent a key: "
            "it vouches for the customer's external id (an app's signed-in user)."
        ),
    )
    handoff_reason = models.CharField(_("handoff reason"), max_length=64, blank=True)
    handed_off_at = models.DateTimeField(_("handed off at"), null=True, blank=True)
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    last_seq = models.PositiveIntegerField(_("last sequence number"), default=0)
    last_message_at = models.DateTimeField(_("last message at"), null=True, blank=True)
    # With a person (apps.agents): who has it, since when, how it ended, what the customer said.
    assigned_agent = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assigned_conversations",
        verbose_name=_("agent"),
    )
    assigned_at = models.DateTimeField(_("assigned at"), null=True, blank=True)
    first_agent_reply_at = models.DateTimeField(_("first agent reply at"), null=True, blank=True)
    resolution_code = models.CharField(_("resolution"), max_length=32, blank=True)
    csat = models.PositiveSmallIntegerField(_("customer rating (1-5)"), null=True, blank=True)
    csat_at = models.DateTimeField(_("rated at"), null=True, blank=True)

    class Meta:
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")
        ordering = ["-last_message_at", "-pk"]
        indexes = [
            models.Index(fields=["status", "last_message_at"]),
            models.Index(fields=["assigned_agent", "status"]),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} ({self.get_status_display()})"


class Role(models.TextChoices):
    CUSTOMER = "customer", _("Customer")
    BOT = "bot", _("Bot")
    AGENT = "agent", _("Agent")
    SYSTEM = "system", _("System")


class Decision(models.TextChoices):
    ANSWER = "answer", _("Answer from the knowledge base")
    CLARIFY = "clarify", _("Clarifying question")
    TEMPLATE = "template", _("Intent response")
    FORM = "form", _("Form question")
    ACTION = "action", _("Form action")
    FALLBACK = "fallback", _("Not sure")
    HANDOFF = "handoff", _("Handed off")
    AGENT_WAIT = "agent_wait", _("Left for the agent")
    GUARD = "guard", _("Refused (prompt injection or moderation)")


class Rating(models.TextChoices):
    UP = "up", _("Helpful")
    DOWN = "down", _("Not helpful")


class CacheHit(models.TextChoices):
    NONE = "", _("No")
    EXACT = "exact", _("Exact")
    SEMANTIC = "semantic", _("Semantic")


class Message(models.Model):
    """One message. A customer message records what the engine decided about it (intent,
    entities, decision, handoff reason, latency); a bot message records what it was made of
    (sources, confidence, cache hit)."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    seq = models.PositiveIntegerField(_("sequence"))
    role = models.CharField(_("role"), max_length=16, choices=Role.choices)
    # A customer's text is stored with its personal data redacted ("[PHONE]", "[EMAIL]", …);
    # the original, when it held any, only encrypted (DATA_ENCRYPTION_KEY) and only for the
    # retention period (PII["ORIGINAL_RETENTION_DAYS"]), after which a beat task empties it.
    text = models.TextField(_("text"))
    original_encrypted = models.TextField(
        _("original (encrypted)"),
        blank=True,
        editable=False,
        help_text=_("The text as written, encrypted; kept only while personal data is retained."),
    )
    client_id = models.CharField(_("client id"), max_length=64, blank=True)
    reply_to = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replies"
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    processed_at = models.DateTimeField(_("processed at"), null=True, blank=True)
    # What the engine decided.
    language = models.CharField(_("language"), max_length=8, blank=True)
    decision = models.CharField(_("decision"), max_length=16, choices=Decision.choices, blank=True)
    intent = models.CharField(_("intent"), max_length=64, blank=True)
    intent_confidence = models.FloatField(_("intent confidence"), null=True, blank=True)
    entities = models.JSONField(_("entities"), default=list, blank=True)
    sources = models.JSONField(_("sources"), default=list, blank=True)
    choices = models.JSONField(_("quick replies"), default=list, blank=True)
    confidence = models.FloatField(_("confidence"), null=True, blank=True)
    cache_hit = models.CharField(
        _("cache hit"), max_length=16, choices=CacheHit.choices, blank=True
    )
    latency_ms = models.FloatField(_("latency (ms)"), null=True, blank=True)
    handoff_reason = models.CharField(_("handoff reason"), max_length=64, blank=True)
    rating = models.CharField(_("rating"), max_length=8, choices=Rating.choices, blank=True)
    rated_at = models.DateTimeField(_("rated at"), null=True, blank=True)
    # Generated answers (bot messages): what the model pool did and how grounded the text is.
    generation_status = models.CharField(
        _("generation"), max_length=16, choices=GenerationStatus.choices, blank=True
    )
    endpoint = models.CharField(_("model endpoint"), max_length=64, blank=True)
    input_tokens = models.PositiveIntegerField(_("input tokens"), null=True, blank=True)
    output_tokens = models.PositiveIntegerField(_("output tokens"), null=True, blank=True)
    ttft_ms = models.FloatField(_("time to first token (ms)"), null=True, blank=True)
    generation_ms = models.FloatField(_("generation time (ms)"), null=True, blank=True)
    grounding_score = models.FloatField(_("grounding score"), null=True, blank=True)
    grounding_unsupported = models.JSONField(
        _("unsupported spans"),
        default=list,
        blank=True,
        help_text=_("Facts and sentences of the generated answer the sources do not support."),
    )
    generation = models.JSONField(
        _("generation details"),
        default=dict,
        blank=True,
        help_text=_("Attempts, prompt version, errors and the rejected draft, for staff."),
    )

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["conversation", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["conversation", "seq"], name="message_seq_unique"),
            models.UniqueConstraint(
                fields=["conversation", "client_id"],
                condition=~Q(client_id=""),
                name="message_client_id_unique",
            ),
        ]
        indexes = [
            models.Index(
                fields=["created_at"],
                condition=Q(role="customer", processed_at__isnull=True),
                name="message_unprocessed",
            )
        ]

    def __str__(self) -> str:
        return f"{self.conversation_id}#{self.seq} {self.role}: {self.text[:40]}"

    @property
    def redacted(self) -> bool:
        return bool(self.original_encrypted)

    @property
    def original_text(self) -> str:
        """The text as the customer wrote it while the original is kept, else the stored text.
        For the engine and for an agent who asks to see it (audited), never for logs."""
        if not self.original_encrypted:
            return self.text
        try:
            return crypto.decrypt(self.original_encrypted)
        except crypto.DecryptionError:
            return self.text

    @property
    def rateable(self) -> bool:
        return self.role == Role.BOT and self.decision in (Decision.ANSWER, Decision.TEMPLATE)


class SemanticCacheEntry(models.Model):
    """An answer given to a question, found again for a similar question by cosine similarity.
    Entries belong to one index version of the knowledge base (and intent model), so any change
    to either makes them unreachable; the change handler deletes them."""

    knowledge_base = models.ForeignKey(
        "knowledge.KnowledgeBase", on_delete=models.CASCADE, related_name="+"
    )
    language = models.CharField(max_length=8)
    embedder = models.CharField(max_length=128)
    generation = models.CharField(max_length=64)
    question = models.TextField()
    embedding = VectorField()
    answer = models.JSONField()
    # When the answer stops being served: its first source's end of validity (or an article
    # scheduled to open), which passes with no edit and so no new generation.
    expires_at = models.DateTimeField(null=True, blank=True)
    hits = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["knowledge_base", "language", "embedder", "generation"])]

    def __str__(self) -> str:
        return self.question[:60]
