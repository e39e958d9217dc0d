"""Moderation: accuracy, precision, recall, F1 and false-positive rate on a labelled CSV.

Measures what production runs: the lexicon in the database plus the shipped classifier at its
thresholds (`settings.MODERATION`), each text scored by the head of its language. Nothing is
trained or written. `--positive` lists the label values that count as unsafe (COLD: `1`;
Davidson's `class`: `0,1`). With a `topic` column (COLD), the false-positive rate of each
topic's safe texts is reported too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from django.core.management.base import CommandError, CommandParser

from apps.core.datafiles import DataFileError, read_csv
from apps.core.text import detect_language
from apps.safety import moderation, training


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument("--data", required=True, help="CSV with a text and a label column")
    parser.add_argument("--text-col", default="text", help="the text column (default text)")
    parser.add_argument("--label-col", default="label", help="the label column (default label)")
    parser.add_argument(
        "--positive",
        default="1",
        help="comma-separated label values that count as unsafe (default 1; Davidson: 0,1)",
    )
    parser.add_argument(
        "--language",
        choices=["auto", "zh", "en"],
        default="auto",
        help="score every text with this language's head (default: detect per text)",
    )


def read_rows(path: str, text_col: str, label_col: str) -> list[dict[str, str]]:
    try:
        rows = read_csv(path, text_col, label_col)
    except DataFileError as exc:
        raise CommandError(str(exc)) from exc
    if not rows:
        raise CommandError(f"{path} has no rows with text")
    return rows


def run(options: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    text_col, label_col = options["text_col"], options["label_col"]
    positive = {value.strip() for value in options["positive"].split(",") if value.strip()}
    if not positive:
        raise CommandError("--positive needs at least one label value")
    rows = read_rows(options["data"], text_col, label_col)
    texts = [row[text_col] for row in rows]
    labels = np.array([1 if (row[label_col] or "").strip() in positive else 0 for row in rows])
    if options["language"] == "auto":
        languages = [detect_language(text) for text in texts]
    else:
        languages = [options["language"]] * len(texts)
    log(
        f"moderating {len(texts)} texts ({int(labels.sum())} unsafe; "
        f"{languages.count('zh')} Chinese, {languages.count('en')} English)"
    )
    started = time.perf_counter()
    verdicts = moderation.moderate_many(texts, languages)
    seconds = time.perf_counter() - started
    log(f"done in {seconds:.1f}s")

    blocked = np.array([v.blocked for v in verdicts], dtype=float)
    result: dict[str, Any] = training.rounded(training.metrics(blocked, labels, 0.5))
    if "topic" in rows[0]:
        topics = [row.get("topic") or "" for row in rows]
        result["topic_false_positive_rate"] = training.rounded(
            training.group_false_positive_rates(blocked, labels, topics, 0.5)
        )
    by_source = [v.source for v in verdicts if v.blocked]
    result["blocked_by_lexicon"] = by_source.count("lexicon")
    result["thresholds"] = {
        language: round(moderation.threshold_for(language), 4)
        for language in sorted(set(languages))
    }
    result["ms_per_text"] = round(seconds * 1000 / len(texts), 2)
    return result
