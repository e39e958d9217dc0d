"""Moderation: the lexicon staff edit, and the flags staff review.

A flag keeps ids and scores only: the message it is about is referenced, never copied, so an
erasure of the conversation removes the words with it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from apps.core.models import TimeStampedModel


class TermLanguage(models.TextChoices):
    ANY = "any", _("Any language")
    ZH = "zh", _("Chinese")
    EN = "en", _("English")


class TermAction(models.TextChoices):
    BLOCK = "block", _("Block")
    FLAG = "flag", _("Flag for review")


class ModerationCategory(models.TextChoices):
    INSULT = "insult", _("Insult or profanity")
    HATE = "hate", _("Hate or discrimination")
    THREAT = "threat", _("Threat or violence")
    SEXUAL = "sexual", _("Sexual content")
    SELF_HARM = "self_harm", _("Self-harm")
    OTHER = "other", _("Other")


class ModerationTerm(TimeStampedModel):
    """A word or phrase the moderator looks for. English terms match whole words (any case);
    Chinese terms match anywhere, also with spaces or punctuation put between the characters."""

    term = models.CharField(_("term"), max_length=100)
    language = models.CharField(
        _("language"), max_length=8, choices=TermLanguage.choices, default=TermLanguage.ANY
    )
    category = models.CharField(
        _("category"),
        max_length=16,
        choices=ModerationCategory.choices,
        default=ModerationCategory.INSULT,
    )
    action = models.CharField(
        _("action"),
        max_length=8,
        choices=TermAction.choices,
        default=TermAction.BLOCK,
        help_text=_(
            "Block: the message is refused (a customer's) or never sent (the bot's). Flag: it "
            "goes through, and staff see it under Moderation flags."
        ),
    )
    enabled = models.BooleanField(_("enabled"), default=True)

    class Meta:
        verbose_name = _("moderation term")
        verbose_name_plural = _("moderation terms")
        ordering = ["language", "term"]
        constraints = [
            models.UniqueConstraint(fields=["term", "language"], name="moderation_term_unique")
        ]

    def __str__(self) -> str:
        return self.term


class FlagDirection(models.TextChoices):
    INPUT = "input", _("Customer message")
    OUTPUT = "output", _("Bot answer")


class FlagSource(models.TextChoices):
    LEXICON = "lexicon", _("Lexicon")
    CLASSIFIER = "classifier", _("Classifier")


class ModerationFlag(models.Model):
    """A message the moderator blocked or flagged, for staff to review.

    `message` is the customer's message: the one blocked (input), or the one whose answer was
    withheld (output; the withheld answer itself is never stored or sent). `score` is the
    classifier's probability that the text is offensive (0 to 1); `blocked` says whether it
    was refused or only flagged.
    """

    conversation = models.ForeignKey(
        "conversations.Conversation",
        on_delete=models.CASCADE,
        related_name="moderation_flags",
        verbose_name=_("conversation"),
    )
    message = models.ForeignKey(
        "conversations.Message",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="moderation_flags",
        verbose_name=_("message"),
    )
    direction = models.CharField(_("direction"), max_length=8, choices=FlagDirection.choices)
    source = models.CharField(_("source"), max_length=16, choices=FlagSource.choices)
    blocked = models.BooleanField(_("blocked"), default=True)
    score = models.FloatField(_("score"), null=True, blank=True)
    categories = models.JSONField(_("categories"), default=list, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True, db_index=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("reviewed by"),
    )
    reviewed_at = models.DateTimeField(_("reviewed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("moderation flag")
        verbose_name_plural = _("moderation flags")
        ordering = ["-created_at"]
        constraints = [
            # A message processed twice (a retry after a crash) is flagged once per direction.
            models.UniqueConstraint(
                fields=["message", "direction"], name="moderation_flag_once_per_message"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_direction_display()} #{self.pk}"
