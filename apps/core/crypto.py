"""Encryption of secrets kept in the database (an endpoint's API key, later message originals).

Keys come from `DATA_ENCRYPTION_KEY`: one or more comma-separated keys, the first encrypts and
all of them decrypt, so a key is rotated by putting the new one first and re-saving. A key is
either a Fernet key or any long passphrase (hashed to a Fernet key). The embedded mode generates
one under var/ on first run; production requires it.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class DecryptionError(Exception):
    """The value was encrypted with a key that is no longer configured, or is damaged."""


def _fernet_key(key: str) -> bytes:
    try:
        if len(base64.urlsafe_b64decode(key.encode())) == 32:
            return key.encode()
    except (ValueError, TypeError):
        pass
    return base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest())


@lru_cache(maxsize=4)
def _cipher(keys: str) -> MultiFernet:
    parts = [k.strip() for k in keys.split(",") if k.strip()]
    if not parts:
        raise DecryptionError("DATA_ENCRYPTION_KEY is empty")
    return MultiFernet([Fernet(_fernet_key(k)) for k in parts])


def encrypt(plaintext: str) -> str:
    if not plaintext:
        return ""
    return _cipher(settings.DATA_ENCRYPTION_KEY).encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _cipher(settings.DATA_ENCRYPTION_KEY).decrypt(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError(
            "cannot decrypt: the value was encrypted with a key not in DATA_ENCRYPTION_KEY"
        ) from None
