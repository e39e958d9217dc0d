"""`manage.py evaluate intents`: the JSON contract on the last line, real scores, no database."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

DATA = Path(__file__).resolve().parent / "data"


def evaluate(*extra: str) -> dict:
    out = io.StringIO()
    call_command(
        "evaluate",
        "intents",
        "--train",
        str(DATA / "intents_train.csv"),
        "--test",
        str(DATA / "intents_test.csv"),
        *extra,
        stdout=out,
        stderr=io.StringIO(),
    )
    return json.loads(out.getvalue().strip().splitlines()[-1])


# No django_db mark: the command must not touch the database at all (pytest-django would fail
# the test if it did), so it cannot leave anything behind.
def test_evaluate_intents_with_out_of_scope_rows():
    result = evaluate("--oos-label", "oos")
    assert result["n"] == 16 and result["n_oos"] == 4
    # 12 in-scope paraphrases in two languages and 4 off-topic questions, none in training.
    assert result["accuracy"] >= 11 / 12 and result["macro_f1"] >= 0.9
    assert result["oos_recall"] >= 0.75
    assert 0 < result["train_seconds"] < 120
    assert 0 < result["oos_threshold"] < 1


def test_evaluate_intents_closed_set():
    result = evaluate()
    assert "oos_recall" not in result and result["n"] == 16
    # "oos" is an ordinary label here: accuracy counts all 16 rows, best label only.
    assert result["accuracy"] >= 14 / 16
    assert result["answered_accuracy"] <= result["accuracy"]
    assert 0 <= result["rejected"] <= 1 - result["answered_accuracy"]


def test_evaluate_intents_refuses_a_file_without_labels(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nhello,greeting\n", encoding="utf-8")
    with pytest.raises(CommandError, match="category"):
        call_command("evaluate", "intents", "--train", str(bad), "--test", str(bad))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("text,label\nhello,greeting\n", "needs the columns text and category"),
        ("utterance,intent\nhello,greeting\n", "no column text"),
        ("text,intent\n  ,greeting\n", "has no examples"),
    ],
)
def test_bad_training_files_are_refused_with_the_reason(tmp_path, content, message):
    train = tmp_path / "train.csv"
    if content is not None:
        train.write_text(content, encoding="utf-8")
    with pytest.raises(CommandError, match=message):
        call_command(
            "evaluate", "intents", "--train", str(train), "--test", str(DATA / "intents_test.csv")
        )
