from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from apps.core.models import TimeStampedModel


class HandoffPolicy(models.TextChoices):
    NEVER = "never", _("Never")
    ALWAYS = "always", _("Always: hand off as soon as the intent is recognised")


class SlotEntity(models.TextChoices):
    ORDER_NUMBER = "order_number", _("Order number")
    PHONE = "phone", _("Phone number")
    EMAIL = "email", _("Email address")
    AMOUNT = "amount", _("Amount of money")
    DATE = "date", _("Date")
    TEXT = "text", _("Free text")
    PHOTO = "photo", _("Photo")


SLOT_KEYS = {"name", "entity", "required", "prompt_en", "prompt_zh"}


def slots_errors(slots: Any) -> list[str]:
    """What is wrong with a slots list (empty when it is valid). Each slot is
    `{"name", "entity", "required", "prompt_en", "prompt_zh"}`; names are unique."""
    if not isinstance(slots, list):
        return [gettext("Slots must be a list.")]
    errors: list[str] = []
    names: set[str] = set()
    for n, slot in enumerate(slots, start=1):
        if not isinstance(slot, dict):
            errors.append(gettext("Slot %(n)d is not an object.") % {"n": n})
            continue
        unknown = set(slot) - SLOT_KEYS
        if unknown:
            errors.append(
                gettext("Slot %(n)d has unknown keys: %(keys)s")
                % {"n": n, "keys": ", ".join(sorted(unknown))}
            )
        name = slot.get("name")
        if not isinstance(name, str) or not name.isidentifier():
            errors.append(gettext("Slot %(n)d needs a name of letters, digits and _.") % {"n": n})
        elif name in names:
            errors.append(gettext("Slot name %(name)s is used twice.") % {"name": name})
        else:
            names.add(name)
        if slot.get("entity") not in SlotEntity.values:
            errors.append(
                gettext("Slot %(n)d: entity must be one of %(choices)s.")
                % {"n": n, "choices": ", ".join(SlotEntity.values)}
            )
        if not isinstance(slot.get("required", False), bool):
            errors.append(gettext("Slot %(n)d: required must be true or false.") % {"n": n})
        for key in ("prompt_en", "prompt_zh"):
            if not isinstance(slot.get(key, ""), str):
                errors.append(gettext("Slot %(n)d: %(key)s must be text.") % {"n": n, "key": key})
        if slot.get("required") and not (slot.get("prompt_en") and slot.get("prompt_zh")):
            errors.append(
                gettext("Slot %(n)d is required, so it needs prompt_en and prompt_zh.") % {"n": n}
            )
    return errors


class Intent(TimeStampedModel):
    name = models.SlugField(_("name"), max_length=64, unique=True)
    description = models.TextField(_("description"), blank=True)
    keywords = models.JSONField(
        _("keywords"),
        default=list,
        blank=True,
        help_text=_(
            "Used until a classifier is trained: a message containing one of these (any "
            "language, case ignored) gets this intent."
        ),
    )
    slots = models.JSONField(
        _("slots"),
        default=list,
        blank=True,
        help_text=_(
            'What the bot must collect, in order: [{"name": "order_number", "entity": '
            '"order_number", "required": true, "prompt_en": "...", "prompt_zh": "..."}].'
        ),
    )
    action = models.CharField(
        _("action"),
        max_length=100,
        blank=True,
        help_text=_("What runs when every required slot is filled."),
    )
    start_label_en = models.CharField(
        _("start button (English)"),
        max_length=60,
        blank=True,
        help_text=_(
            'For an intent with slots: the choice that starts its form ("Start a return"). '
            "A question about the form's topic that the help centre does not answer confidently "
            '("can opened makeup be returned?") is then offered the nearest articles and this '
            "choice, instead of starting the form at once."
        ),
    )
    start_label_zh = models.CharField(_("start button (Chinese)"), max_length=60, blank=True)
    handoff_policy = models.CharField(
        _("handoff policy"),
        max_length=16,
        choices=HandoffPolicy.choices,
        default=HandoffPolicy.NEVER,
    )
    response_en = models.TextField(_("fixed answer (English)"), blank=True)
    response_zh = models.TextField(_("fixed answer (Chinese)"), blank=True)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("intent")
        verbose_name_plural = _("intents")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from apps.nlu import actions

        errors: dict[str, list[str]] = {}
        if not isinstance(self.keywords, list) or not all(
            isinstance(k, str) and k.strip() for k in self.keywords
        ):
            errors["keywords"] = [gettext("Keywords must be a list of non-empty texts.")]
        slot_errors = slots_errors(self.slots)
        if slot_errors:
            errors["slots"] = slot_errors
        # Actions register in other apps' ready(), so the check is here, not a DB constraint.
        if self.action and self.action not in dict(actions.choices()):
            errors["action"] = [gettext("Unknown action: %(name)s") % {"name": self.action}]
        if errors:
            raise ValidationError(errors)


class Language(models.TextChoices):
    CHINESE = "zh", _("Simplified Chinese")
    ENGLISH = "en", _("English")


class IntentExample(TimeStampedModel):
    intent = models.ForeignKey(
        Intent, on_delete=models.CASCADE, related_name="examples", verbose_name=_("intent")
    )
    text = models.CharField(_("text"), max_length=500)
    language = models.CharField(_("language"), max_length=8, choices=Language.choices)

    class Meta:
        verbose_name = _("example")
        verbose_name_plural = _("examples")
        ordering = ["intent_id", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["intent", "text"], name="nlu_example_unique_text")
        ]

    def __str__(self) -> str:
        return self.text


class ClassifierStatus(models.TextChoices):
    TRAINING = "training", _("Training")
    READY = "ready", _("Ready")
    FAILED = "failed", _("Failed")


class ClassifierVersion(models.Model):
    """One training run of the intent classifier. The newest ready one is active."""

    number = models.PositiveIntegerField(_("number"), unique=True)
    status = models.CharField(
        _("status"),
        max_length=16,
        choices=ClassifierStatus.choices,
        default=ClassifierStatus.TRAINING,
    )
    is_active = models.BooleanField(_("active"), default=False)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    example_count = models.PositiveIntegerField(_("examples"), default=0)
    intent_count = models.PositiveIntegerField(_("intents"), default=0)
    labels = models.JSONField(_("labels"), default=list, blank=True)
    metrics = models.JSONField(
        _("metrics"),
        default=dict,
        blank=True,
        help_text=_(
            "Cross-validated on the training examples: accuracy, macro_f1, per-intent f1 and "
            "the chosen out-of-scope threshold."
        ),
    )
    oos_threshold = models.FloatField(
        _("out-of-scope threshold"),
        default=0.0,
        help_text=_("Below this confidence (0 to 1) a message is out of scope."),
    )
    train_seconds = models.FloatField(_("training seconds"), default=0.0)
    # Pickled sklearn/numpy objects only; the embedders are re-created by name when loaded.
    model = models.BinaryField(_("model"), blank=True, default=b"")
    error = models.TextField(_("error"), blank=True)

    class Meta:
        verbose_name = _("classifier version")
        verbose_name_plural = _("classifier versions")
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=Q(is_active=True), name="nlu_one_active_classifier"
            )
        ]

    def __str__(self) -> str:
        return f"v{self.number} ({self.status})"

    @property
    def accuracy(self) -> float | None:
        value = (self.metrics or {}).get("accuracy")
        return float(value) if value is not None else None

    @property
    def macro_f1(self) -> float | None:
        value = (self.metrics or {}).get("macro_f1")
        return float(value) if value is not None else None
