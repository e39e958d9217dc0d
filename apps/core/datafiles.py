"""Labelled CSV files given to the training and evaluation commands (public datasets, kept out
of the repository): one reader, so every command reports a bad file the same way."""

from __future__ import annotations

import csv
from pathlib import Path


class DataFileError(ValueError):
    """A data file is missing, unreadable or lacks a column; the message says which."""


def csv_columns(path: str | Path) -> list[str]:
    """The header of a UTF-8 CSV file."""
    try:
        with Path(path).open(encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle).fieldnames or [])
    except OSError as exc:
        raise DataFileError(f"cannot read {path}: {exc}") from exc


def read_csv(path: str | Path, text_col: str, *columns: str) -> list[dict[str, str]]:
    """The rows of a UTF-8 CSV file whose `text_col` is not blank; its header must name
    `text_col` and `columns`."""
    try:
        with Path(path).open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            fields = reader.fieldnames or []
            missing = [c for c in (text_col, *columns) if c not in fields]
            if missing:
                raise DataFileError(
                    f"{path}: no column {', '.join(missing)} (columns: {', '.join(fields)})"
                )
            return [row for row in reader if (row[text_col] or "").strip()]
    except OSError as exc:
        raise DataFileError(f"cannot read {path}: {exc}") from exc
