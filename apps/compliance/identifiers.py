"""A data subject's identifier: normalised, pseudonymised, and found again in free text.

E-mail addresses are never stored as fields anywhere in the platform, and phone numbers only as
an order's contact mobile number (`Order.contact_phone`, written in any format); otherwise they
only occur inside what customers wrote (the encrypted originals of their messages, form answers,
return reasons). Finding them is therefore a text search, tolerant of how people write them:

- e-mail: NFKC-folded (full-width "＠" and letters count), case-insensitive.
- phone: digits only, separators between digits ignored ("138 0013-8000"); the same number with
  or without a country code ("+86 138…", "0086 138…", "+1 415…") matches, a longer digit run
  that merely contains it (an ID card, a bank card) does not.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext as _

from apps.compliance.models import IdentifierKind
from apps.safety.pseudonyms import pseudonym

# Separators people put between a phone number's digit groups.
_DIGIT_GAP_RE = re.compile(r"(?<=\d)[\s\-.()/]+(?=\d)")
_DIGIT_RUN_RE = re.compile(r"\d+")
# Calling codes are 1-3 digits; "00" is the international prefix written instead of "+".
_MAX_COUNTRY_CODE = 3
MIN_PHONE_DIGITS = 7


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def normalise(kind: str, value: str) -> str:
    """The canonical form of an identifier; raises ValidationError for one that cannot be it."""
    value = unicodedata.normalize("NFKC", str(value or "")).strip()
    if not value:
        raise ValidationError(_("Enter the identifier."))
    if kind == IdentifierKind.EMAIL:
        value = value.casefold()
        try:
            validate_email(value)
        except ValidationError:
            raise ValidationError(_("Enter a valid e-mail address.")) from None
        return value
    if kind == IdentifierKind.PHONE:
        digits = re.sub(r"\D", "", value)
        if digits.startswith("00"):
            digits = digits[2:]
        if len(digits) < MIN_PHONE_DIGITS:
            raise ValidationError(_("Enter a phone number with at least 7 digits."))
        return digits
    return value


def identifier_pseudonym(kind: str, value: str) -> str:
    """What a request keeps of its identifier: a keyed pseudonym, scoped by kind."""
    return pseudonym(f"dsr:{kind}:{value}")


def _phone_runs(text: str) -> list[str]:
    joined = _DIGIT_GAP_RE.sub("", unicodedata.normalize("NFKC", text))
    runs = []
    for run in _DIGIT_RUN_RE.findall(joined):
        runs.append(run[2:] if run.startswith("00") else run)
    return runs


def _same_phone(run: str, digits: str) -> bool:
    if run == digits:
        return True
    longer, shorter = (run, digits) if len(run) > len(digits) else (digits, run)
    if len(shorter) < MIN_PHONE_DIGITS or not longer.endswith(shorter):
        return False
    # Only a country code may stand before it.
    return len(longer) - len(shorter) <= _MAX_COUNTRY_CODE


def mentions(text: str, kind: str, value: str) -> bool:
    """Whether `text` contains the (normalised) e-mail address or phone number `value`."""
    if not text or not value:
        return False
    if kind == IdentifierKind.EMAIL:
        folded = _fold(text)
        start = folded.find(value)
        while start != -1:
            before = folded[start - 1] if start else ""
            after = folded[start + len(value) : start + len(value) + 2]
            # "ann@x.com" inside "joann@x.com" or "ann@x.com.cn" is someone else.
            if not re.match(r"[\w.+-]", before) and not re.match(r"[\w-]|\.\w", after):
                return True
            start = folded.find(value, start + 1)
        return False
    if kind == IdentifierKind.PHONE:
        return any(_same_phone(run, value) for run in _phone_runs(text))
    return value in text


def any_mentions(texts: Iterable[str], kind: str, value: str) -> bool:
    return any(mentions(text, kind, value) for text in texts)
