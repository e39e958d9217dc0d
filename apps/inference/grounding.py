"""Grounding check for generated answers: is what the LLM wrote backed by the evidence?

The evidence is the retrieved knowledge-base sources plus the conversation so far. Two checks run
on every answer before it reaches a customer, in Simplified Chinese and English alike:

Hard facts (`extract_facts`) must appear in the evidence. Kinds, in the order they win when two
candidates overlap the same span (the longer span wins first):

- ``email``: compared lower-case.
- ``url``: ``http(s)://``, ``www.`` or a bare domain with a common TLD. Compared lower-case
  without scheme, ``www.``, fragment and trailing slash (trailing "." or "）" are not part of
  it). Supported when the evidence names the same URL, or a longer one of which it is a whole
  host/path prefix ("help.example.com/refund" is backed by ".../refund/policy"; an invented
  ".../refund-form" is not).
- ``order``: two to four letters and six or more digits ("LM2026112001"), case-insensitive.
- ``phone``: Chinese mobiles, 400/800 service numbers, landlines, "+86 …" and other
  international forms, and the common US forms. Compared on digits only, with or without the
  country code; the evidence's digit groups are joined the same way ("400 820 1234").
- ``date``: "2026-11-20", "2026/11/20", "11/20/2026", "11月20日", "2026年十一月二十日", "Nov 20",
  "20 November 2026", "November 20, 2026". Month and day must match; the year only when both
  sides have one.
- ``price``: "¥199", "199元", "$19.99", "RMB 50", "50 yuan", "3万元"; compared as numbers
  (199 == 199.00), supported when that number occurs anywhere in the evidence.
- ``duration``: "7天", "七天", "7 days", "48小时", "3-5个工作日", "3–5 business days", "两周";
  every number of it (both ends of a range) must occur as a number in the evidence.
- ``number``: any other number of two or more digits, any decimal, percentage or discount ("10%",
  "百分之十", "8折"), Chinese numerals before a measure word ("十五件"), and clock times ("9:00",
  "下午6点", "6pm"; compared on hour modulo 12 and minute). A lone digit ("1"), a list marker
  ("1.", "2、") and a citation marker ("[1]", "【2】") are not facts.

Full-width characters are folded with NFKC on both sides (except the Chinese comma "，", which
would otherwise join "3，199元" into one thousand-separated number). Numbers are compared as
numbers: "1,299" == "1299", "七" == 7, "十五" == 15, "二〇二六" == 2026, "seven" == 7. The
evidence is tokenised into whole numbers rather than searched as a string, so "20" is not backed
by "2026" and "299" is not backed by "1,299".

Sentences (split on 。！？；!?; , on ". " and on new lines) are compared on content tokens:
lower-cased English words minus stop words, lightly stemmed, and character bigrams of Han runs
(function characters and generic words such as 的/了/您/已经 break the runs instead of forming
bigrams). Pleasantries ("Hope this helps!", "如有其他问题请随时联系我们") are removed first, so
they do not count. A sentence with at least three distinct tokens is *checked*; it is
*supported* when at least `sentence_threshold` of its tokens occur in the evidence and it holds
no unsupported fact. A sentence holding an unsupported fact is always checked, and never
supported, however short.

`Grounding.score` is the share of checked sentences that are supported: 1.0 means every
checkable sentence is backed by the evidence (or none was checkable); an unsupported hard fact
always pushes it below 1.0. It measures lexical support, not truth: a sentence that reuses the
evidence's words to say something else still scores as supported, and an answer in English
about Chinese sources scores low on sentences (numbers, URLs and the like still compare).

Known limits, on purpose or not yet worth the rules: units are not compared ("7 hours" is backed
by "7 days", and a correct conversion such as "2天" for "48小时" is flagged); a date without a
year in the evidence backs that day in any year; "11/20" without a year is two numbers, not a
date; colloquial numerals such as "十五六天" are not read and "一个半小时" is read as half an hour;
small numbers hidden in Chinese words ("十分", "统一" is excluded, "一点" is not) may count as
support for 10 or 1; negation is invisible to the sentence check ("不支持" shares its bigrams
with "支持").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from apps.core.text import CN_DIGITS, CN_UNITS, EN_NUMBER_WORDS, ENGLISH_STOPWORDS, stem

__all__ = [
    "Evidence",
    "Fact",
    "Grounding",
    "check",
    "extract_facts",
    "safe_prefix_end",
    "unsupported_facts",
]

PHONE = "phone"
EMAIL = "email"
URL = "url"
ORDER = "order"
PRICE = "price"
DATE = "date"
DURATION = "duration"
NUMBER = "number"
SENTENCE = "sentence"

# Equal spans: the first kind here wins (an email's domain is not also a URL, and so on).
_KIND_RANK = {EMAIL: 0, URL: 1, ORDER: 2, PHONE: 3, DATE: 4, PRICE: 5, DURATION: 6, NUMBER: 7}

# Fewer distinct content tokens than this and a sentence is not checked (too little to compare:
# "好的。", "Sure!").
MIN_SENTENCE_TOKENS = 3


@dataclass(frozen=True)
class Fact:
    """A hard fact in an answer: `text` is `answer[start:end]` as written, `key` its normalised
    form (digits of a phone, lower-case e-mail/URL, upper-case order number, canonical number
    "199" / "19.99", range "3-5", date "2026-11-20" or "--11-20" without a year, time "9:00")."""

    kind: str
    text: str
    start: int
    end: int
    key: str


@dataclass
class Grounding:
    """The result of `check`.

    `score` is `supported / sentences` in [0, 1], 1.0 when no sentence was checkable.
    `unsupported` lists, in answer order, every unsupported fact (kind = the fact's kind) and
    every checked sentence whose tokens fall below the threshold (kind "sentence"); each entry
    has "kind", "text", "start" and "end" (offsets into the answer). A sentence that fails only
    because of a fact inside it is counted in the score but listed through that fact alone.
    """

    score: float
    unsupported: list[dict[str, Any]]
    sentences: int
    supported: int
    facts: int

    @property
    def unsupported_facts(self) -> list[dict[str, Any]]:
        return [entry for entry in self.unsupported if entry["kind"] != SENTENCE]


# --- Folding -------------------------------------------------------------------------------------

# Kept as written: read as "," the Chinese clause comma would join "3，199元" into one number.
_KEEP_AS_WRITTEN = frozenset("，")


@dataclass(frozen=True)
class _Folded:
    """`text` folded with NFKC per character; `origin[i]` is the index in the original text of
    folded character i, with one extra entry (the original length) at the end."""

    text: str
    origin: Sequence[int]

    def span(self, start: int, end: int) -> tuple[int, int]:
        return self.origin[start], self.origin[end - 1] + 1


def _fold(text: str) -> _Folded:
    origin: Sequence[int]
    if text.isascii():
        folded, origin = text, range(len(text) + 1)
    else:
        chars: list[str] = []
        positions: list[int] = []
        for index, char in enumerate(text):
            if not char.isascii() and char not in _KEEP_AS_WRITTEN:
                char = unicodedata.normalize("NFKC", char)
            chars.append(char)
            positions.extend([index] * len(char))
        positions.append(len(text))
        folded, origin = "".join(chars), positions
    return _Folded(_blank_citations(folded), origin)


# "[1]", "[1, 2]", "[1-3]", "[^1]", "【2】": markers pointing at sources, never facts. Blanked
# with spaces of the same length so offsets stay valid.
_CITATION_RE = re.compile(r"\[\^?\s*\d{1,3}(?:\s*[,，、\-]\s*\d{1,3})*\s*\]|【\s*\d{1,3}\s*】")


def _blank_citations(text: str) -> str:
    if "[" not in text and "【" not in text:
        return text
    return _CITATION_RE.sub(lambda m: " " * len(m.group()), text)


# --- Numbers ---------------------------------------------------------------------------------

_CN_CORE = frozenset("零〇一二两三四五六七八九十")
_CN_NUMERAL_CHARS = "零〇一二两三四五六七八九十百千万"

_EN_WORD = "|".join(sorted([*EN_NUMBER_WORDS, "hundred", "thousand"], key=len, reverse=True))

# Number patterns shared by the fact patterns. Arabic: thousands separators and decimals, not
# starting inside a word ("H100", "v2") or in the middle of a decimal.
_AR = r"(?<![A-Za-z0-9_])(?<!\d\.)(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![0-9])"
_CN = f"[{_CN_NUMERAL_CHARS}]+"
_EN = rf"(?<![A-Za-z])(?i:(?:{_EN_WORD})(?:[ -](?:{_EN_WORD}))*)(?![A-Za-z])"
_NUM = rf"(?:{_AR}|{_CN}|半|{_EN})"


@lru_cache(maxsize=4096)
def _canon(number: str) -> str:
    """A number as a canonical string: "1,299" -> "1299", "199.00" -> "199", "0.50" -> "0.5"."""
    try:
        value = Decimal(number.replace(",", ""))
    except InvalidOperation:
        return number
    return format(value.normalize(), "f")


def _chinese_int(numeral: str) -> int | None:
    """The value of a Chinese numeral: "十五" 15, "三百五" 350, "一万五" 15000, "一百零五" 105,
    "二〇二六" 2026 (digit by digit). None when it is not one ("万", "千万", "一二")."""
    if not any(char in _CN_CORE for char in numeral):
        return None  # "百", "千万": words more often than numbers
    if all(char in CN_DIGITS for char in numeral):
        if len(numeral) == 1:
            return CN_DIGITS[numeral]
        if len(numeral) < 3:
            return None  # "一二", "两三" (two or three): not one number
        return int("".join(str(CN_DIGITS[char]) for char in numeral))
    total = section = last_unit = 0
    digit: int | None = None
    after_zero = False
    for char in numeral:
        if char in CN_DIGITS:
            value = CN_DIGITS[char]
            if value == 0:
                after_zero = True
            elif digit is not None:
                return None
            else:
                digit = value
        elif char in CN_UNITS:
            section += (1 if digit is None else digit) * CN_UNITS[char]
            digit, last_unit, after_zero = None, CN_UNITS[char], False
        else:  # 万
            total += (section + (digit or 0)) * 10_000
            section, digit, last_unit, after_zero = 0, None, 10_000, False
    if digit is not None:
        # "三百五" is 350 and "一万五" 15000, as prices are said; "一百零五" is 105.
        section += digit * (last_unit // 10 if last_unit >= 100 and not after_zero else 1)
    return total + section


def _chinese_values(numeral: str) -> list[int]:
    """Values of a Chinese numeral run; "两三" / "七八" (two or three, seven or eight) give both."""
    value = _chinese_int(numeral)
    if value is not None:
        return [value]
    if len(numeral) == 2 and all(char in CN_DIGITS for char in numeral):
        first, second = CN_DIGITS[numeral[0]], CN_DIGITS[numeral[1]]
        if second == first + 1:
            return [first, second]
    return []


def _english_int(words: str) -> int | None:
    total = current = 0
    for word in re.split(r"[ -]+", words.lower()):
        if word in EN_NUMBER_WORDS:
            current += EN_NUMBER_WORDS[word]
        elif word == "hundred":
            current = max(current, 1) * 100
        elif word == "thousand":
            total += max(current, 1) * 1000
            current = 0
    return total + current


def _number_values(token: str) -> list[str]:
    """Canonical values of one matched `_NUM`: Arabic, Chinese, "半" (a half) or English words."""
    if token[0].isdigit():
        return [_canon(token)]
    if token == "半":  # noqa: S105 (a word token, not a password)
        return ["0.5"]
    if token[0] in _CN_NUMERAL_CHARS:
        return [str(value) for value in _chinese_values(token)]
    return [str(_english_int(token))]


def _scaled(values: list[str], multiplier: str | None) -> list[str]:
    if not multiplier:
        return values
    factor = 10_000 if multiplier == "万" else 1000
    return [_canon(str(Decimal(value) * factor)) for value in values]


# --- Fact patterns (on folded text) -------------------------------------------------------------

_EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?![A-Za-z0-9-])"
)
_URL_CHARS = r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]"
_TLDS = "com|cn|net|org|io|co|edu|gov|info|biz|app|dev|ai|me|hk|tw|uk|us|de|jp|shop|store"
_URL_RE = re.compile(
    rf"(?<![A-Za-z0-9@])(?i:https?://|www\.){_URL_CHARS}+"
    rf"|(?<![A-Za-z0-9@._/-])(?i:(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+(?:{_TLDS}))"
    rf"(?![A-Za-z0-9-])(?::\d{{2,5}})?(?:/{_URL_CHARS}*)?"
)
_URL_TRAILING = ".,;:!?'\"]}>"

# Two to four letters and six or more digits. "Tel4008201234" is a label glued to a phone
# number, not an order.
_ORDER_RE = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2,4})-?(\d{6,})(?![0-9])")
_NOT_ORDER_PREFIXES = frozenset({"TEL", "FAX", "NO", "EXT", "RMB", "CNY", "USD", "HKD", "EUR"})

_PHONE_RE = re.compile(
    r"(?<![0-9+])(?:"
    r"(?P<intl>(?:\+|00)\d{1,3})(?:[ .\-]?\(?\d{1,5}\)?){1,5}"  # +86 138 1234 5678, +1 (800) …
    r"|1[3-9]\d[ \-]?\d{4}[ \-]?\d{4}"  # Chinese mobile
    r"|[48]00[ \-]?\d{3}[ \-]?\d{4}"  # 400/800 service numbers
    r"|\(0\d{2,3}\)[ \-]?\d{3,4}[ \-]?\d{4}|0\d{2,3}-\d{3,4}-?\d{4}"  # (021) 1234 5678
    r"|1[ \-.]\d{3}[ \-.]\d{3}[ \-.]\d{4}"  # 1-800-555-0199
    r"|\(\d{3}\) ?\d{3}[ .\-]\d{4}|\d{3}[.\-]\d{3}[.\-]\d{4}"  # (800) 555-0199, 800-555-0199
    r"|0\d{3,4} \d{3} ?\d{3,4}"  # 0800 123 4567
    r")(?![0-9])"
)
# National digits after a country code: more and the pattern swallowed a following number.
_NATIONAL_MAX = {"86": 11, "1": 10}
_COUNTRY_CODES = ("852", "853", "886", "86", "1")

_MONTHS = {
    "jan": 1,
    "feb": 2,
    "mar": 3,
    "apr": 4,
    "may": 5,
    "jun": 6,
    "jul": 7,
    "aug": 8,
    "sep": 9,
    "oct": 10,
    "nov": 11,
    "dec": 12,
}
_MONTH = (
    r"(?i:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_CN_SMALL = "[一二三四五六七八九十]{1,3}"
_DATE_RE = re.compile(
    # 2026-11-20, 2026/11/20, 2026.11.20 (one separator throughout)
    r"(?<![0-9])(?P<iy>\d{4})(?P<sep>[-/.])(?P<im>\d{1,2})(?P=sep)(?P<id>\d{1,2})(?![0-9])"
    # 11/20/2026 (US) or 20/11/2026 (when the first number cannot be a month)
    r"|(?<![0-9/])(?P<sa>\d{1,2})/(?P<sb>\d{1,2})/(?P<sy>\d{4})(?![0-9])"
    # 2026年11月20日, 十一月二十日, 11月20号
    rf"|(?:(?P<cy>\d{{4}}|[〇零一二三四五六七八九]{{4}})\s*年\s*)?(?<![0-9])"
    rf"(?P<cm>\d{{1,2}}|{_CN_SMALL})\s*月\s*(?P<cd>\d{{1,2}}|{_CN_SMALL})\s*[日号]"
    # Nov 20, November 20th, 2026
    rf"|(?<![A-Za-z])(?P<em>{_MONTH})(?![A-Za-z])\.?\s+(?P<ed>\d{{1,2}})(?i:st|nd|rd|th)?"
    r"(?![0-9A-Za-z])(?:,?\s+(?P<ey>\d{4})(?![0-9]))?"
    # 20 November 2026, 20th of Nov
    rf"|(?<![A-Za-z0-9])(?P<fd>\d{{1,2}})(?i:st|nd|rd|th)?\s+(?:of\s+)?(?P<fm>{_MONTH})"
    r"(?![A-Za-z])\.?(?:,?\s+(?P<fy>\d{4})(?![0-9]))?"
)

_CURRENCY_PREFIX = r"(?:US\$|HK\$|\$|¥|€|£|(?<![A-Za-z])(?i:RMB|CNY|USD|HKD|EUR)|人民币)"
_CURRENCY_SUFFIX = (
    r"(?:元|块钱?|美元|欧元|英镑|港币|港元|人民币"
    r"|(?i:yuan|rmb|cny|usd|hkd|dollars?|bucks|euros?)(?![A-Za-z]))"
)
_PRICE_RE = re.compile(
    rf"{_CURRENCY_PREFIX}\s*(?P<pa>{_AR})(?:\s*(?P<pm>[万千]))?"
    rf"|(?P<sa>{_AR}|{_CN}|{_EN})\s*(?P<sm>[万千])?\s*{_CURRENCY_SUFFIX}"
)

_RANGE_SEP = r"\s*(?:-|–|—|~|至|到|(?<![A-Za-z])to(?![A-Za-z]))\s*"
_ZH_UNIT = r"(?:个\s*)?(?:工作日|自然日|小时|钟头|星期|礼拜)|个\s*月|分钟|天|日|周|年|秒钟?"
_EN_UNIT = (
    r"(?i:(?:business|working|calendar|work)[ -]days?|workdays?|days?|hours?|hrs?|h"
    r"|minutes?|mins?|weeks?|wks?|months?|years?|yrs?|seconds?|secs?)(?![A-Za-z])"
)
_DURATION_RE = re.compile(
    rf"(?P<a>{_NUM})(?:{_RANGE_SEP}(?P<b>{_NUM}))?\s*-?\s*(?P<unit>{_ZH_UNIT}|{_EN_UNIT})"
)

_DAYS_AFTER = ("内", "以内", "之内", "后", "以后", "之后", "前", "以前", "起")
_PERCENT_RE = re.compile(
    rf"(?P<a>{_AR}|{_CN}|{_EN})\s*(?:%|(?i:percent|per cent)(?![A-Za-z])|个百分点)"
    rf"|百分之\s*(?P<b>{_AR}|{_CN})"
    # Discounts: "8折" / "八折" is 80% of the price, "8.5折" 85%; compared as written.
    rf"|(?P<c>{_AR}|{_CN})\s*折(?!扣)"
)
# Chinese numerals before a measure word: "十五件", "二十个".
_CN_COUNT_RE = re.compile(rf"(?P<a>{_CN})(?=[个件次位名人家台份张单笔项条款种倍])")

_TIME_RE = re.compile(
    r"(?<![0-9:.])(?P<h>[01]?\d|2[0-4]):(?P<m>[0-5]\d)(?![0-9])"
    r"(?:\s*(?P<ap>(?i:am|pm|a\.m\.|p\.m\.)))?"
    r"|(?<![A-Za-z0-9])(?P<h2>1[0-2]|0?[1-9])\s*(?P<ap2>(?i:am|pm|a\.m\.|p\.m\.))(?![A-Za-z])"
    r"|(?P<pre>上午|早上|早晨|中午|下午|晚上|傍晚|凌晨)\s*(?P<h3>\d{1,2}|[一二两三四五六七八九十]{1,3})"
    r"\s*[点时](?:\s*(?P<half>半)|\s*(?P<m3>\d{1,2})\s*分)?"
    r"|(?<![0-9第])(?P<h4>\d{1,2})\s*[点时](?:\s*(?P<half4>半)|\s*(?P<m4>\d{1,2})\s*分)?"
)
_AFTERNOON = frozenset({"下午", "晚上", "傍晚"})

_PLAIN_NUMBER_RE = re.compile(_AR)
# "1. ", "2、", "3) " at the start of a line: list markers.
_LIST_MARKER_AFTER = re.compile(r"(?:[.)]\s|[.)]$|、)")


@dataclass(frozen=True)
class _Candidate:
    start: int
    end: int
    kind: str
    key: str


def _emails(text: str) -> Iterator[_Candidate]:
    for m in _EMAIL_RE.finditer(text):
        yield _Candidate(m.start(), m.end(), EMAIL, m.group().lower())


def _trim_url(url: str) -> str:
    while url and (
        url[-1] in _URL_TRAILING or (url[-1] == ")" and url.count("(") < url.count(")"))
    ):
        url = url[:-1]
    return url


def _url_key(url: str) -> str:
    key = re.sub(r"^[a-z][a-z0-9+.-]*://", "", url.lower())
    key = key.removeprefix("www.").split("#", 1)[0]
    path, _, query = key.partition("?")
    path = path.rstrip("/")
    return f"{path}?{query}" if query else path


def _urls(text: str) -> Iterator[_Candidate]:
    for m in _URL_RE.finditer(text):
        url = _trim_url(m.group())
        if "." in url:
            yield _Candidate(m.start(), m.start() + len(url), URL, _url_key(url))


def _orders(text: str) -> Iterator[_Candidate]:
    for m in _ORDER_RE.finditer(text):
        letters = m.group(1)
        if letters.upper() in _NOT_ORDER_PREFIXES or not (letters.isupper() or letters.islower()):
            continue  # "Tel4008201234", "Abc123456": a label or a word, not an order number
        yield _Candidate(m.start(), m.end(), ORDER, (letters + m.group(2)).upper())


def _split_country(digits: str) -> tuple[str, str]:
    """(country code, national number) of an international number's digits."""
    digits = digits.removeprefix("00")
    for code in _COUNTRY_CODES:
        if digits.startswith(code):
            return code, digits[len(code) :]
    return digits[:2], digits[2:]


def _phones(text: str) -> Iterator[_Candidate]:
    for m in _PHONE_RE.finditer(text):
        start, end = m.start(), m.end()
        if not m.group("intl"):
            yield _Candidate(start, end, PHONE, re.sub(r"\D", "", m.group()))
            continue
        # An international number may have swallowed a following number ("… 5678 24小时"):
        # drop trailing groups until the national part has a plausible length.
        while True:
            code, national = _split_country(re.sub(r"\D", "", text[start:end]))
            if len(national) <= _NATIONAL_MAX.get(code, 12):
                break
            end = max(text.rfind(separator, start, end) for separator in " .-(")
            if end <= start:
                break
        end = start + len(text[start:end].rstrip(" .-("))
        if len(national) >= 6 and end > start:
            yield _Candidate(start, end, PHONE, national if code == "86" else code + national)


def _small_int(token: str) -> int | None:
    if token.isdigit():
        return int(token)
    return _chinese_int(token)


def _date_key(year: int | None, month: int, day: int) -> str | None:
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    return f"{year:04d}-{month:02d}-{day:02d}" if year else f"--{month:02d}-{day:02d}"


def _english_month(token: str) -> int | None:
    if token.lower() == "may" and token[0] != "M":
        return None  # the verb: "you may 20 …"
    return _MONTHS[token[:3].lower()]


def _date_matches(text: str) -> Iterator[tuple[int, int, list[str]]]:
    """(start, end, keys) of each date; a slash date both of whose numbers could be the month
    has both readings."""
    for m in _DATE_RE.finditer(text):
        keys: list[str | None] = []
        year: int | None
        if m.group("iy"):
            keys = [_date_key(int(m.group("iy")), int(m.group("im")), int(m.group("id")))]
        elif m.group("sy"):
            a, b, year = int(m.group("sa")), int(m.group("sb")), int(m.group("sy"))
            keys = [_date_key(year, a, b), _date_key(year, b, a)]
        elif m.group("cm"):
            year_text = m.group("cy")
            year = _small_int(year_text) if year_text else None
            month, day = _small_int(m.group("cm")), _small_int(m.group("cd"))
            if month is not None and day is not None:
                keys = [_date_key(year, month, day)]
        elif m.group("em"):
            month_number = _english_month(m.group("em"))
            if month_number is not None:
                year = int(m.group("ey")) if m.group("ey") else None
                keys = [_date_key(year, month_number, int(m.group("ed")))]
        else:
            month_number = _english_month(m.group("fm"))
            if month_number is not None:
                year = int(m.group("fy")) if m.group("fy") else None
                keys = [_date_key(year, month_number, int(m.group("fd")))]
        valid = [key for key in keys if key]
        if valid:
            yield m.start(), m.end(), valid


def _dates(text: str) -> Iterator[_Candidate]:
    for start, end, keys in _date_matches(text):
        # US order first: "11/20/2026" is 20 November; "20/11/2026" has only that reading.
        yield _Candidate(start, end, DATE, keys[0])


def _prices(text: str) -> Iterator[_Candidate]:
    for m in _PRICE_RE.finditer(text):
        if m.group("pa"):
            values = _scaled([_canon(m.group("pa"))], m.group("pm"))
        else:
            values = _scaled(_number_values(m.group("sa")), m.group("sm"))
        if len(values) == 1:
            yield _Candidate(m.start(), m.end(), PRICE, values[0])


def _durations(text: str) -> Iterator[_Candidate]:
    for m in _DURATION_RE.finditer(text):
        values = _number_values(m.group("a"))
        if m.group("b"):
            values += _number_values(m.group("b"))
        if not values:
            continue
        unit = m.group("unit")
        if unit == "年" and Decimal(values[0]) >= 100:
            continue  # "2026年" is a year, not a duration
        if (
            unit == "日"
            and m.group("a")[0].isdigit()
            and not m.group("b")
            and not text.startswith(_DAYS_AFTER, m.end())
        ):
            continue  # "20日" alone is a day of the month ("7日内" is a duration)
        yield _Candidate(m.start(), m.end(), DURATION, "-".join(values))


def _percents(text: str) -> Iterator[_Candidate]:
    for m in _PERCENT_RE.finditer(text):
        values = _number_values(m.group("a") or m.group("b") or m.group("c"))
        if len(values) == 1:
            yield _Candidate(m.start(), m.end(), NUMBER, values[0])


def _counted_numerals(text: str) -> Iterator[_Candidate]:
    for m in _CN_COUNT_RE.finditer(text):
        value = _chinese_int(m.group("a"))
        if value is not None and value >= 10:  # like Arabic numbers: one digit is not a fact
            yield _Candidate(m.start(), m.end(), NUMBER, str(value))


def _time_matches(text: str) -> Iterator[tuple[int, int, int, int]]:
    """(start, end, hour 0-24, minute) of each clock time."""
    for m in _TIME_RE.finditer(text):
        minute = 0
        if m.group("h"):
            hour, minute, marker = int(m.group("h")), int(m.group("m")), m.group("ap")
        elif m.group("h2"):
            hour, marker = int(m.group("h2")), m.group("ap2")
        elif m.group("h3"):
            parsed = _small_int(m.group("h3"))
            if parsed is None:
                continue
            hour, marker = parsed, "pm" if m.group("pre") in _AFTERNOON else None
            minute = 30 if m.group("half") else int(m.group("m3") or 0)
        else:
            hour, marker = int(m.group("h4")), None
            minute = 30 if m.group("half4") else int(m.group("m4") or 0)
        if marker and marker[0].lower() == "p" and hour < 12:
            hour += 12
        if hour <= 24 and minute < 60:
            yield m.start(), m.end(), hour, minute


def _times(text: str) -> Iterator[_Candidate]:
    for start, end, hour, minute in _time_matches(text):
        yield _Candidate(start, end, NUMBER, f"{hour}:{minute:02d}")


def _is_list_marker(text: str, start: int, end: int) -> bool:
    line_start = text.rfind("\n", 0, start) + 1
    return not text[line_start:start].strip() and bool(_LIST_MARKER_AFTER.match(text, end))


def _plain_numbers(text: str) -> Iterator[_Candidate]:
    for m in _PLAIN_NUMBER_RE.finditer(text):
        number = m.group()
        if "." not in number and len(number.replace(",", "")) < 2:
            continue  # a lone digit: "1 item", "step 2"
        if len(number) <= 2 and _is_list_marker(text, m.start(), m.end()):
            continue
        yield _Candidate(m.start(), m.end(), NUMBER, _canon(number))


def _fact_candidates(text: str) -> list[_Candidate]:
    """Non-overlapping fact candidates of folded text, in text order: longer spans first, then
    the more specific kind."""
    candidates = [
        *_emails(text),
        *_urls(text),
        *_orders(text),
        *_phones(text),
        *_dates(text),
        *_prices(text),
        *_durations(text),
        *_percents(text),
        *_counted_numerals(text),
        *_times(text),
        *_plain_numbers(text),
    ]
    candidates.sort(key=lambda c: (c.start - c.end, _KIND_RANK[c.kind], c.start))
    taken: list[_Candidate] = []
    for candidate in candidates:
        if all(candidate.end <= t.start or candidate.start >= t.end for t in taken):
            taken.append(candidate)
    taken.sort(key=lambda c: c.start)
    return taken


def _facts(original: str, folded: _Folded, candidates: list[_Candidate]) -> list[Fact]:
    facts = []
    for candidate in candidates:
        start, end = folded.span(candidate.start, candidate.end)
        facts.append(Fact(candidate.kind, original[start:end], start, end, candidate.key))
    return facts


def extract_facts(text: str) -> list[Fact]:
    """The hard facts of `text`, in order, no two overlapping (see the module docstring)."""
    folded = _fold(text)
    return _facts(text, folded, _fact_candidates(folded.text))


# --- Content tokens ------------------------------------------------------------------------------

_EXTRA_STOPWORDS = frozenset(
    {
        "us",
        "let",
        "ll",
        "re",
        "ve",
        "won",
        "isn",
        "aren",
        "doesn",
        "didn",
        "wasn",
        "weren",
        "hasn",
        "haven",
        "couldn",
        "wouldn",
        "shouldn",
        "yes",
        "ok",
        "okay",
        "sure",
        "dear",
    }
)
_STOPWORDS = ENGLISH_STOPWORDS | _EXTRA_STOPWORDS
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN_RE = re.compile(rf"[a-z][a-z0-9]*(?:['’][a-z]+)?|[{_HAN}]+")
# Function characters and generic words that break Han runs instead of forming bigrams
# ("退款已经原路退回" -> 退款, 原路退回): like English stop words, they say nothing a source must
# back. Not 请 (申请), 还 (还款) or 在 (在线): those also carry meaning in this domain.
_ZH_BREAKS_RE = re.compile(
    "已经|一般|需要|通常|大约|左右|进行|如果|因为|所以|但是|然后|或者|还是|以及|目前|现在|马上"
    "|立即|非常|具体|相关|什么|怎么|如何|没有|不会|"
    "[的了着过吗呢吧啊呀哦嘛是和与及或也都就您你我他她它们这那个之很将会能可以为于对已]"
)

# Pleasantries carry no claim; their words are removed before a sentence is tokenised, so
# "如有其他问题请随时联系我们。" is not checked while "感谢您的耐心，退款已原路退回" still is (on
# its second half). Matched on the folded, lower-cased sentence.
_PLEASANTRY_RE = re.compile(
    "|".join(
        [
            r"如(?:果)?(?:您)?(?:还)?有(?:其他|其它|任何|什么)?(?:问题|疑问|需要|需求)",
            r"(?:请)?(?:随时|欢迎)(?:与我们|和我们)?(?:联系|咨询|告诉)(?:我们|客服)?",
            r"(?:希望|但愿)(?:以上|这些|我的)?(?:信息|回答|解答|内容|回复)?(?:能|可以)?"
            r"(?:对您)?有(?:所)?帮助",
            r"(?:非常|十分)?(?:感谢|谢谢)(?:您的?)?(?:耐心|理解|支持|咨询|来信|等待|配合|反馈|信任)?",
            r"(?:很|非常)?(?:高兴|乐意)(?:为您服务|为您解答|帮助您|帮您|为您效劳)",
            rf"祝您[{_HAN}]{{0,6}}",
            r"(?:给您)?带来(?:的)?不便(?:，)?(?:敬请谅解|深表歉意|非常抱歉)?",
            r"(?:非常|十分|很)?抱歉",
            r"不客气|您好|亲爱的(?:顾客|用户|客户)",
            r"(?:还有)?(?:什么|其他)(?:可以|能)(?:为您|帮您)(?:做|效劳|帮忙|服务)?(?:的)?(?:吗)?",
            r"hope (?:this|that|it) helps?",
            r"(?:please )?(?:feel free to|don['’]?t hesitate to|do not hesitate to) "
            r"(?:contact|reach out to|ask|let)(?: us| me)?",
            r"let (?:me|us) know if you have any (?:other |more |further )?questions?",
            r"(?:if you have|should you have) any (?:other |more |further )?questions?",
            r"thank(?:s| you)(?: so much| very much)?(?: for (?:your )?(?:patience|understanding"
            r"|message|question|contacting us|reaching out|waiting|support))?",
            r"(?:i['’]?m|we['’]?re|i am|we are) (?:happy|glad) to help",
            r"have a (?:great|nice|good|wonderful) day",
            r"is there anything else (?:i|we) can (?:help you with|do for you|help with)",
            r"(?:sorry|apologies) for (?:the|any) inconvenience",
            r"you['’]?re welcome",
        ]
    )
)


def _tokens(folded_lower: str) -> Iterator[str]:
    for m in _TOKEN_RE.finditer(folded_lower):
        token = m.group()
        if token[0].isascii():
            word = re.split("['’]", token, maxsplit=1)[0]
            if len(word) > 1 and word not in _STOPWORDS:
                yield stem(word)
        else:
            for run in _ZH_BREAKS_RE.split(token):
                for i in range(len(run) - 1):
                    yield run[i : i + 2]


def _content_tokens(folded_sentence: str) -> set[str]:
    lowered = folded_sentence.lower()
    return set(_tokens(_PLEASANTRY_RE.sub(" ", lowered)))


# --- Evidence ------------------------------------------------------------------------------------

_EVIDENCE_NUMBER_RE = re.compile(
    r"(?<![0-9])(?<!\d\.)(?P<ar>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)(?![0-9])(?:\s*(?P<m>[万千]))?"
    rf"|(?P<cn>{_CN})|(?P<half>半)(?=[小个天年月周])|(?P<en>{_EN})"
)
# "一" in these words is not a number: 一般, 一些, 一起, 统一, 唯一 ...
_NOT_ONE_AFTER = frozenset("般些起直定样切旦致律共下并同边")
_NOT_ONE_BEFORE = frozenset("统唯之万")
# Digit groups a phone number may be split into in the evidence: "400-820-1234", "+86 138 …".
_DIGIT_RUN_RE = re.compile(r"\+?\(?\d+\)?(?:[ \-.]{1,2}\(?\d+\)?)*")
_EVIDENCE_ORDER_RE = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2,4})[ \-]?(\d+(?:[ \-]\d+)*)(?![0-9])")
_MAX_JOINED_GROUPS = 6


class Evidence:
    """The sources and the conversation, indexed once so that `supports` and
    `sentence_support` are set look-ups (the streaming check calls them on every chunk)."""

    def __init__(self, texts: list[str]) -> None:
        self._numbers: set[str] = set()
        self._digit_strings: set[str] = set()
        self._emails: set[str] = set()
        self._urls: set[str] = set()
        self._orders: set[str] = set()
        self._dates: dict[str, set[str]] = {}  # "--11-20" -> {"2026", ""}: years seen
        self._times: set[tuple[int, int]] = set()
        self._tokens: set[str] = set()
        for text in texts:
            self._add(_fold(text).text)

    def _add(self, text: str) -> None:
        self._add_numbers(text)
        self._add_digit_runs(text)
        self._emails.update(m.group().lower() for m in _EMAIL_RE.finditer(text))
        for candidate in _urls(text):
            self._add_url(candidate.key)
        for m in _EVIDENCE_ORDER_RE.finditer(text):
            digits = re.sub(r"\D", "", m.group(2))
            if len(digits) >= 6:
                self._orders.add((m.group(1) + digits).upper())
        for _start, _end, keys in _date_matches(text):
            for key in keys:
                self._dates.setdefault("--" + key[-5:], set()).add(key[:-6].lstrip("-"))
        for _start, _end, hour, minute in _time_matches(text):
            self._times.add((hour % 12, minute))
        self._tokens.update(_tokens(text.lower()))

    def _add_numbers(self, text: str) -> None:
        for m in _EVIDENCE_NUMBER_RE.finditer(text):
            if m.group("ar"):
                value = _canon(m.group("ar"))
                self._numbers.add(value)
                self._numbers.update(_scaled([value], m.group("m")))
            elif m.group("cn"):
                run = m.group("cn")
                if run == "一" and (
                    text[m.end() : m.end() + 1] in _NOT_ONE_AFTER
                    or text[m.start() - 1 : m.start()] in _NOT_ONE_BEFORE
                ):
                    continue
                self._numbers.update(_number_values(run))
            elif m.group("half"):
                self._numbers.add("0.5")
            else:
                self._numbers.update(_number_values(m.group("en")))

    def _add_digit_runs(self, text: str) -> None:
        """Every join of up to six neighbouring digit groups, so a phone number written
        "400-820-1234", "400 820 1234" or "(021) 1234 5678" is found on its digits."""
        for run in _DIGIT_RUN_RE.finditer(text):
            groups = re.findall(r"\d+", run.group())
            for i in range(len(groups)):
                joined = ""
                for j in range(i, min(len(groups), i + _MAX_JOINED_GROUPS)):
                    joined += groups[j]
                    if len(joined) < 6:
                        continue
                    self._digit_strings.add(joined)
                    national = joined.removeprefix("00")
                    if national.startswith("86") and len(national) in (12, 13):
                        self._digit_strings.add(national[2:])  # +86 138…, 0086 400…

    def _add_url(self, key: str) -> None:
        self._urls.add(key)
        path = key.split("?", 1)[0]
        # Every whole-segment prefix: "a.com", "a.com/help", "a.com/help/refund".
        parts = path.split("/")
        for end in range(1, len(parts) + 1):
            self._urls.add("/".join(parts[:end]))

    def supports(self, fact: Fact) -> bool:
        """Whether the evidence contains `fact` (see the module docstring for each kind)."""
        key = fact.key
        if fact.kind == PHONE:
            return any(variant in self._digit_strings for variant in _phone_variants(fact))
        if fact.kind == EMAIL:
            return key in self._emails
        if fact.kind == URL:
            return key in self._urls or key.split("?", 1)[0] in self._urls
        if fact.kind == ORDER:
            return key in self._orders
        if fact.kind == DATE:
            years = self._dates.get("--" + key[-5:])
            if years is None:
                return False
            year = key[:-6].lstrip("-")
            return not year or "" in years or year in years
        if fact.kind == NUMBER and ":" in key:
            hour, minute = key.split(":")
            return (int(hour) % 12, int(minute)) in self._times
        if fact.kind in (PRICE, DURATION, NUMBER):
            # Durations compare their numbers only: "7天" is backed by "7 days" and by "七天",
            # and converting units ("48小时" vs "2天") would let the answer restate a number the
            # evidence never gives, which is what this check is for. The cost: a correct unit
            # conversion in an answer is flagged, and "7 hours" is backed by "7 days".
            return all(value in self._numbers for value in key.split("-"))
        return False

    def sentence_support(self, sentence: str) -> float:
        """Share of the sentence's distinct content tokens found in the evidence (pleasantries
        removed first); 1.0 for a sentence without content tokens."""
        return self._share(_content_tokens(_fold(sentence).text))

    def _share(self, tokens: set[str]) -> float:
        if not tokens:
            return 1.0
        return len(tokens & self._tokens) / len(tokens)


def _phone_variants(fact: Fact) -> Iterator[str]:
    """The fact's digits, and the same without a country code the evidence may not write."""
    yield fact.key
    text = _fold(fact.text).text.lstrip()
    if text.startswith(("+", "00")):
        yield _split_country(re.sub(r"\D", "", text))[1]
    elif re.match(r"1[ \-.]", text):
        yield fact.key[1:]  # 1-800-555-0199 against 800-555-0199


# --- Checking ------------------------------------------------------------------------------------

# Sentence ends: Chinese marks on their own, "." before white space or the end, new lines.
_SENTENCE_END_RE = re.compile(r"[。!?;]+|\.+(?=\s|$)|\n")
_ABBREVIATIONS = frozenset({"e.g", "i.e", "etc", "mr", "mrs", "ms", "dr", "no", "vs", "approx"})


def _sentence_spans(text: str, facts: Iterable[_Candidate]) -> list[tuple[int, int]]:
    """(start, end) of each sentence of folded text, never splitting inside a fact ("Nov. 20")."""
    inside = [(fact.start, fact.end) for fact in facts]
    spans = []
    start = 0
    for m in _SENTENCE_END_RE.finditer(text):
        end = m.end()
        if any(s < end < e for s, e in inside):
            continue
        if m.group().startswith(".") and len(m.group()) == 1:
            word = re.search(r"[A-Za-z.]+$", text[start : m.start()])
            if word and word.group().lower() in _ABBREVIATIONS:
                continue
        spans.append((start, end))
        start = end
    spans.append((start, len(text)))
    trimmed = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if s < e:
            trimmed.append((s, e))
    return trimmed


def last_sentence_start(text: str) -> int:
    """Where the last sentence of `text` starts (an offset into `text`), splitting as `check`
    does (never inside a fact). A streaming check that has passed `text` can start its next
    check there: earlier sentences and their facts are final."""
    folded = _fold(text)
    spans = _sentence_spans(folded.text, _fact_candidates(folded.text))
    if not spans:
        return 0
    return folded.origin[spans[-1][0]]


def unsupported_facts(text: str, evidence: Evidence) -> list[Fact]:
    """The facts of `text` the evidence does not contain, in order."""
    return [fact for fact in extract_facts(text) if not evidence.supports(fact)]


def check(answer: str, evidence: Evidence, *, sentence_threshold: float = 0.5) -> Grounding:
    """Grounding of `answer` in `evidence`: unsupported facts and sentences, and the score (see
    `Grounding`). `sentence_threshold` is the share of a sentence's content tokens that must
    occur in the evidence."""
    folded = _fold(answer)
    candidates = _fact_candidates(folded.text)
    facts = _facts(answer, folded, candidates)
    bad = [fact for fact in facts if not evidence.supports(fact)]
    unsupported: list[dict[str, Any]] = [
        {"kind": f.kind, "text": f.text, "start": f.start, "end": f.end} for f in bad
    ]
    checked = supported = 0
    for s, e in _sentence_spans(folded.text, candidates):
        tokens = _content_tokens(folded.text[s:e])
        start, end = folded.span(s, e)
        holds_bad_fact = any(f.start < end and f.end > start for f in bad)
        if len(tokens) < MIN_SENTENCE_TOKENS and not holds_bad_fact:
            continue
        checked += 1
        tokens_ok = len(tokens) < MIN_SENTENCE_TOKENS or (
            evidence._share(tokens) >= sentence_threshold
        )
        if tokens_ok and not holds_bad_fact:
            supported += 1
        elif not tokens_ok:
            unsupported.append(
                {"kind": SENTENCE, "text": answer[start:end], "start": start, "end": end}
            )
    unsupported.sort(key=lambda entry: (entry["start"], entry["kind"] != SENTENCE))
    return Grounding(
        score=supported / checked if checked else 1.0,
        unsupported=unsupported,
        sentences=checked,
        supported=supported,
        facts=len(facts),
    )


# --- Streaming ----------------------------------------------------------------------------------

# Characters a fact may still be growing through: digits, letters (URLs, e-mail addresses, order
# numbers, "7 da…"), URL and number punctuation, currency signs and Chinese numerals.
_HOLD_CHARS = frozenset(
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "@._:/%+-#$¥€£,=&?~()'" + _CN_NUMERAL_CHARS + "半"
)
_NUMERIC_CHARS = frozenset("0123456789" + _CN_NUMERAL_CHARS + "半")
# A space after these may still be inside a fact: "400 820 1234", "(021) 1234", "七 天".
_SPACED = _NUMERIC_CHARS | {")"}
# Characters that continue a number into a unit or a date ("3-5个工作日", "11月20日", "百分之十",
# "3到5天"), held back only when a number comes before them.
_UNIT_CHARS = frozenset("个工作日自然小时钟头分秒天周星期礼拜月年号点元块钱美欧英镑港币人民之到至")
# A number followed by at most two words, at the end: "3 to 5 business " may still become a
# duration whose first number must not be shown before the whole of it is checked.
_PENDING_RE = re.compile(
    rf"(?:(?<![0-9A-Za-z.,\-/+:#@_])[0-9][0-9.,]*|{_EN})(?:{_RANGE_SEP}(?:[0-9][0-9.,]*|{_EN})?)?"
    r"[ \t\-]*(?:[A-Za-z]+[ \t\-]*){0,2}$"
)
_PENDING_WINDOW = 48


def _folded_char(char: str) -> str:
    return char if char.isascii() else unicodedata.normalize("NFKC", char)[:1]


def safe_prefix_end(text: str) -> int:
    """Length of the longest prefix of a still-growing answer whose facts are all complete.

    Holds back a trailing run that could still be part of a fact (a number, URL or e-mail
    address being typed, "3-5个工" before "作日", "7 business " before "days"). The caller checks
    `unsupported_facts(text[:end])` and releases `text[:end]`; it keeps the furthest end it has
    released, and checks and releases the whole text once the stream ends (a complete "7天" at
    the very end is held back until then, as "7天" might still become "7天内" or "7天后").
    """
    i = len(text)
    while i > 0:
        char = _folded_char(text[i - 1])
        if char in _HOLD_CHARS:
            i -= 1
        elif char in " \t\u00a0\u3000" and i >= 2 and _folded_char(text[i - 2]) in _SPACED:
            i -= 1  # between digit groups: "400 820 12", "+86 138"
        elif char in _UNIT_CHARS:
            j = i - 1
            while j > 0 and text[j - 1] in _UNIT_CHARS:
                j -= 1
            if j > 1 and text[j - 1] in " \t" and _folded_char(text[j - 2]) in _NUMERIC_CHARS:
                j -= 1  # "3 个工作日"
            if j > 0 and _folded_char(text[j - 1]) in _NUMERIC_CHARS:
                i = j
            else:
                break
        else:
            break
    window_start = max(0, i - _PENDING_WINDOW)
    window = _fold(text[window_start:])
    pending = _PENDING_RE.search(window.text)
    if pending is not None:
        i = min(i, window_start + window.origin[pending.start()])
    return i
