"""Moderation of what customers write and what the bot answers, in Chinese and English.

`moderate(text)` looks the text up in the lexicon staff edit in the admin (*Moderation terms*)
and scores it with the classifier shipped in `apps/safety/artifacts/` (see `classifier`):

- a lexicon term whose action is "block" blocks the text (source "lexicon");
- otherwise a classifier score at or above the threshold blocks it (source "classifier");
- otherwise a "flag" term lets it through, flagged for staff to review.

Thresholds come from `settings.MODERATION`: "THRESHOLD" None uses each language's operating
point chosen when the model was trained (stored with it); a number overrides it for both.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.core.cache import cache

from apps.core.text import detect_language
from apps.safety import classifier
from apps.safety.models import FlagSource, TermAction
from apps.safety.selectors import TermHit, lexicon

CLASSIFIER_CATEGORY = "offensive"
# How long a recurring text's score is kept (the key names the shipped model, so a new model
# never reads an old score).
RECURRING_SCORE_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class Verdict:
    """What moderation decided about one text.

    `blocked`: refuse it (a customer's message) or never send it (the bot's). `flagged`: staff
    should see it (every blocked text, and texts with a "flag" term). `score`: the classifier's
    probability (0 to 1) that the text is offensive, None when a blocking term made scoring
    unnecessary or moderation is off. `source`: what decided ("lexicon", "classifier", or ""
    for a clean text). `categories`: the matched terms' categories, or "offensive".
    """

    blocked: bool = False
    score: float | None = None
    source: str = ""
    categories: tuple[str, ...] = ()
    flagged: bool = False
    threshold: float | None = None
    terms: tuple[str, ...] = field(default=(), repr=False)


def enabled() -> bool:
    return bool(settings.MODERATION.get("ENABLED", True))


def threshold_for(language: str) -> float:
    """The score at and above which a text in `language` is blocked."""
    configured = settings.MODERATION.get("THRESHOLD")
    if configured is not None:
        return float(configured)
    return classifier.shipped_model().head_for(language).threshold


def _query_embed(name: str, texts: Sequence[str]) -> np.ndarray:
    # One message at a time through the engine's per-process cache of query embeddings: the
    # answer cache, the intents and search embed the same cleaned text with the same models.
    from apps.knowledge.selectors import query_vector

    return np.vstack([query_vector(name, "", classifier.clean_text(t)) for t in texts])


def verdict_from(hits: list[TermHit], score: float | None, threshold: float) -> Verdict:
    """The decision for one text from its lexicon hits and classifier score (shared by
    `moderate` and the batch evaluation, so both decide alike)."""
    terms = tuple(hit.term for hit in hits)
    blocking = [hit for hit in hits if hit.action == TermAction.BLOCK]
    if blocking:
        categories = tuple(dict.fromkeys(hit.category for hit in blocking))
        return Verdict(True, score, FlagSource.LEXICON, categories, True, threshold, terms)
    if score is not None and score >= threshold:
        return Verdict(
            True, score, FlagSource.CLASSIFIER, (CLASSIFIER_CATEGORY,), True, threshold, terms
        )
    if hits:
        categories = tuple(dict.fromkeys(hit.category for hit in hits))
        return Verdict(False, score, FlagSource.LEXICON, categories, True, threshold, terms)
    return Verdict(False, score, "", (), False, threshold)


_SENTENCE_END_RE = re.compile(r"(?<=[。！？!?；;])\s*|(?<=\.)\s+|\n+")


def sentences(text: str) -> list[str]:
    """The sentences of a text (at least two characters each)."""
    return [part.strip() for part in _SENTENCE_END_RE.split(text) if len(part.strip()) >= 2]


def moderate(
    text: str,
    language: str | None = None,
    *,
    each_sentence: bool = False,
    recurring: bool = False,
) -> Verdict:
    """Moderate one text (a customer's message or the bot's answer); `language` ("zh"/"en")
    when the caller knows it, else detected. Costs a lexicon scan, at most one embedding the
    engine does not already have, and a few dot products.

    `each_sentence` (the bot's answers): the score is the highest of the whole text's and each
    sentence's, so one offensive sentence among polite ones is not averaged away (an embedding
    per sentence; answers are short, and repeated ones are cached).

    `recurring`: a text that comes back often and rarely changes (the help centre's answers).
    Its classifier score is kept in the cache, shared by the server's processes when that is
    Redis, so a long answer is embedded once (up to 0.2 s), not again in every process and
    whenever the per-process cache of question embeddings has let it go. The lexicon is still
    read every time: a term staff add applies at once."""
    if not enabled() or not text.strip():
        return Verdict()
    language = language if language in ("zh", "en") else detect_language(text)
    hits = lexicon().match(text, language)
    threshold = threshold_for(language)
    if any(hit.action == TermAction.BLOCK for hit in hits) or not readable(text):
        return verdict_from(hits, None, threshold)
    texts = [text]
    if each_sentence:
        texts += [part for part in sentences(text) if part != text.strip()]
    if not recurring:
        return verdict_from(hits, _score(texts, language), threshold)
    key = "moderation:score:{}:{}:{}".format(
        classifier.shipped_model().digest,
        language,
        hashlib.sha256("\x1f".join(texts).encode()).hexdigest(),
    )
    score = cache.get(key)
    if score is None:
        score = _score(texts, language)
        cache.set(key, score, timeout=RECURRING_SCORE_SECONDS)
    return verdict_from(hits, float(score), threshold)


def readable(text: str) -> bool:
    """Whether the classifier has anything to read: a letter, a Han character or a digit. A
    bare "?" or "..." scored as an insult (the Chinese head read "？" at 0.69): such messages
    are left to the lexicon, which can still hold a rude emoji."""
    return any(ch.isalnum() for ch in text)


def _score(texts: list[str], language: str) -> float:
    return float(classifier.shipped_model().score_many(texts, language, _query_embed).max())


def moderate_many(texts: Sequence[str], languages: Sequence[str]) -> list[Verdict]:
    """`moderate` for many texts at once (embedded in batches): the evaluation's path."""
    terms = lexicon()
    model = classifier.shipped_model()
    scores = np.zeros(len(texts))
    for language in ("zh", "en"):
        rows = [i for i, lang in enumerate(languages) if lang == language]
        if rows:
            scores[rows] = model.score_many([texts[i] for i in rows], language)
    return [
        verdict_from(
            terms.match(text, language),
            float(score) if readable(text) else None,
            threshold_for(language),
        )
        for text, language, score in zip(texts, languages, scores, strict=True)
    ]
