"""Personal data (PII) in Chinese and English text: find it, and replace it with placeholders
before the text reaches an LLM, a log line or the audit trail.

Pure Python, no Django: importable from anywhere, no app registry or database needed.

Kinds and what each one takes (every digit rule refuses a match glued to a letter or another
digit, so order numbers such as "LM2026112001" never yield a phone or a card):

- ``phone``: mainland mobiles ``1[3-9]`` + 9 digits, optionally after +86 / 86 / 0086, with single
  spaces or dashes as in "138 0013 8000" / "138-0013-8000"; mainland landlines with an area code
  and a separator ("010-12345678", "(0755) 1234567", "0755-1234567-801"); North American numbers
  "(415) 555-0100", "415-555-0100", "+1 415 555 0100"; any other "+" number with 8-15 digits in
  groups ("+44 20 7946 0958"). "400-"/"800-" numbers without "+1" are not taken: in China they
  are company hotlines, not a person's number. Dates, amounts and short numbers never match.
- ``email``: ``local@domain.tld`` with an ASCII local part (full-width "＠" and letters count).
- ``id_card``: Chinese resident ID, 18 characters (17 digits and a digit or X) whose GB 11643-1999
  check character is right, whose first two digits are a province code (or 81/82/83 for Hong
  Kong, Macao and Taiwan residents, 91 for foreign permanent residents) and whose birth date is a
  real day between 1900-01-01 and today; or the 15-digit legacy form (19YY birth year) with a
  real date. Groups "110105 19491231 002X" are taken too.
- ``bank_card``: 13-19 digits, contiguous or in groups of four (the last group shorter; also the
  4-6-5 American Express layout), passing the Luhn check and starting with 2-6, 8 or 9 (card
  networks; this keeps millisecond timestamps and many parcel numbers out).
- ``ip``: IPv4 with octets 0-255 (no leading zeros), not inside a longer dotted run ("1.2.3.4.5")
  and not after "v" / "version" / "版本"; IPv6 validated by :mod:`ipaddress`, at least two colons
  and either four groups or one group of three or more hex digits (so "a::b" is left alone).
- ``address``: Chinese: one or more administrative units (…省/自治区/市/区/县/旗/镇/乡/街道), a
  road (…路/街/道/大道/巷/弄/胡同), a house number "100号" (lane "123弄4号" too), then any
  building, unit, floor or room parts ("SOHO现代城3号楼1201室", "2单元501室"). English: a house
  number ("221B"), one to four capitalised words (or "5th") and a street suffix (Street, St, Road,
  Rd, Avenue, Ave, Boulevard, Blvd, Lane, Ln, Drive, Dr, Way, Court, Ct, Place, Pl, Parkway,
  Pkwy, …), then optionally ", Apt 4B" / ", Suite 200" and a city when a US state / ZIP or a UK
  postcode follows it ("1600 Amphitheatre Parkway, Mountain View, CA 94043").

Matching runs on a copy folded with NFKC character by character (full-width digits, letters,
"＠", "．", "（" become ASCII) while the spans stay those of the text as written:
``text[span.start:span.end] == span.text`` always holds.

Overlaps: the longest candidate wins; on equal spans the more specific kind, in the order of
``_KIND_RANK`` (an ID-shaped 18-digit string with a valid date and check character is an ID card
even when it also passes Luhn; "8613800138000" is a phone, not a card).

Known limits (we prefer missing an odd address to redacting ordinary support text):

- Chinese addresses need a road and a "号" number: "XX小区3栋501", "科技园南区3号" and numbers in
  Chinese numerals ("一百号") are missed. The first administrative unit's name is not checked
  against a gazetteer: "寄到/住在/我在" before it are trimmed and a known province or
  municipality name cuts it short, but other lead-in words can stay in the span (over-redaction).
- English addresses need capitalised words and a known suffix; "221b baker street", PO boxes and
  a city without state/ZIP/postcode are not covered (the address is, the city is not).
- A four-part version number without a "v"/"version" cue ("1.2.3.4") reads as an IPv4 address.
- International numbers need "+"; "0044 20 7946 0958" is missed. A "+" number followed by more
  digit groups may absorb them (up to 15 digits in all).
- E-mail local parts in Chinese ("张三@qq.com") are missed.
- Luhn passes one random digit string in ten, so a 13-19 digit reference number starting with
  2-6, 8 or 9 can read as a bank card; that errs on the side of redaction.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

PHONE = "phone"
EMAIL = "email"
ID_CARD = "id_card"
BANK_CARD = "bank_card"
IP = "ip"
ADDRESS = "address"

KINDS = frozenset([PHONE, EMAIL, ID_CARD, BANK_CARD, IP, ADDRESS])

# Equal spans: the first kind here wins.
_PLACEHOLDER_RE = re.compile(r"\[(?:" + "|".join(sorted(k.upper() for k in KINDS)) + r")\]")
_KIND_RANK = {EMAIL: 0, ID_CARD: 1, PHONE: 2, BANK_CARD: 3, IP: 4, ADDRESS: 5}


@dataclass(frozen=True)
class PiiSpan:
    """One piece of personal data: `text` is ``original[start:end]`` of the text as written."""

    kind: str
    start: int
    end: int
    text: str


def detect(text: str) -> list[PiiSpan]:
    """The PII spans of `text`, sorted by start, no two overlapping (longest, then most specific,
    wins)."""
    if not text:
        return []
    folded, origin = _fold(text)
    candidates = [
        *_emails(folded),
        *_id_cards(folded),
        *_phones(folded),
        *_bank_cards(folded),
        *_ips(folded),
        *_chinese_addresses(folded),
        *_english_addresses(folded),
    ]
    candidates.sort(key=lambda c: (c[0] - c[1], _KIND_RANK[c[2]], c[0]))
    taken: list[tuple[int, int, str]] = []
    for candidate in candidates:
        start, end, _ = candidate
        if all(end <= t_start or start >= t_end for t_start, t_end, _ in taken):
            taken.append(candidate)
    taken.sort()

    spans = []
    for start, end, kind in taken:
        if origin is not None:
            start, end = origin[start], origin[end - 1] + 1
        spans.append(PiiSpan(kind, start, end, text[start:end]))
    return spans


def redact(text: str, *, kinds: frozenset[str] | None = None) -> tuple[str, list[PiiSpan]]:
    """`text` with each span of `detect(text)` whose kind is in `kinds` (default: all) replaced by
    "[KIND]" ("[PHONE]", "[ID_CARD]", … in Chinese text too), and the spans replaced.

    `kinds` filters what `detect` found; it does not change how overlaps are resolved, so the
    spans returned are always a subset of `detect(text)` with offsets into the original `text`.
    """
    if kinds is not None and not kinds <= KINDS:
        raise ValueError(f"unknown PII kinds: {sorted(kinds - KINDS)}")
    spans = [s for s in detect(text) if kinds is None or s.kind in kinds]
    parts: list[str] = []
    position = 0
    for span in spans:
        parts.append(text[position : span.start])
        parts.append(f"[{span.kind.upper()}]")
        position = span.end
    parts.append(text[position:])
    return "".join(parts), spans


def remove(text: str) -> str:
    """`text` without its personal data (spans deleted, spacing tidied): what a question is
    about, for search and the answer caches, which must not keep a customer's details. The
    placeholders of `redact` go too, so a message as written and as stored give the same."""
    spans = detect(text)
    if not spans and "[" not in text:
        return text
    parts, position = [], 0
    for span in spans:
        parts.append(text[position : span.start])
        position = span.end
    parts.append(text[position:])
    return " ".join(_PLACEHOLDER_RE.sub("", "".join(parts)).split())


def contains_pii(text: str) -> bool:
    """Whether `detect(text)` finds anything."""
    return bool(detect(text))


# --- Folding ---------------------------------------------------------------------------------

_Candidate = tuple[int, int, str]  # start, end (folded coordinates), kind


def _fold(text: str) -> tuple[str, list[int] | None]:
    """NFKC per character, and for each folded character the index of its original one (None
    when the text is ASCII and nothing moves)."""
    if text.isascii():
        return text, None
    chars: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        folded = char if char.isascii() else unicodedata.normalize("NFKC", char)
        chars.append(folded)
        origin.extend([index] * len(folded))
    return "".join(chars), origin


def _glued(text: str, start: int, end: int) -> bool:
    """Whether the match touches a letter or digit on either side (part of a longer token)."""
    return (start > 0 and text[start - 1].isascii() and text[start - 1].isalnum()) or (
        end < len(text) and text[end].isascii() and text[end].isalnum()
    )


# --- E-mail ----------------------------------------------------------------------------------

_EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}"
    r"(?![A-Za-z0-9-])"
)


def _emails(text: str) -> Iterator[_Candidate]:
    for m in _EMAIL_RE.finditer(text):
        yield m.start(), m.end(), EMAIL


# --- ID cards --------------------------------------------------------------------------------

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
# GB/T 2260 province-level codes, plus residence permits (81 HK, 82 Macao, 83 Taiwan) and the
# foreign permanent resident card (91).
_ID_REGIONS = frozenset(
    str(code)
    for first, last in ((11, 15), (21, 23), (31, 37), (41, 46), (50, 54), (61, 65), (71, 71))
    for code in range(first, last + 1)
) | frozenset(["81", "82", "83", "91"])
_ID18_RE = re.compile(
    r"(?<![0-9A-Za-z])(?P<region>\d{6}) ?(?P<birth>(?:19|20)\d{6}) ?(?P<tail>\d{3}[0-9Xx])"
    r"(?![0-9A-Za-z])"
)
_ID15_RE = re.compile(r"(?<![0-9A-Za-z])(?P<region>\d{6})(?P<birth>\d{6})\d{3}(?![0-9A-Za-z])")


def id_check_character(first17: str) -> str:
    """The GB 11643-1999 check character ("0"-"9" or "X") for the first 17 digits of an ID."""
    total = sum(int(digit) * weight for digit, weight in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def _birth_date(yyyymmdd: str) -> date | None:
    try:
        born = date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    except ValueError:
        return None
    return born if date(1900, 1, 1) <= born <= date.today() else None


def _id_cards(text: str) -> Iterator[_Candidate]:
    for m in _ID18_RE.finditer(text):
        region, birth, tail = m.group("region", "birth", "tail")
        if region[:2] not in _ID_REGIONS or _birth_date(birth) is None:
            continue
        if id_check_character(region + birth + tail[:3]) == tail[3].upper():
            yield m.start(), m.end(), ID_CARD
    for m in _ID15_RE.finditer(text):
        if m.group("region")[:2] in _ID_REGIONS and _birth_date("19" + m.group("birth")):
            yield m.start(), m.end(), ID_CARD


# --- Bank cards ------------------------------------------------------------------------------

_CARD_RE = re.compile(
    r"(?<![0-9A-Za-z])(?:\d{13,19}|\d{4}(?:[ -]\d{4}){2,3}(?:[ -]\d{1,3})?|\d{4}[ -]\d{6}[ -]\d{5})"
    r"(?![0-9A-Za-z])"
)
_CARD_FIRST_DIGITS = frozenset("2345689")


def luhn_valid(digits: str) -> bool:
    """Whether a digit string passes the Luhn (mod 10) check."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _bank_cards(text: str) -> Iterator[_Candidate]:
    for m in _CARD_RE.finditer(text):
        digits = re.sub(r"[ -]", "", m.group())
        if 13 <= len(digits) <= 19 and digits[0] in _CARD_FIRST_DIGITS and luhn_valid(digits):
            yield m.start(), m.end(), BANK_CARD


# --- Phones ----------------------------------------------------------------------------------

_MOBILE_RE = re.compile(
    r"(?<![0-9A-Za-z+])(?:(?:\+|00)\s?86[ -]?|86[ -]?)?1[3-9]\d[ -]?\d{4}[ -]?\d{4}"
    r"(?![0-9A-Za-z])"
)
_LANDLINE_RE = re.compile(
    r"(?<![0-9A-Za-z+(-])(?:\((?:010|02\d|0[3-9]\d{2})\)\s?|(?:010|02\d|0[3-9]\d{2})[ -])"
    r"\d{7,8}(?:(?:-|转|ext\.?\s?)\d{1,5})?(?![0-9A-Za-z-])"
)
_NANP_RE = re.compile(
    r"(?<![0-9A-Za-z+(-])(?P<country>\+?1[ -])?"
    r"(?:\((?P<area1>[2-9]\d{2})\)\s?[2-9]\d{2}[- ]\d{4}|(?P<area2>[2-9]\d{2})-[2-9]\d{2}-\d{4})"
    r"(?![0-9A-Za-z-])"
)
# Every group after the country code needs a separator or brackets, so the split is unambiguous.
_INTERNATIONAL_RE = re.compile(
    r"(?<![0-9A-Za-z+])\+(?:[1-9]\d{7,14}"
    r"|[1-9]\d{0,3}(?:[ -]?\(\d{1,5}\)[ -]?\d{1,5}|[ -]\d{1,5}){1,6})(?![0-9A-Za-z])"
)
# Mainland hotlines, written like North American numbers; not a person's number.
_HOTLINE_AREAS = frozenset(["400", "800"])


def _phones(text: str) -> Iterator[_Candidate]:
    for m in _MOBILE_RE.finditer(text):
        yield m.start(), m.end(), PHONE
    for m in _LANDLINE_RE.finditer(text):
        yield m.start(), m.end(), PHONE
    for m in _NANP_RE.finditer(text):
        if m.group("area2") in _HOTLINE_AREAS and not m.group("country"):
            continue
        yield m.start(), m.end(), PHONE
    for m in _INTERNATIONAL_RE.finditer(text):
        if 8 <= sum(c.isdigit() for c in m.group()) <= 15:
            yield m.start(), m.end(), PHONE


# --- IP addresses ----------------------------------------------------------------------------

_IPV4_RE = re.compile(r"(?<![0-9A-Za-z.])(?:\d{1,3}\.){3}\d{1,3}(?![0-9A-Za-z]|\.[0-9A-Za-z])")
_VERSION_CUE_RE = re.compile(r"(?:\bversion|\bver\.?|版本号?|\bv)\s*[:=]?\s*$", re.IGNORECASE)
_IPV6_CANDIDATE_RE = re.compile(r"(?<![0-9A-Za-z.])[0-9A-Fa-f:]*:[0-9A-Fa-f:]*(?:\.\d{1,3}){0,3}")


def _ips(text: str) -> Iterator[_Candidate]:
    for m in _IPV4_RE.finditer(text):
        if _VERSION_CUE_RE.search(text, max(0, m.start() - 12), m.start()):
            continue
        try:
            ipaddress.IPv4Address(m.group())
        except ValueError:
            continue
        yield m.start(), m.end(), IP
    for m in _IPV6_CANDIDATE_RE.finditer(text):
        start, end = m.start(), m.end()
        # "IP:2001:db8::1" / "…::1: down": a single colon at either end is punctuation.
        if text.startswith(":", start) and not text.startswith("::", start):
            start += 1
        if text.endswith(":", start, end) and not text.endswith("::", start, end):
            end -= 1
        candidate = text[start:end]
        if candidate.count(":") < 2 or _glued(text, start, end):
            continue
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        groups = [g for g in re.split(r"[:.]", candidate) if g]
        if len(groups) >= 4 or any(len(g) >= 3 for g in groups):
            yield start, end, IP


# --- Addresses -------------------------------------------------------------------------------

_CJK = "\u4e00-\u9fff"
_CN_UNITS = "特别行政区|自治区|自治州|自治县|街道|地区|省|市|盟|区|县|旗|镇|乡"
_CN_ROADS = "胡同|路|街|道|巷|弄"
# The anchor: a road word, a house number and "号", then building/unit/floor/room parts. Only
# around these rare anchors does the costlier backward match for the administrative units run.
_CN_ANCHOR_RE = re.compile(
    rf"(?:{_CN_ROADS})\s?(?:\d{{1,5}}(?:-\d{{1,5}})?弄\s?)?\d{{1,5}}(?:-\d{{1,5}})?\s?号"
    rf"(?:\s?[A-Za-z{_CJK}]{{0,8}}?(?:\d{{1,5}}|[A-Za-z])\s?(?:号楼|栋|幢|座|单元|层|楼|室|房|户))*"
)
_CN_PREFIX_RE = re.compile(
    rf"(?P<first>[{_CJK}]{{2,7}}?)(?:{_CN_UNITS})(?:\s?[{_CJK}]{{1,7}}?(?:{_CN_UNITS}))*"
    rf"\s?[{_CJK}0-9A-Za-z]{{1,12}}?\Z"
)
_CN_LOOKBACK = 48
# Words that end a lead-in before the address ("寄到…", "我住在…", "地址是…"); none of these
# characters starts a province or city name.
_CN_LEAD_IN = frozenset("在是到址为住寄送往的我你他她请把从")
_CN_PROVINCES = re.findall(
    r"\S+",
    "北京 天津 上海 重庆 河北 山西 辽宁 吉林 黑龙江 江苏 浙江 安徽 福建 江西 山东 河南 湖北 湖南 "
    "广东 海南 四川 贵州 云南 陕西 甘肃 青海 台湾 内蒙古 广西 西藏 宁夏 新疆 香港 澳门",
)


def _chinese_addresses(text: str) -> Iterator[_Candidate]:
    for anchor in _CN_ANCHOR_RE.finditer(text):
        # The road word's end: everything before it must be administrative units + road name.
        road_end = anchor.start() + (2 if text.startswith("胡同", anchor.start()) else 1)
        window_start = max(0, anchor.start() - _CN_LOOKBACK)
        prefix = _CN_PREFIX_RE.search(text, window_start, road_end)
        if prefix is None:
            continue
        start = prefix.start()
        first = prefix.group("first")
        province = next((p for p in _CN_PROVINCES if p in first), None)
        if province is not None:
            start += first.index(province)
        else:
            cut = max((i + 1 for i, c in enumerate(first) if c in _CN_LEAD_IN), default=0)
            if len(first) - cut < 2:
                continue  # "我在市区…": no real place name before the unit
            start += cut
        yield start, anchor.end(), ADDRESS


_EN_SUFFIX = (
    r"(?:Street|St\.?|Road|Rd\.?|Avenue|Ave\.?|Boulevard|Blvd\.?|Lane|Ln\.?|Drive|Dr\.?|Way"
    r"|Court|Ct\.?|Place|Pl\.?|Parkway|Pkwy\.?|Terrace|Highway|Hwy\.?|Square|Sq\.?)"
)
_EN_ADDRESS_RE = re.compile(
    r"(?<![0-9A-Za-z/#-])\d{1,6}[A-Za-z]?"
    r"(?:\s(?:[A-Z][A-Za-z'-]*\.?|\d{1,3}(?:st|nd|rd|th))){1,4}"
    rf"\s{_EN_SUFFIX}(?![A-Za-z])"
    r"(?:,?\s(?:Apt|Apartment|Suite|Ste|Unit|Room|Rm|Floor|Fl)\.?\s?#?[A-Za-z0-9-]{1,6}"
    r"|,?\s#\s?[A-Za-z0-9-]{1,6})?"
    r"(?:,\s?[A-Z][A-Za-z]+(?:\s[A-Z][A-Za-z]+){0,2}"  # a city, kept only with what follows:
    r"(?:,?\s[A-Z]{2}(?:\s\d{5}(?:-\d{4})?)?(?![A-Za-z0-9])"  # ", CA 94043" / " CA"
    r"|,?\s\d{5}(?:-\d{4})?(?![0-9])"  # ", 94043"
    r"|\s[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}(?![A-Za-z0-9])))?"  # " NW1 6XE"
)


def _english_addresses(text: str) -> Iterator[_Candidate]:
    for m in _EN_ADDRESS_RE.finditer(text):
        yield m.start(), m.end(), ADDRESS
