"""Text processing shared by every app: language detection, normalisation, Chinese segmentation,
keyword terms and sentence splitting, for Simplified Chinese and English."""

from __future__ import annotations

import re
import threading
import unicodedata
from functools import lru_cache
from pathlib import Path

CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
LATIN_WORD_RE = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?")
WHITESPACE_RE = re.compile(r"\s+")
# What says nothing about a message's language: links, e-mail addresses and codes with digits
# (order numbers, tracking numbers), whose Latin letters would outweigh a short Chinese message.
NOT_LANGUAGE_RE = re.compile(
    r"https?://\S+|www\.\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+|(?<![A-Za-z])[A-Za-z_-]*\d[A-Za-z0-9_-]*"
)

# English number words up to ninety, by value; compounds ("twenty-five") are built from them.
EN_NUMBER_WORDS: dict[str, int] = {
    word: value
    for value, word in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
        ]
    )
} | {
    word: 10 * tens
    for tens, word in enumerate(
        ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"], 2
    )
}

# Sentence ends: Chinese full-width marks end a sentence on their own; English ones need a space
# (or the end) after them so "3.5" and "e.g." inside a sentence do not split it.
SENTENCE_END_RE = re.compile(r"(?<=[。！？；…!?])\s*|(?<=[.;])\s+")

ENGLISH_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "from",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "am",
        "do",
        "does",
        "did",
        "doing",
        "have",
        "has",
        "had",
        "having",
        "i",
        "me",
        "my",
        "we",
        "our",
        "you",
        "your",
        "he",
        "she",
        "it",
        "its",
        "they",
        "them",
        "their",
        "this",
        "that",
        "these",
        "those",
        "there",
        "here",
        "what",
        "which",
        "who",
        "whom",
        "how",
        "when",
        "where",
        "why",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "not",
        "no",
        "nor",
        "so",
        "than",
        "too",
        "very",
        "just",
        "also",
        "about",
        "into",
        "over",
        "under",
        "up",
        "down",
        "out",
        "off",
        "again",
        "then",
        "once",
        "all",
        "any",
        "both",
        "each",
        "few",
        "more",
        "most",
        "other",
        "some",
        "such",
        "only",
        "own",
        "same",
        "s",
        "t",
        "don",
        "get",
        "got",
        "please",
        "hi",
        "hello",
        "thanks",
        "thank",
    ]
)
_jieba_lock = threading.Lock()
_jieba_ready = False


def normalize(text: str) -> str:
    """NFKC (full-width to half-width letters and digits), collapsed white space, trimmed."""
    return WHITESPACE_RE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def cjk_ratio(text: str) -> float:
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return 0.0
    return sum(1 for ch in letters if CJK_RE.match(ch)) / len(letters)


def detect_language(text: str, default: str = "en") -> str:
    """'zh' when a fifth or more of the letters are Han characters, else 'en'. Links, e-mail
    addresses and codes with digits are not counted ("照片在这 https://…" is Chinese)."""
    if not text.strip():
        return default
    words = NOT_LANGUAGE_RE.sub(" ", text)
    if not any(ch.isalpha() for ch in words):
        words = text
    return "zh" if cjk_ratio(words) >= 0.2 else "en"


def _jieba():  # type: ignore[no-untyped-def]
    global _jieba_ready
    import jieba

    if not _jieba_ready:
        with _jieba_lock:
            if not _jieba_ready:
                from django.conf import settings

                cache_dir = Path(settings.KNOWLEDGE["JIEBA_CACHE_DIR"])
                cache_dir.mkdir(parents=True, exist_ok=True)
                jieba.dt.tmp_dir = str(cache_dir)
                jieba.setLogLevel(30)
                jieba.initialize()
                _jieba_ready = True
    return jieba


def segment_chinese(text: str) -> list[str]:
    """Words of a Chinese text (jieba, accurate mode), without white space."""
    return [w for w in _jieba().lcut(text) if w.strip()]


@lru_cache(maxsize=8192)
def stem(word: str) -> str:
    """A light English suffix stripper: enough to match 'refunds'/'refunded'/'refunding'."""
    for suffix, keep in (
        ("ies", "y"),
        ("sses", "ss"),
        ("ing", ""),
        ("ed", ""),
        ("es", ""),
        ("s", ""),
    ):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                return word
            return word[: len(word) - len(suffix)] + keep
    return word


def keyword_terms(text: str) -> list[str]:
    """Terms for keyword search, in order, repeats kept (callers count them).

    English: lower-cased words minus stop words, lightly stemmed. Chinese: every Han character.
    Measured on the BQ development set (docs/benchmarks.md), characters beat jieba words and
    words+characters for matching paraphrased questions ("关掉" still meets "关闭"), and dropping
    Chinese stop characters hurt ("还" is also the 还 of 还款).
    """
    text = normalize(text).lower()
    terms: list[str] = []
    for piece in re.split(r"([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+)", text):
        if not piece:
            continue
        if CJK_RE.match(piece):
            terms.extend(piece)
        else:
            for word in LATIN_WORD_RE.findall(piece):
                if word not in ENGLISH_STOPWORDS:
                    terms.append(stem(word))
    return terms


def split_sentences(text: str) -> list[str]:
    """Sentences of a Chinese or English paragraph, punctuation kept with its sentence."""
    return [s.strip() for s in SENTENCE_END_RE.split(text) if s and s.strip()]


# Chinese numerals: digit characters and the units between them ("三百二十" = 320).
CN_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
CN_UNITS = {"十": 10, "百": 100, "千": 1000}
