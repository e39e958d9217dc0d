"""Pseudonyms for customers' identifiers (an app's user id, a WeChat openid, an e-mail).

The platform stores a keyed HMAC-SHA256 of the identifier, never the identifier: the same
customer is recognised again, but the stored value cannot be turned back into the identifier
without the key. Keys come from `PSEUDONYM_KEY` (comma-separated; the first one makes new
pseudonyms, all of them are tried when looking one up), so a key is rotated by putting a new one
first. Each pseudonym starts with a short tag of its key, so one can tell which key made it.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from functools import lru_cache

from django.conf import settings


@lru_cache(maxsize=4)
def _keys(configured: str) -> tuple[tuple[str, bytes], ...]:
    keys = [k.strip() for k in configured.split(",") if k.strip()]
    if not keys:
        raise RuntimeError("PSEUDONYM_KEY is empty")
    return tuple((hashlib.sha256(k.encode()).hexdigest()[:6], k.encode()) for k in keys)


def _normalised(identifier: str) -> bytes:
    return unicodedata.normalize("NFKC", identifier).strip().casefold().encode()


def _make(tag: str, key: bytes, identifier: str) -> str:
    digest = hmac.new(key, _normalised(identifier), hashlib.sha256).hexdigest()
    return f"{tag}:{digest[:48]}"


def pseudonym(identifier: str) -> str:
    """The pseudonym new records get (the current key's)."""
    tag, key = _keys(settings.PSEUDONYM_KEY)[0]
    return _make(tag, key, identifier)


def pseudonym_candidates(identifier: str) -> list[str]:
    """Every pseudonym the identifier may be stored under (one per configured key)."""
    return [_make(tag, key, identifier) for tag, key in _keys(settings.PSEUDONYM_KEY)]
