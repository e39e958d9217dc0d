"""Reads of the NLU: which intent a message expresses, and the intents themselves.

Both are served from per-process memory, checked against a version stamp in the shared cache
on every call (one cache read), so a classifier trained by a worker, or an intent edited in
the admin, reaches every web process at once without a database query per message.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from django.core.cache import cache

from apps.core.stamps import change_stamp
from apps.core.text import detect_language, normalize
from apps.nlu import classifier
from apps.nlu.models import ClassifierStatus, ClassifierVersion, Intent

logger = logging.getLogger(__name__)

# The shared cache keys the services bump; the values only need to change.
CLASSIFIER_KEY = "nlu:active-classifier"
INTENTS_KEY = "nlu:intents-stamp"
# How long a value this process filled in itself (on a cache miss) is trusted: with the
# per-process local-memory cache of the embedded mode, a change made by another process (a
# management command) reaches this one within this time.
MISS_TIMEOUT = 60
# Examples of this intent teach the classifier what is *not* an intent (FAQ questions, small
# talk the bot should answer from the knowledge base). It is never returned as an intent.
OUT_OF_SCOPE_INTENT = "out_of_scope"

Method = Literal["classifier", "keywords", "none"]


@dataclass(frozen=True)
class IntentPrediction:
    """What `classify` decided. `intent` None: no intent (out of scope, or nothing matched).
    `confidence` (0 to 1): the classifier's calibrated probability of its best intent; for
    keyword rules 1.0 when one intent matched, split evenly when several did. `version`: the
    classifier version that answered. `ranking`: the best few intents with their scores."""

    intent: str | None
    confidence: float
    out_of_scope: bool
    method: Method
    version: int | None = None
    ranking: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class _Intents:
    stamp: object = None
    by_name: dict[str, Intent] = field(default_factory=dict)
    # (intent name, lower-cased normalised keyword)
    keywords: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Classifier:
    token: str = ""
    number: int | None = None
    model: classifier.TrainedClassifier | None = None


_lock = threading.Lock()
_intents = _Intents()
_classifier = _Classifier()


def _active_intents() -> _Intents:
    global _intents
    stamp = change_stamp(INTENTS_KEY, miss_timeout=MISS_TIMEOUT)
    current = _intents
    if current.stamp == stamp and stamp is not None:
        return current
    with _lock:
        if _intents.stamp == stamp and stamp is not None:
            return _intents
        intents = list(Intent.objects.filter(is_active=True))
        keywords = [
            (intent.name, normalize(keyword).lower())
            for intent in intents
            if intent.name != OUT_OF_SCOPE_INTENT
            for keyword in intent.keywords or []
            if isinstance(keyword, str) and keyword.strip()
        ]
        _intents = _Intents(stamp, {intent.name: intent for intent in intents}, keywords)
        return _intents


def intent_get(name: str) -> Intent | None:
    """The active intent of this name (from memory; callers must not modify it)."""
    return _active_intents().by_name.get(name)


def classifier_token(pk: int, number: int) -> str:
    """What the shared cache holds for the active classifier: its row id and number. The row
    id, not the number alone, tells processes a new model apart from one they hold (numbers
    start again at 1 in a fresh database)."""
    return f"{pk}:{number}"


def _active_token() -> str:
    """The active classifier version's token, "" when none (the shared cache, else the DB)."""
    token = cache.get(CLASSIFIER_KEY)
    if token is None:
        active = (
            ClassifierVersion.objects.filter(is_active=True, status=ClassifierStatus.READY)
            .values_list("pk", "number")
            .first()
        )
        token = classifier_token(*active) if active else ""
        cache.set(CLASSIFIER_KEY, token, timeout=MISS_TIMEOUT)
    return str(token)


def _active_classifier() -> tuple[int | None, classifier.TrainedClassifier | None]:
    """The active classifier and its number, deserialised once per process and version."""
    global _classifier
    token = _active_token()
    if not token or ":" not in token:
        return None, None
    current = _classifier
    if current.token == token:
        return current.number, current.model
    unloadable = False
    with _lock:
        if _classifier.token != token:
            pk, number = (int(part) for part in token.split(":", 1))
            data = (
                ClassifierVersion.objects.filter(pk=pk, status=ClassifierStatus.READY)
                .values_list("model", flat=True)
                .first()
            )
            model = None
            if data:
                try:
                    model = classifier.TrainedClassifier.from_bytes(data)
                except (
                    TypeError,
                    ValueError,
                    EOFError,
                    AttributeError,
                    ImportError,
                    KeyError,
                ) as exc:
                    # Written by an incompatible version of the code: keywords until retrained.
                    logger.error("cannot load intent classifier v%s: %s", number, exc)
            _classifier = _Classifier(token, number, model)
            unloadable = bool(data) and model is None
    if unloadable and _retrain_unloadable(token):
        # Celery runs eagerly in the embedded mode: the new version may already be active.
        return _active_classifier()
    return _classifier.number, _classifier.model


def _retrain_unloadable(token: str) -> bool:
    """Queue one retraining (for every process) of a classifier the code cannot read, e.g.
    after an upgrade changed its layout; the new version replaces it when ready. False when
    one was queued for it already."""
    from apps.nlu.tasks import classifier_train_task

    if not cache.add(f"{CLASSIFIER_KEY}:retrain:{token}", 1, timeout=3600):
        return False
    logger.warning("retraining the intent classifier to replace v%s", token.split(":")[-1])
    classifier_train_task.delay()
    return True


def active_classifier_loads() -> bool:
    """Whether there is an active classifier and this code can read it."""
    return _active_classifier()[1] is not None


def classify(text: str, language: str | None = None) -> IntentPrediction:
    """The intent of a customer's message.

    The active classifier when there is one; until the first is trained, the intents' keyword
    rules (case-insensitive substrings of the normalised text). `language` ("zh"/"en"), the
    message's language as the engine decided it, picks the classifier's head and so the one
    model that embeds the message; detected from the text when not given.
    """
    cleaned = normalize(text)
    if not cleaned:
        return IntentPrediction(None, 0.0, True, "none")
    intents = _active_intents()
    number, model = _active_classifier()
    if model is not None:
        language = language or detect_language(cleaned)
        prediction = model.predict([cleaned], _message_embeddings(cleaned, language), [language])[0]
        ranking = [
            (name, score)
            for name, score in prediction.ranking
            if name in intents.by_name and name != OUT_OF_SCOPE_INTENT
        ]
        # An intent deleted or switched off since the training is no answer.
        intent = prediction.label if prediction.label in intents.by_name else None
        if intent == OUT_OF_SCOPE_INTENT:
            intent = None
        return IntentPrediction(
            intent, prediction.confidence, intent is None, "classifier", number, ranking
        )
    return _keywords_classify(cleaned, intents)


def _message_embeddings(text: str, language: str) -> dict[str, np.ndarray]:
    """The embedding the classifier's head for `language` reads, through knowledge's
    per-process cache: moderation, the answer cache and search embed the same text with the
    same model for that language, so a message is embedded once, not once per step."""
    from apps.knowledge.selectors import query_vector

    return {
        name: query_vector(name, "", text)[None, :] for name in classifier.head_embedders(language)
    }


def _keywords_classify(text: str, intents: _Intents) -> IntentPrediction:
    lowered = text.lower()
    # The most specific rule wins: the longest keyword; among equals, the one found later
    # ("hello, I want to return this" is about the return, not the greeting).
    hits = sorted(
        (-len(keyword), -lowered.rfind(keyword), name)
        for name, keyword in intents.keywords
        if keyword in lowered
    )
    matched: list[str] = []
    for _length, _position, name in hits:
        if name not in matched:
            matched.append(name)
    if not matched:
        return IntentPrediction(None, 0.0, True, "none")
    share = round(1.0 / len(matched), 4)
    return IntentPrediction(
        matched[0], share, False, "keywords", None, [(name, share) for name in matched]
    )
