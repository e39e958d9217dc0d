"""Reads for moderation: the compiled lexicon (one per process, rebuilt when a term changes)."""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass, field

from apps.core.stamps import change_stamp
from apps.core.text import CJK_RE
from apps.safety.models import ModerationTerm, TermLanguage

# The shared cache key that `signals` bumps when a term changes; the value only has to change.
LEXICON_KEY = "safety:lexicon-stamp"
# How long a stamp this process made up itself (on a cache miss) is trusted: with the
# per-process local-memory cache of the embedded mode, an edit made in another process reaches
# this one within this time.
MISS_TIMEOUT = 60

# What is squeezed out of a text before Chinese terms are looked for: white space, punctuation
# and symbols, so "傻 逼" and "傻*逼" are found as "傻逼".
_SQUEEZE_RE = re.compile(r"[\s\W_]+")


def fold(text: str) -> str:
    """NFKC (full-width letters become ASCII) and case-folded."""
    return unicodedata.normalize("NFKC", text).casefold()


@dataclass(frozen=True)
class TermHit:
    term: str
    category: str
    action: str


@dataclass
class Lexicon:
    """The enabled terms, compiled: English-style terms as one whole-word pattern, Chinese
    terms (any with a Han character) as one pattern matched on the squeezed text."""

    stamp: object = None
    words: re.Pattern[str] | None = None
    han: re.Pattern[str] | None = None
    # folded term -> (language, what it means) for each enabled term spelled so
    meanings: dict[str, list[tuple[str, TermHit]]] = field(default_factory=dict)

    def match(self, text: str, language: str) -> list[TermHit]:
        """The terms found in `text` that apply to a message in `language` ("zh"/"en")."""
        folded = fold(text)
        found: list[str] = []
        if self.words is not None:
            found += [m.group(1) for m in self.words.finditer(folded)]
        if self.han is not None:
            found += self.han.findall(_SQUEEZE_RE.sub("", folded))
        hits: list[TermHit] = []
        for key in dict.fromkeys(" ".join(f.split()) for f in found):
            for term_language, hit in self.meanings.get(key, []):
                if term_language in (TermLanguage.ANY, language) and hit not in hits:
                    hits.append(hit)
        return hits


def _compile(stamp: object) -> Lexicon:
    meanings: dict[str, list[tuple[str, TermHit]]] = {}
    words: list[str] = []
    han: list[str] = []
    for term, language, category, action in ModerationTerm.objects.filter(enabled=True).values_list(
        "term", "language", "category", "action"
    ):
        key = " ".join(fold(term).split())
        if not key:
            continue
        if CJK_RE.search(key):
            key = _SQUEEZE_RE.sub("", key)
            han.append(re.escape(key))
        else:
            words.append(r"\s+".join(re.escape(part) for part in key.split()))
        meanings.setdefault(key, []).append((language, TermHit(term, category, action)))
    # Longest first, so a phrase wins over a word inside it.
    words.sort(key=len, reverse=True)
    han.sort(key=len, reverse=True)
    return Lexicon(
        stamp=stamp,
        words=re.compile(rf"(?<![a-z0-9])({'|'.join(words)})(?![a-z0-9])") if words else None,
        han=re.compile("|".join(han)) if han else None,
        meanings=meanings,
    )


_lock = threading.Lock()
_lexicon = Lexicon()


def lexicon() -> Lexicon:
    """The enabled moderation terms, compiled once per process and change."""
    global _lexicon
    stamp = change_stamp(LEXICON_KEY, miss_timeout=MISS_TIMEOUT)
    current = _lexicon
    if stamp is not None and current.stamp == stamp:
        return current
    with _lock:
        if stamp is None or _lexicon.stamp != stamp:
            _lexicon = _compile(stamp)
        return _lexicon
