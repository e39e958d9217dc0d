"""Human agents: their presence and capacity, what they did to conversations, canned replies."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from apps.core.models import TimeStampedModel


class Presence(models.TextChoices):
    ONLINE = "online", _("Online")
    AWAY = "away", _("Away")
    OFFLINE = "offline", _("Offline")


class AgentProfile(TimeStampedModel):
    """An agent's console state. Automatic assignment picks online agents who speak the
    conversation's language and have fewer open conversations than their capacity."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent_profile"
    )
    presence = models.CharField(
        _("presence"), max_length=16, choices=Presence.choices, default=Presence.OFFLINE
    )
    capacity = models.PositiveSmallIntegerField(
        _("capacity"),
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(50)],
        help_text=_("Conversations this agent handles at once."),
    )
    languages = ArrayField(
        models.CharField(max_length=8),
        default=list,
        blank=True,
        verbose_name=_("languages"),
        help_text=_("Conversation languages this agent takes (zh, en); empty: all."),
    )
    # Refreshed while a console of the agent is open (it pings). An agent not seen for the
    # grace period gets no new conversations and loses theirs to the queue.
    last_seen_at = models.DateTimeField(_("last seen at"), null=True, blank=True)

    class Meta:
        verbose_name = _("agent")
        verbose_name_plural = _("agents")
        permissions = [
            ("use_console", _("Can use the agent console")),
            ("supervise", _("Can see every conversation and reassign them")),
        ]

    def __str__(self) -> str:
        return f"{self.user} ({self.presence})"

    def speaks(self, language: str) -> bool:
        return not self.languages or language in self.languages


class Resolution(models.TextChoices):
    RESOLVED = "resolved", _("Resolved")
    NOT_RESOLVED = "not_resolved", _("Not resolved")
    FOLLOW_UP = "follow_up", _("Needs a follow-up")
    DUPLICATE = "duplicate", _("Duplicate")
    SPAM = "spam", _("Spam or abuse")
    NO_REPLY = "no_reply", _("Customer stopped replying")


class EventKind(models.TextChoices):
    CLAIMED = "claimed", _("Claimed")
    ASSIGNED = "assigned", _("Assigned automatically")
    TRANSFERRED = "transferred", _("Transferred to an agent")
    REQUEUED = "requeued", _("Returned to the queue")
    AGENT_LOST = "agent_lost", _("Agent disconnected: returned to the queue")
    TO_BOT = "to_bot", _("Handed back to the bot")
    CLOSED = "closed", _("Closed")
    RATED = "rated", _("Rated by the customer")


class ConversationEvent(models.Model):
    """What agents and supervisors did to a conversation: every claim, transfer and close."""

    conversation = models.ForeignKey(
        "conversations.Conversation", on_delete=models.CASCADE, related_name="agent_events"
    )
    kind = models.CharField(_("kind"), max_length=16, choices=EventKind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("by"),
    )
    agent = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("agent"),
        help_text=_("The agent the conversation went to (claim, assignment, transfer)."),
    )
    note = models.TextField(_("note"), blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name = _("conversation event")
        verbose_name_plural = _("conversation events")
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.conversation_id}"


class Macro(TimeStampedModel):
    """A canned reply. Agents find it by its shortcut in the composer; placeholders such as
    {order_number}, {agent_name} and {conversation_id} are filled in when it is inserted."""

    shortcut = models.SlugField(_("shortcut"), max_length=40, unique=True)
    title = models.CharField(_("title"), max_length=120)
    body_en = models.TextField(_("text (English)"), blank=True)
    body_zh = models.TextField(_("text (Chinese)"), blank=True)
    enabled = models.BooleanField(_("enabled"), default=True)

    class Meta:
        verbose_name = _("canned reply")
        verbose_name_plural = _("canned replies")
        ordering = ["shortcut"]

    def __str__(self) -> str:
        return f"/{self.shortcut} {self.title}"
