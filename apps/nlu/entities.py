"""Entities in a customer's message: order numbers, phone numbers, e-mail addresses, amounts of
money and dates, in Simplified Chinese and English (customers mix the two: "我的 order LM… 昨天").

Rule-based on purpose: every pattern below is something a reader can check against a message,
and the values come out normalised so a form slot can use them as they are (order numbers
upper-case without separators, phones as 11 digits, amounts as "199.00", dates as ISO).

Matching runs on a copy of the message folded with NFKC character by character (full-width
digits, letters, "￥", "＄" and "：" become their ASCII forms) while the spans stay those of the
message as written. The full-width comma "，" is kept: Chinese uses it between clauses, and read
as "," it would turn "3，199元" into one thousand-separated number.

When two matches overlap the longer one wins ("LM13812345678" is an order number, not an order
number containing a phone); on equal spans the more specific kind wins, in the order of
`_KIND_RANK` (an 11-digit number after "订单号" is an order number, not a phone).

Dates are resolved in the local time zone (settings.TIME_ZONE, Asia/Shanghai) against `now`:

- Weeks start on Monday. "上周五" / "last Friday" is the Friday of the previous calendar week,
  even when today is Saturday or Sunday; "周五" / "这周五" / "this Friday" / a bare "Friday" is the
  Friday of the current week, past or future; "下周一" / "next Monday" the Monday of next week.
- A week without a day ("上周", "this week", "next week") is the Monday of that week; "上周末" /
  "last weekend" is that week's Saturday.
- A month and day without a year ("11月20日", "Nov 20", "11/20") is the latest such date that is
  at most `FUTURE_WINDOW` (61 days, about two months) after today: customers mostly talk about
  past orders, so "11月20日" written in January is last year's, while "12月20日" written in late
  November is this year's coming one. Slash dates are month/day ("11/20", "11/20/2026").
- A day alone ("20号") is that day of the current month.
- "N天前" / "N days ago" / "in N days" count calendar days; weeks are 7 days; months are calendar
  months, the day clamped to the month's length (one month before 31 March is 28/29 February).
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.utils import timezone

from apps.core.text import CJK_RE, CN_DIGITS, CN_UNITS, EN_NUMBER_WORDS

ORDER_NUMBER = "order_number"
PHONE = "phone"
EMAIL = "email"
AMOUNT = "amount"
DATE = "date"

# Equal spans: the first kind here wins.
_KIND_RANK = {EMAIL: 0, ORDER_NUMBER: 1, PHONE: 2, DATE: 3, AMOUNT: 4}

FUTURE_WINDOW = timedelta(days=61)


@dataclass(frozen=True)
class Entity:
    """One entity found in a message.

    `value` is normalised: order numbers upper-case without spaces or dashes; phones the 11
    digits without +86; e-mail addresses lower-case; amounts a decimal string with two places
    ("199.00"); dates ISO ("2026-11-20"). `text` is the message's own spelling, at
    `text[start:end]` of the message. `currency` is set for amounts only: "CNY", "USD" or "".
    """

    kind: str
    value: str
    text: str
    start: int
    end: int
    currency: str = ""


@dataclass(frozen=True)
class _Match:
    """A candidate in the folded text's coordinates, before overlaps are resolved."""

    start: int
    end: int
    kind: str
    value: str
    currency: str = ""


def extract_entities(
    text: str, *, now: datetime | None = None, language: str | None = None
) -> list[Entity]:
    """The entities of `text`, sorted by start, with no two spans overlapping.

    `now` is the moment relative dates count from (default: the current local time); an aware
    datetime is converted to the local time zone first, a naive one is taken as local time.
    `language` ("zh"/"en") is accepted so callers can pass the conversation's language, but no
    rule depends on it: customers mix the languages, so the patterns of both always run.
    """
    del language  # see the docstring
    if now is None:
        now = timezone.localtime()
    elif timezone.is_aware(now):
        now = timezone.localtime(now)
    today = now.date()

    folded, origin = _fold(text)
    candidates: list[_Match] = [
        *_emails(folded),
        *_order_numbers(folded),
        *_phones(folded),
        *_dates(folded, today),
        *_amounts(folded),
    ]
    candidates.sort(key=lambda m: (m.start - m.end, _KIND_RANK[m.kind], m.start))
    taken: list[_Match] = []
    for candidate in candidates:
        if all(candidate.end <= t.start or candidate.start >= t.end for t in taken):
            taken.append(candidate)
    taken.sort(key=lambda m: m.start)

    entities = []
    for match in taken:
        start, end = origin[match.start], origin[match.end - 1] + 1
        entities.append(
            Entity(match.kind, match.value, text[start:end], start, end, match.currency)
        )
    return entities


def first(entities: Iterable[Entity], kind: str) -> Entity | None:
    """The first entity of `kind`, or None."""
    return next((e for e in entities if e.kind == kind), None)


# --- Folding ---------------------------------------------------------------------------------

_KEEP_AS_WRITTEN = frozenset("，")


def _fold(text: str) -> tuple[str, list[int]]:
    """NFKC per character, and for each folded character the index of its original one."""
    chars: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        folded = (
            char
            if char.isascii() or char in _KEEP_AS_WRITTEN
            else unicodedata.normalize("NFKC", char)
        )
        chars.append(folded)
        origin.extend([index] * len(folded))
    return "".join(chars), origin


# --- Chinese numerals ------------------------------------------------------------------------

_CN_NUMERAL = "零〇一二两三四五六七八九十百千万"
_CN_DIGIT = "零一二两三四五六七八九"


def chinese_number(numeral: str) -> int | None:
    """The value of a Chinese numeral up to the 万s: "三百五十" 350, "十五" 15, "一百零五" 105.

    A last digit after 百/千/万 counts one place down, as people say prices: "三百五" 350,
    "两千三" 2300, "一万五" 15000. None for what is not a numeral of this form ("二零", "万").
    """
    if not numeral or numeral[0] == "万":
        return None
    total = section = 0
    digit: int | None = None
    last_unit = 0
    after_zero = False
    for char in numeral:
        if char in CN_DIGITS:
            value = CN_DIGITS[char]
            if digit is not None:
                return None  # two digits in a row ("二零二六") is a digit string, not this form
            if value == 0:
                after_zero = True
                continue
            digit = value
        elif char in CN_UNITS:
            unit = CN_UNITS[char]
            if last_unit and unit >= last_unit and section:
                return None  # "十百"
            section += (1 if digit is None else digit) * unit
            digit, last_unit, after_zero = None, unit, False
        elif char == "万":
            if digit is not None:
                section += digit
            total += section * 10_000
            section, digit, last_unit, after_zero = 0, None, 10_000, False
        else:
            return None
    if digit is not None:
        if last_unit >= 100 and not after_zero:
            section += digit * (last_unit // 10)
        else:
            section += digit
    return total + section


def _number(token: str) -> int | None:
    """An Arabic or Chinese small number ("20", "二十")."""
    return int(token) if token.isdigit() else chinese_number(token)


# --- E-mail, order numbers, phones -----------------------------------------------------------

_EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?![A-Za-z0-9-])"
)


def _emails(text: str) -> Iterator[_Match]:
    for m in _EMAIL_RE.finditer(text):
        yield _Match(m.start(), m.end(), EMAIL, m.group().lower())


# Two letters and 8-14 digits; single spaces or dashes may split the digits ("LM 2026-112001").
_LETTERED_ORDER_RE = re.compile(
    r"(?<![A-Za-z0-9])(?P<letters>[A-Za-z]{2})(?P<gap>[ -]?)(?P<digits>\d+(?:[ -]\d+)*)"
    r"(?![A-Za-z0-9])"
)
# Joining digit groups stops once this many digits are in hand (the demo store's length): after a
# complete-looking number a space more likely starts the next word ("LM2026112001 20件").
_ORDER_JOIN_LIMIT = 10
# English words that look like an order prefix when a space follows: "call me at 13812345678".
_TWO_LETTER_WORDS = frozenset(
    [
        "am",
        "an",
        "as",
        "at",
        "be",
        "by",
        "do",
        "go",
        "he",
        "hi",
        "if",
        "in",
        "is",
        "it",
        "me",
        "my",
        "no",
        "of",
        "ok",
        "on",
        "or",
        "so",
        "to",
        "up",
        "us",
        "we",
    ]
)
# A bare run of digits is an order number only right after one of these.
_ORDER_CUE_RE = re.compile(
    r"(?:订单编号|订单号码|订单号|订单|单号|"
    r"(?<![A-Za-z])order\s*(?:number|num|no\.?|id|#)?|#)"
    r"\s*(?:是|为|:|is(?![A-Za-z]))?\s*:?\s*#?\s*(?P<digits>\d{8,20})(?![A-Za-z0-9])",
    re.IGNORECASE,
)


def _order_numbers(text: str) -> Iterator[_Match]:
    for m in _LETTERED_ORDER_RE.finditer(text):
        letters = m.group("letters")
        if m.group("gap") == " " and letters.lower() in _TWO_LETTER_WORDS:
            continue
        groups = re.split(r"[ -]", m.group("digits"))
        digits, end = groups[0], m.start("digits") + len(groups[0])
        for group in groups[1:]:
            if len(digits) >= _ORDER_JOIN_LIMIT:
                break
            digits += group
            end += 1 + len(group)
        if 8 <= len(digits) <= 14:
            yield _Match(m.start(), end, ORDER_NUMBER, (letters + digits).upper())
    for m in _ORDER_CUE_RE.finditer(text):
        yield _Match(m.start("digits"), m.end("digits"), ORDER_NUMBER, m.group("digits"))


_PHONE_RE = re.compile(
    r"(?<![0-9])(?:(?:\+|00)\s?86[ -]?|86[ -]?)?"
    r"(?P<number>1[3-9]\d[ -]?\d{4}[ -]?\d{4})(?![0-9])"
)


def _phones(text: str) -> Iterator[_Match]:
    for m in _PHONE_RE.finditer(text):
        number = re.sub(r"[ -]", "", m.group("number"))
        yield _Match(m.start(), m.end(), PHONE, number)


# --- Amounts ---------------------------------------------------------------------------------

_ARABIC = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_CN_DIGIT_CLASS = f"[0-9{_CN_DIGIT}]"


def _number_pattern() -> str:
    """An amount's number: Arabic (with 万/千/k) or a Chinese numeral."""
    return (
        rf"(?:(?P<arabic>{_ARABIC})(?:\s*(?P<multiplier>[万千]|k(?![A-Za-z])))?"
        rf"|(?P<chinese>[{_CN_NUMERAL}]+))"
    )


_CNY_UNITS = {"元", "块", "块钱", "圆", "yuan", "kuai", "rmb", "cny", "人民币", "¥"}
_USD_UNITS = {"$", "us$", "usd", "dollar", "dollars", "buck", "bucks", "美元", "美金"}

# Chinese units after the number: "199元", "两百块", "三块五", "3块5毛", "1.5万元".
_CHINESE_SUFFIX_AMOUNT_RE = re.compile(
    rf"(?<![0-9A-Za-z.,{_CN_NUMERAL}]){_number_pattern()}\s*(?P<unit>元|块钱|块|圆)"
    rf"(?:(?P<jiao>{_CN_DIGIT_CLASS})\s*[角毛](?:(?P<fen>{_CN_DIGIT_CLASS})分?)?"
    rf"|(?P<tail>{_CN_DIGIT_CLASS})(?![0-9{_CN_NUMERAL}天日号月个件点分]))?(?:钱)?",
    re.IGNORECASE,
)
# Ten-cent units alone: "五毛", "5角钱", "两毛五".
_JIAO_AMOUNT_RE = re.compile(
    rf"(?<![0-9A-Za-z.,{_CN_NUMERAL}元块])(?P<jiao>{_CN_DIGIT_CLASS})\s*[角毛]"
    rf"(?:(?P<fen>{_CN_DIGIT_CLASS})分?|钱)?"
)
# A currency before the number: "¥199", "RMB 300", "US$20", "人民币500元".
_PREFIX_AMOUNT_RE = re.compile(
    rf"(?<![A-Za-z])(?P<currency>US\$|\$|¥|RMB|CNY|USD|人民币)\s*{_number_pattern()}"
    r"(?:\s*(?P<unit>元|块钱|块|美元|dollars?|yuan|rmb|usd|cny)(?![A-Za-z]))?",
    re.IGNORECASE,
)
# Other units after the number: "20 dollars", "1,299 yuan", "15.5 USD", "20美元".
_SUFFIX_AMOUNT_RE = re.compile(
    rf"(?<![0-9A-Za-z.,]){_number_pattern()}\s*"
    r"(?P<unit>美元|美金|人民币|dollars?|bucks?|usd|yuan|kuai|rmb|cny)(?![A-Za-z])",
    re.IGNORECASE,
)
# After a Chinese numeral, 块 is also the measure word ("一块蛋糕", "一块儿"): it counts as money
# only before these (or before anything that is not a Han character).
_AFTER_KUAI_MONEY = set(
    "钱的了吗呢吧啊呀哦嘛啦左多够还都也就才又买卖退付给花充赔补送换" + _CN_DIGIT
)


def _amount_value(m: re.Match[str]) -> Decimal | None:
    groups = m.groupdict()
    if groups.get("arabic"):
        value = Decimal(groups["arabic"].replace(",", ""))
        multiplier = (groups.get("multiplier") or "").lower()
        value *= {"": 1, "k": 1000, "千": 1000, "万": 10_000}[multiplier]
    elif groups.get("chinese"):
        number = chinese_number(groups["chinese"])
        if number is None:
            return None
        value = Decimal(number)
    else:
        value = Decimal(0)
    for name, scale in (("jiao", "0.1"), ("fen", "0.01"), ("tail", "0.1")):
        if groups.get(name):
            value += Decimal(_number(groups[name]) or 0) * Decimal(scale)
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _amount_match(m: re.Match[str], currency_word: str) -> _Match | None:
    value = _amount_value(m)
    if value is None:
        return None
    word = currency_word.lower()
    currency = "CNY" if word in _CNY_UNITS else "USD" if word in _USD_UNITS else ""
    return _Match(m.start(), m.end(), AMOUNT, f"{value:.2f}", currency)


def _amounts(text: str) -> Iterator[_Match]:
    for m in _CHINESE_SUFFIX_AMOUNT_RE.finditer(text):
        after = text[m.end() : m.end() + 1]
        plain_unit = not (m.group("jiao") or m.group("tail") or m.group(0).endswith("钱"))
        if plain_unit and m.group("unit") == "块":
            if after == "儿":
                continue
            if m.group("chinese") and CJK_RE.match(after) and after not in _AFTER_KUAI_MONEY:
                continue
        if plain_unit and m.group("unit") == "元" and after and after in "旦宵素件器":
            continue
        if match := _amount_match(m, "元"):
            yield match
    for m in _JIAO_AMOUNT_RE.finditer(text):
        after = text[m.end() : m.end() + 1]
        if not m.group(0).endswith("钱") and not m.group("fen") and after and after in "形度落洲":
            continue  # 三角形, 三角洲
        if match := _amount_match(m, "元"):
            yield match
    for m in _PREFIX_AMOUNT_RE.finditer(text):
        if match := _amount_match(m, m.group("currency")):
            yield match
    for m in _SUFFIX_AMOUNT_RE.finditer(text):
        if match := _amount_match(m, m.group("unit")):
            yield match


# --- Dates -----------------------------------------------------------------------------------

_CN_SMALL = "[一二三四五六七八九十]{1,3}"
_NUM = rf"(?:\d{{1,2}}|{_CN_SMALL})"

_MONTHS = {
    "january": 1,
    "february": 2,
    "march": 3,
    "april": 4,
    "may": 5,
    "june": 6,
    "july": 7,
    "august": 8,
    "september": 9,
    "october": 10,
    "november": 11,
    "december": 12,
    "jan": 1,
    "feb": 2,
    "mar": 3,
    "apr": 4,
    "jun": 6,
    "jul": 7,
    "aug": 8,
    "sep": 9,
    "sept": 9,
    "oct": 10,
    "nov": 11,
    "dec": 12,
}
_MONTH_NAMES = "|".join(sorted(_MONTHS, key=len, reverse=True))
_WEEKDAYS = {
    "monday": 0,
    "tuesday": 1,
    "wednesday": 2,
    "thursday": 3,
    "friday": 4,
    "saturday": 5,
    "sunday": 6,
}
_WEEKDAY_ABBREVIATIONS = {
    "mon": 0,
    "tue": 1,
    "tues": 1,
    "wed": 2,
    "thu": 3,
    "thur": 3,
    "thurs": 3,
    "fri": 4,
    "sat": 5,
    "sun": 6,
}
_WEEKDAY_NAMES = "|".join(sorted([*_WEEKDAYS, *_WEEKDAY_ABBREVIATIONS], key=len, reverse=True))
_CN_WEEKDAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6}
_CN_WEEK_OFFSETS = {"上上": -2, "上": -1, "这": 0, "本": 0, "下": 1, "下下": 2}
_EN_WEEK_OFFSETS = {"last": -1, "this": 0, "next": 1}
_EN_NUMBERS = {
    **{word: value for word, value in EN_NUMBER_WORDS.items() if 1 <= value <= 12},
    "a": 1,
    "an": 1,
    "a couple of": 2,
    "couple of": 2,
}
_EN_NUMBER_WORDS = "|".join(sorted(_EN_NUMBERS, key=len, reverse=True))
_CN_DAY_WORDS = {
    "大前天": -3,
    "前天": -2,
    "昨天": -1,
    "昨日": -1,
    "昨晚": -1,
    "昨夜": -1,
    "今天": 0,
    "今日": 0,
    "今晚": 0,
    "今早": 0,
    "明天": 1,
    "明日": 1,
    "明晚": 1,
    "明早": 1,
    "后天": 2,
    "大后天": 3,
}
_EN_DAY_WORDS = {
    "the day before yesterday": -2,
    "day before yesterday": -2,
    "yesterday": -1,
    "today": 0,
    "tonight": 0,
    "tomorrow": 1,
    "tmr": 1,
    "tmrw": 1,
    "the day after tomorrow": 2,
    "day after tomorrow": 2,
}
_CN_YEAR_WORDS = {"前年": -2, "去年": -1, "今年": 0, "明年": 1}
_CN_MONTH_WORDS = {"上上": -2, "上": -1, "这": 0, "本": 0, "下": 1}

DateResolver = Callable[[re.Match[str], date], date | None]


def _safe_date(year: int, month: int | None, day: int | None) -> date | None:
    if month is None or day is None:
        return None
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _recent_date(today: date, month: int | None, day: int | None) -> date | None:
    """The latest `month`/`day` at most FUTURE_WINDOW after today (29 February: back to a leap
    year)."""
    limit = today + FUTURE_WINDOW
    for year in range(today.year + 1, today.year - 5, -1):
        candidate = _safe_date(year, month, day)
        if candidate is not None and candidate <= limit:
            return candidate
    return None


def _add_months(day: date, months: int) -> date:
    month_index = day.year * 12 + day.month - 1 + months
    year, month = divmod(month_index, 12)
    month += 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _week_day(today: date, week_offset: int, weekday: int) -> date:
    monday = today - timedelta(days=today.weekday())
    return monday + timedelta(weeks=week_offset, days=weekday)


def _shift(today: date, amount: int, unit: str) -> date:
    unit = unit.lower()
    if unit.startswith(("月", "个月", "month")):
        return _add_months(today, amount)
    if unit.startswith(("week", "周", "星期", "礼拜", "个星期", "个礼拜")):
        return today + timedelta(weeks=amount)
    return today + timedelta(days=amount)


def _year_month_day(m: re.Match[str], today: date) -> date | None:
    if m.group("year"):
        return _safe_date(int(m.group("year")), _number(m.group("month")), _number(m.group("day")))
    return _recent_date(today, _number(m.group("month")), _number(m.group("day")))


def _us_date(m: re.Match[str], today: date) -> date | None:
    return _safe_date(int(m.group("year")), int(m.group("month")), int(m.group("day")))


def _chinese_date(m: re.Match[str], today: date) -> date | None:
    month, day = _number(m.group("month")), _number(m.group("day"))
    if not m.group("suffix") and not m.group("day").isdigit():
        return None  # "一月一次": a Chinese-numeral day needs its 日/号
    if m.group("year"):
        return _safe_date(int(m.group("year")), month, day)
    if m.group("year_word"):
        return _safe_date(today.year + _CN_YEAR_WORDS[m.group("year_word")], month, day)
    return _recent_date(today, month, day)


def _chinese_month_relative(m: re.Match[str], today: date) -> date | None:
    offset = _CN_MONTH_WORDS[m.group("which")]
    first_of_month = _add_months(today.replace(day=1), offset)
    return _safe_date(first_of_month.year, first_of_month.month, _number(m.group("day")))


def _day_of_month(m: re.Match[str], today: date) -> date | None:
    if m.group("suffix") == "日" and not m.group("day").isdigit():
        return None  # "一日游": a Chinese-numeral day alone needs 号
    return _safe_date(today.year, today.month, _number(m.group("day")))


def _english_month_day(m: re.Match[str], today: date) -> date | None:
    name = m.group("month_name")
    if name.lower() == "may" and name[0] == "m":
        return None  # "you may 2 …": the verb; the month is written "May"
    month, day = _MONTHS[name.lower()], int(m.group("day"))
    if m.group("year"):
        return _safe_date(int(m.group("year")), month, day)
    return _recent_date(today, month, day)


def _chinese_day_word(m: re.Match[str], today: date) -> date | None:
    word = m.group()
    before = m.string[m.start() - 1 : m.start()]
    if word == "后天" and before and before in "然最之以落先背":
        return None  # 然后天天…, 最后天…
    if word == "前天" and before and before in "之以从目提向面跟当眼":
        return None  # 之前天天…
    return today + timedelta(days=_CN_DAY_WORDS[word])


def _english_day_word(m: re.Match[str], today: date) -> date | None:
    word = re.sub(r"\s+", " ", m.group().lower())
    return today + timedelta(days=_EN_DAY_WORDS[word])


def _chinese_relative(m: re.Match[str], today: date) -> date | None:
    amount = _number(m.group("amount"))
    if amount is None:
        return None
    sign = -1 if m.group("direction") == "前" else 1
    return _shift(today, sign * amount, m.group("unit"))


def _english_count(m: re.Match[str]) -> int:
    amount = re.sub(r"\s+", " ", m.group("amount").lower())
    return int(amount) if amount.isdigit() else _EN_NUMBERS[amount]


def _english_ago(m: re.Match[str], today: date) -> date | None:
    return _shift(today, -_english_count(m), m.group("unit"))


def _english_later(m: re.Match[str], today: date) -> date | None:
    return _shift(today, _english_count(m), m.group("unit"))


def _chinese_weekday(m: re.Match[str], today: date) -> date | None:
    which = (m.group("which") or "").replace("个", "")
    before = m.string[m.start() - 1 : m.start()]
    if not which and before and (before.isdigit() or before in _CN_NUMERAL + "几每半"):
        return None  # 一周三次, 每周一: a count or a habit, not a day
    weekday = 5 if m.group("weekday") == "末" else _CN_WEEKDAYS[m.group("weekday")]
    return _week_day(today, _CN_WEEK_OFFSETS.get(which, 0), weekday)


def _chinese_week(m: re.Match[str], today: date) -> date | None:
    return _week_day(today, _CN_WEEK_OFFSETS[m.group("which").replace("个", "")], 0)


def _english_weekday(m: re.Match[str], today: date) -> date | None:
    name = m.group("weekday").lower()
    which = (m.group("which") or "").lower()
    if name in _WEEKDAY_ABBREVIATIONS and not which:
        return None  # "sat", "sun", "wed" alone are too often words
    weekday = _WEEKDAYS.get(name, _WEEKDAY_ABBREVIATIONS.get(name, 0))
    return _week_day(today, _EN_WEEK_OFFSETS.get(which, 0), weekday)


def _english_week(m: re.Match[str], today: date) -> date | None:
    weekday = 5 if m.group("week").lower() == "weekend" else 0
    return _week_day(today, _EN_WEEK_OFFSETS[m.group("which").lower()], weekday)


_I = re.IGNORECASE
_DATE_PATTERNS: list[tuple[re.Pattern[str], DateResolver]] = [
    (
        re.compile(
            r"(?<![0-9])(?P<year>\d{4})(?P<sep>[-/.])(?P<month>\d{1,2})(?P=sep)(?P<day>\d{1,2})"
            r"(?![0-9])"
        ),
        _year_month_day,
    ),
    (
        re.compile(r"(?<![0-9/])(?P<month>\d{1,2})/(?P<day>\d{1,2})/(?P<year>\d{4})(?![0-9])"),
        _us_date,
    ),
    (
        re.compile(r"(?<![0-9/.])(?P<year>)(?P<month>\d{1,2})/(?P<day>\d{1,2})(?![0-9/])"),
        _year_month_day,
    ),
    (
        re.compile(
            rf"(?:(?<![0-9])(?P<year>\d{{4}})\s*年\s*|(?P<year_word>今年|去年|明年|前年))?"
            rf"(?<![0-9{_CN_NUMERAL}个])(?P<month>{_NUM})\s*月\s*(?P<day>{_NUM})(?![0-9])"
            rf"\s*(?P<suffix>[日号])?"
        ),
        _chinese_date,
    ),
    (
        re.compile(rf"(?P<which>上上|上|这|本|下)个?月\s*(?P<day>{_NUM})\s*[日号]"),
        _chinese_month_relative,
    ),
    (
        re.compile(
            rf"(?<![0-9{_CN_NUMERAL}月第])(?P<day>{_NUM})\s*(?P<suffix>[日号])"
            r"(?![线楼店门房室床位机车窗码院馆厅台内])"
        ),
        _day_of_month,
    ),
    (
        re.compile(
            rf"(?<![A-Za-z])(?P<month_name>{_MONTH_NAMES})\.?\s+(?P<day>\d{{1,2}})"
            r"(?:st|nd|rd|th)?(?![0-9A-Za-z])(?:,?\s*(?P<year>\d{4})(?![0-9]))?",
            _I,
        ),
        _english_month_day,
    ),
    (
        re.compile(
            rf"(?<![0-9A-Za-z])(?:the\s+)?(?P<day>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?"
            rf"(?P<month_name>{_MONTH_NAMES})\.?(?![A-Za-z])(?:,?\s*(?P<year>\d{{4}})(?![0-9]))?",
            _I,
        ),
        _english_month_day,
    ),
    (
        re.compile("|".join(sorted(_CN_DAY_WORDS, key=len, reverse=True))),
        _chinese_day_word,
    ),
    (
        re.compile(
            r"(?<![A-Za-z])(?:"
            + "|".join(w.replace(" ", r"\s+") for w in sorted(_EN_DAY_WORDS, key=len, reverse=True))
            + r")(?![A-Za-z])",
            _I,
        ),
        _english_day_word,
    ),
    (
        re.compile(
            rf"(?<![0-9{_CN_NUMERAL}])(?P<amount>\d{{1,3}}|[{_CN_NUMERAL}]+)\s*"
            r"(?P<unit>天|周|个星期|星期|个礼拜|礼拜|个月)\s*(?:之|以)?(?P<direction>前|后|後)"
        ),
        _chinese_relative,
    ),
    (
        re.compile(
            rf"(?<![A-Za-z0-9])(?P<amount>\d{{1,3}}|{_EN_NUMBER_WORDS})\s+"
            r"(?P<unit>days?|weeks?|months?)\s+ago(?![A-Za-z])",
            _I,
        ),
        _english_ago,
    ),
    (
        re.compile(
            rf"(?<![A-Za-z0-9])in\s+(?P<amount>\d{{1,3}}|{_EN_NUMBER_WORDS})\s+"
            r"(?P<unit>days?|weeks?|months?)(?![A-Za-z])",
            _I,
        ),
        _english_later,
    ),
    (
        re.compile(
            rf"(?<![A-Za-z0-9])(?P<amount>\d{{1,3}}|{_EN_NUMBER_WORDS})\s+"
            r"(?P<unit>days?|weeks?|months?)\s+(?:later|from\s+now)(?![A-Za-z])",
            _I,
        ),
        _english_later,
    ),
    (
        re.compile(
            r"(?P<which>上上个?|上个?|下下个?|下个?|这个?|本)?(?:周|星期|礼拜)(?P<weekday>[一二三四五六日天末])"
        ),
        _chinese_weekday,
    ),
    (
        re.compile(
            r"(?P<which>上上个?|上个?|下下个?|下个?|这个?|本)(?:周|星期|礼拜)(?![围期边年岁])"
        ),
        _chinese_week,
    ),
    (
        re.compile(
            rf"(?<![A-Za-z])(?:(?P<which>last|this|next)\s+)?(?P<weekday>{_WEEKDAY_NAMES})"
            r"(?![A-Za-z])",
            _I,
        ),
        _english_weekday,
    ),
    (
        re.compile(
            r"(?<![A-Za-z])(?P<which>last|this|next)\s+(?P<week>week|weekend)(?![A-Za-z])", _I
        ),
        _english_week,
    ),
]


def _dates(text: str, today: date) -> Iterator[_Match]:
    for pattern, resolve in _DATE_PATTERNS:
        for m in pattern.finditer(text):
            resolved = resolve(m, today)
            if resolved is not None:
                yield _Match(m.start(), m.end(), DATE, resolved.isoformat())
