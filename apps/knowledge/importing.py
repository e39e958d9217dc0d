"""Reading article files for bulk import: CSV, JSONL and Markdown. Parsing only: every row is
checked and written by `services.articles_import`, all or nothing.

Fields (CSV columns / JSON keys / Markdown front matter): external_id (or key), language, kind,
category ("Parent / Child"), title, body, questions, tags, status, valid_from, valid_until.
In CSV, questions are separated by "|" or new lines and tags by ",". A Markdown file without
front-matter title takes its first "# " heading as the title.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import gettext as _

MAX_FILE_BYTES = 20 * 1024 * 1024
FORMATS = ("csv", "jsonl", "markdown")
FRONT_MATTER_RE = re.compile(r"\A---\s*\n(.*?)\n---\s*\n?", re.DOTALL)


@dataclass
class ImportRow:
    line: int  # 1-based line (CSV/JSONL) or file number (Markdown), for error reports
    source: str
    values: dict[str, Any] = field(default_factory=dict)


class ImportFileError(ValueError):
    """The file as a whole cannot be read (wrong format, encoding, size)."""


def detect_format(filename: str) -> str:
    name = filename.lower()
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith((".md", ".markdown")):
        return "markdown"
    raise ImportFileError(
        _("%(file)s: unsupported file type (use .csv, .jsonl or .md)") % {"file": filename}
    )


def _decode(data: bytes, filename: str) -> str:
    if len(data) > MAX_FILE_BYTES:
        raise ImportFileError(
            _("%(file)s: larger than %(mb)d MB")
            % {"file": filename, "mb": MAX_FILE_BYTES // (1024 * 1024)}
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFileError(
            _("%(file)s: not UTF-8 text (%(reason)s at byte %(byte)d)")
            % {"file": filename, "reason": exc.reason, "byte": exc.start}
        ) from exc


def _split(value: Any, separators: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in re.split(separators, str(value)) if part.strip()]


def _normalise(values: dict[str, Any]) -> dict[str, Any]:
    out = {str(k).strip().lower(): v for k, v in values.items() if k is not None}
    if "key" in out and not out.get("external_id"):
        out["external_id"] = out.pop("key")
    if "question" in out and not out.get("title"):
        out["title"] = out.pop("question")
    if "answer" in out and not out.get("body"):
        out["body"] = out.pop("answer")
    out["questions"] = _split(out.get("questions"), r"\||\n")
    out["tags"] = _split(out.get("tags"), r",|，")
    return out


def parse_csv(text: str, filename: str = "csv") -> list[ImportRow]:
    reader = csv.DictReader(io.StringIO(text))
    headers = {name.strip().lower() for name in reader.fieldnames or [] if name}
    if not headers & {"title", "question"}:
        raise ImportFileError(_("CSV needs a header row with a 'title' (or 'question') column"))
    rows = []
    for row in reader:
        extra = row.pop(None, None)  # type: ignore[call-overload]
        values = _normalise(row)
        if extra:
            values["_error"] = _("%(n)d more cells than header columns") % {"n": len(extra)}
        rows.append(ImportRow(reader.line_num, filename, values))
    return rows


def parse_jsonl(text: str, filename: str = "jsonl") -> list[ImportRow]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            error = _("not valid JSON: %(reason)s") % {"reason": exc.msg}
            rows.append(ImportRow(number, filename, {"_error": error}))
            continue
        if not isinstance(value, dict):
            error = _("each line must be a JSON object")
            rows.append(ImportRow(number, filename, {"_error": error}))
            continue
        rows.append(ImportRow(number, filename, _normalise(value)))
    return rows


def parse_markdown(text: str, filename: str, number: int = 1) -> ImportRow:
    values: dict[str, Any] = {}
    match = FRONT_MATTER_RE.match(text)
    if match:
        for line in match.group(1).splitlines():
            if ":" in line:
                key, value = line.split(":", 1)
                values[key.strip().lower()] = value.strip().strip('"').strip("'")
        text = text[match.end() :]
    if not values.get("title"):
        heading = re.search(r"^#\s+(.+)$", text, re.MULTILINE)
        if heading:
            values["title"] = heading.group(1).strip()
            text = text[: heading.start()] + text[heading.end() :]
    values["body"] = text.strip()
    values.setdefault("kind", "guide")
    values.setdefault("external_id", re.sub(r"\.(md|markdown)$", "", filename.rsplit("/", 1)[-1]))
    return ImportRow(number, filename, _normalise(values))


def parse_files(files: list[tuple[str, bytes]]) -> list[ImportRow]:
    """Rows from uploaded files (name, content); several Markdown files make several rows."""
    rows: list[ImportRow] = []
    for number, (filename, data) in enumerate(files, start=1):
        kind = detect_format(filename)
        text = _decode(data, filename)
        if kind == "csv":
            rows += parse_csv(text, filename)
        elif kind == "jsonl":
            rows += parse_jsonl(text, filename)
        else:
            rows.append(parse_markdown(text, filename, number))
    return rows
