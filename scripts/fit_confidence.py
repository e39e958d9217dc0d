"""Fit the search confidence model from `evaluate retrieval --holdout F --details OUT.jsonl` runs.

Each query is an example: label 1 when the top result is right. Queries whose answer was held out
of the bank, or that have none (`"faq_id": null`), teach the model when not to answer. Prints the
coefficients for apps/knowledge/selectors.py (CONFIDENCE_COEFFICIENTS) and, for thresholds,
the share answered and the precision of those answers, cross-validated in 5 folds that keep every
run of one query in the same fold.

To judge the new model on queries it was not fitted on, `--judge-half odd` leaves the queries
whose query_id ends in an odd number out of the fit and compares, on them, the model search used
when the runs were made (their `confidence` column) with the new one; `--judge-half both` judges
each half with the model fitted on the other, then fits on all queries. `--judge` judges the same
queries run on another bank (the full one, say) instead:

    python scripts/fit_confidence.py /tmp/zh_s0.jsonl /tmp/zh_s1.jsonl --judge-half both \
        [--extra /tmp/bq.jsonl] [--judge /tmp/zh_h0.jsonl]
    python scripts/fit_confidence.py --judge /tmp/en.jsonl     # judge the current model only
"""

from __future__ import annotations

import argparse
import json
import math
import re

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict

FEATURES = ["fused", "dense", "margin", "keyword_share", "keyword_max"]
CV_THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
JUDGE_THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
# search's floor for a query that is one of the top article's questions word for word
# (selectors.EXACT_QUESTION_CONFIDENCE); the runs' details say where it applied.
EXACT_QUESTION_CONFIDENCE = 0.95
TRAILING_NUMBER_RE = re.compile(r"(\d+)\D*$")


class Runs:
    """Queries of one or more details files: features (log(1 + best BM25) as the model takes
    it), whether the top result is right, whether a right answer was in the bank, the confidence
    search gave, whether the exact-question floor applied, and each query's id."""

    def __init__(self, rows: list[dict]) -> None:
        rows = [row for row in rows if row["features"]]
        self.x = np.array(
            [
                [row["features"][name] for name in FEATURES[:-1]]
                + [math.log1p(row["features"]["keyword_max"])]
                for row in rows
            ]
        ).reshape(-1, len(FEATURES))
        self.right = np.array([int(row["rank"] == 1) for row in rows])
        self.answerable = np.array([bool(row["answerable_in_bank"]) for row in rows])
        self.confidence = np.array([float(row["confidence"]) for row in rows])
        self.exact = np.array([bool(row.get("exact_question")) for row in rows])
        self.query_ids = [str(row.get("query_id")) for row in rows]

    def __len__(self) -> int:
        return len(self.right)


def read_runs(paths: list[str], language: str = "") -> list[dict]:
    rows = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            rows += [json.loads(line) for line in handle if line.strip()]
    if language:
        # A query detected as another language was scored with that language's coefficients.
        rows = [row for row in rows if row.get("language", language) == language]
    return rows


def half(query_id: str) -> str:
    match = TRAILING_NUMBER_RE.search(query_id)
    if match is None:
        raise SystemExit(f"query_id {query_id!r} ends in no number: cannot split by parity")
    return "odd" if int(match.group(1)) % 2 else "even"


def predict(coefficients: dict[str, float], x: np.ndarray) -> np.ndarray:
    weights = np.array([coefficients[name] for name in FEATURES])
    return 1.0 / (1.0 + np.exp(-(coefficients["bias"] + x @ weights)))


def judge_table(runs: Runs, models: dict[str, np.ndarray]) -> None:
    """answered: share of the answerable queries answered; right: share answered right;
    precision: right answers among all answers; false: share of unanswerable queries answered."""
    n_answerable = int(runs.answerable.sum())
    n_unanswerable = len(runs) - n_answerable
    print(f"judged on {len(runs)} query runs: {n_answerable} answerable, {n_unanswerable} not")
    header = f"{'threshold':>10}" + "".join(
        f"{name + ' ' + col:>17}"
        for name in models
        for col in ("answered", "right", "precision", "false")
    )
    print(header)
    for threshold in JUDGE_THRESHOLDS:
        cells = []
        for p in models.values():
            answered = p >= threshold
            right = answered & (runs.right == 1)
            cells += [
                answered[runs.answerable].mean() if n_answerable else math.nan,
                right[runs.answerable].mean() if n_answerable else math.nan,
                right.sum() / answered.sum() if answered.any() else math.nan,
                answered[~runs.answerable].mean() if n_unanswerable else math.nan,
            ]
        print(f"{threshold:>10.1f}" + "".join(f"{cell:>17.3f}" for cell in cells))


def fit(runs: Runs, *, report: bool = True) -> dict[str, float]:
    """Coefficients fitted on `runs`; with `report`, cross-validated AUC and thresholds."""
    model = LogisticRegression(C=10.0, max_iter=5000)
    x, y = runs.x, runs.right
    model.fit(x, y)
    coefficients = {"bias": round(float(model.intercept_[0]), 3)}
    coefficients |= {n: round(float(c), 3) for n, c in zip(FEATURES, model.coef_[0], strict=True)}
    if not report:
        return coefficients
    # Every run of a query (one per holdout seed) in the same fold: else the model is judged
    # on queries it has seen.
    folds = StratifiedGroupKFold(5, shuffle=True, random_state=0)
    p = cross_val_predict(model, x, y, groups=runs.query_ids, cv=folds, method="predict_proba")
    p = p[:, 1]
    print(f"examples {len(y)}, right top-1 {y.mean():.3f}, CV AUC {roc_auc_score(y, p):.3f}")
    print("CONFIDENCE_COEFFICIENTS =", json.dumps(coefficients))
    print(f"{'threshold':>10}{'answered':>10}{'precision':>11}  (cross-validated, all queries)")
    for threshold in CV_THRESHOLDS:
        answered = p >= threshold
        precision = y[answered].mean() if answered.any() else float("nan")
        print(f"{threshold:>10.1f}{answered.mean():>10.3f}{precision:>11.3f}")
    return coefficients


def with_exact_floor(runs: Runs, p: np.ndarray) -> np.ndarray:
    return np.where(runs.exact, np.maximum(p, EXACT_QUESTION_CONFIDENCE), p)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", help="details JSONL to fit on")
    parser.add_argument(
        "--judge-half",
        choices=["even", "odd", "both"],
        help="leave the queries whose query_id ends in a number of this parity out of the fit "
        "and judge the old and the new model on them (--extra runs are fitted whole); 'both' "
        "judges each half with the model fitted on the other, then fits on all",
    )
    parser.add_argument("--extra", action="append", default=[], help="details to fit on, all")
    parser.add_argument(
        "--judge",
        action="append",
        default=[],
        help="details to judge on instead of the runs, never fitted (only the --judge-half "
        "queries, when given): the same queries run on another bank",
    )
    parser.add_argument("--language", default="", help="only queries detected in this language")
    parser.add_argument(
        "--coefficients", default="", help="JSON: judge these instead of fitting new ones"
    )
    args = parser.parse_args()

    rows = read_runs(args.runs, args.language)
    to_judge = read_runs(args.judge, args.language)
    extra = read_runs(args.extra, args.language)
    given = json.loads(args.coefficients) if args.coefficients else None
    halves = ["even", "odd"] if args.judge_half == "both" else [args.judge_half]
    judged: list[dict] = []
    new: list[np.ndarray] = []
    for judged_half in halves if args.judge_half else [None]:
        if judged_half is None:
            fitted, part = rows + extra, to_judge
        else:
            fitted = [row for row in rows if half(str(row["query_id"])) != judged_half] + extra
            part = [row for row in (to_judge or rows) if half(str(row["query_id"])) == judged_half]
        coefficients = given
        if coefficients is None and fitted:
            if args.judge_half == "both":
                coefficients = fit(Runs(fitted), report=False)
                print(f"fitted without the {judged_half} half:", json.dumps(coefficients))
            else:
                coefficients = fit(Runs(fitted))
        if part and coefficients is not None:
            new.append(with_exact_floor(Runs(part), predict(coefficients, Runs(part).x)))
        judged += part
    if judged:
        runs = Runs(judged)
        models = {"old": runs.confidence}
        if len(new) == len(halves if args.judge_half else [None]):
            models["new"] = np.concatenate(new)
        judge_table(runs, models)
    if args.judge_half == "both" and given is None:
        print("\nfitted on all queries:")
        fit(Runs(rows + extra))


if __name__ == "__main__":
    main()
