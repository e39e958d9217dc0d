"""Gettext catalogs written by tests, so a test can check that text is translated (and in
which language) without depending on what locale/ translates yet."""

from __future__ import annotations

import struct
from pathlib import Path


def write_catalog(locale_dir: Path, locale: str, messages: dict[str, str]) -> None:
    """A compiled catalog (GNU .mo) at locale_dir/<locale>/LC_MESSAGES/django.mo; use it with
    `override_settings(LOCALE_PATHS=[locale_dir])`, which also resets Django's loaded catalogs."""
    entries = sorted({"": "Content-Type: text/plain; charset=UTF-8\n", **messages}.items())
    ids = [key.encode() for key, _value in entries]
    strs = [value.encode() for _key, value in entries]
    count = len(entries)
    ids_start = 7 * 4 + 16 * count  # after the header and both (length, offset) tables
    table: list[int] = []
    offset = ids_start
    for data in [*ids, *strs]:
        table += [len(data), offset]
        offset += len(data) + 1
    header = struct.pack("<7I", 0x950412DE, 0, count, 28, 28 + 8 * count, 0, 0)
    body = b"".join(data + b"\0" for data in [*ids, *strs])
    target = locale_dir / locale / "LC_MESSAGES"
    target.mkdir(parents=True, exist_ok=True)
    (target / "django.mo").write_bytes(header + struct.pack(f"<{len(table)}I", *table) + body)
