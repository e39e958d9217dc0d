"""Intent classification: accuracy, macro F1 and out-of-scope recall on a labelled test CSV.

The classifier is trained on the training CSV by `classifier.train`, the code the Celery
retraining runs, with each intent's name as an extra example as there. Nothing touches the
database. CSV columns: `text` and `category` or `intent`.

`accuracy`: without --oos-label, the share of test rows whose best intent is right (closed set:
the out-of-scope threshold is ignored; `answered_accuracy` counts rows below it as wrong). With
--oos-label, in-scope accuracy as in Larson et al. 2019: the share of in-scope rows given the
right intent, where "out of scope" counts as wrong; `oos_recall` is the share of out-of-scope
rows the classifier turns away.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from django.core.management.base import CommandError, CommandParser

from apps.core.datafiles import DataFileError, csv_columns, read_csv
from apps.nlu import classifier


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument("--train", required=True, help="CSV: text, category (or intent)")
    parser.add_argument("--test", required=True, help="CSV: text, category (or intent)")
    parser.add_argument(
        "--oos-label",
        default="",
        help="the label of out-of-scope rows (e.g. oos): trained on as the 'none of these' "
        "class, and measured as oos_recall",
    )
    parser.add_argument(
        "--no-label-names",
        action="store_true",
        help="do not add each intent's name (underscores as spaces) as an extra example",
    )


def read_examples(path: str) -> tuple[list[str], list[str]]:
    try:
        columns = csv_columns(path)
        label_field = next((f for f in ("category", "intent") if f in columns), None)
        if label_field is None:
            raise CommandError(f"{path}: needs the columns text and category (or intent)")
        rows = read_csv(path, "text", label_field)
    except DataFileError as exc:
        raise CommandError(str(exc)) from exc
    pairs = [(row["text"].strip(), (row[label_field] or "").strip()) for row in rows]
    if not pairs:
        raise CommandError(f"{path} has no examples")
    return [text for text, _ in pairs], [label for _, label in pairs]


def run(options: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    from sklearn.metrics import f1_score

    oos_label = options["oos_label"] or None
    train_texts, train_labels = read_examples(options["train"])
    test_texts, test_labels = read_examples(options["test"])
    log(f"training on {len(train_texts)} examples of {len(set(train_labels))} labels")
    try:
        model = classifier.train(
            train_texts,
            train_labels,
            oos_label=oos_label,
            label_texts=None
            if options["no_label_names"]
            else classifier.label_name_texts(train_labels, oos_label),
            log=log,
        )
    except classifier.TrainingError as exc:
        raise CommandError(str(exc)) from exc

    started = time.perf_counter()
    predictions = model.predict(test_texts)
    predict_seconds = time.perf_counter() - started
    log(f"predicted {len(test_texts)} test rows in {predict_seconds:.1f}s")

    none = "\x00out-of-scope"
    gold = np.array(test_labels, dtype=object)
    answered = np.array([p.label if p.label is not None else none for p in predictions], object)
    best = np.array([p.ranking[0][0] if p.ranking else none for p in predictions], object)
    result: dict[str, Any] = {"n": len(test_texts)}
    if oos_label:
        in_scope = gold != oos_label
        if not in_scope.any():
            raise CommandError("the test file has no in-scope rows")
        gold_for_f1 = np.where(in_scope, gold, none)
        intents = sorted(set(gold[in_scope]))
        result["n_oos"] = int((~in_scope).sum())
        result["accuracy"] = round(float((answered[in_scope] == gold[in_scope]).mean()), 4)
        result["macro_f1"] = round(
            float(f1_score(gold_for_f1, answered, labels=intents, average="macro")), 4
        )
        result["oos_recall"] = (
            round(float((answered[~in_scope] == none).mean()), 4) if (~in_scope).any() else None
        )
    else:
        intents = sorted(set(gold))
        result["accuracy"] = round(float((best == gold).mean()), 4)
        result["macro_f1"] = round(
            float(f1_score(gold, best, labels=intents, average="macro", zero_division=0)), 4
        )
        result["answered_accuracy"] = round(float((answered == gold).mean()), 4)
        result["rejected"] = round(float((answered == none).mean()), 4)
    result.update(
        {
            "train_seconds": round(model.train_seconds, 2),
            "predict_ms_per_text": round(predict_seconds * 1000 / len(test_texts), 2),
            "model": model.kind,
            "oos_threshold": round(model.threshold, 4),
            "cv_accuracy": model.metrics.get("accuracy"),
        }
    )
    return result
