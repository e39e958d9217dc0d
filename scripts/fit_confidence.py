"""Fit the search confidence model from `evaluate retrieval --holdout F --details OUT.jsonl` runs.

Each query is an example: label 1 when the top result is right. Queries whose answer was held out
of the bank have no right answer, so they teach the model when not to answer. Prints the
coefficients for apps/knowledge/selectors.py (CONFIDENCE_COEFFICIENTS) and, for thresholds,
the share answered and the precision of those answers, measured with 5-fold cross-validation.

    python scripts/fit_confidence.py /tmp/cal_sf.jsonl [more.jsonl ...]
"""

from __future__ import annotations

import json
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

FEATURES = ["fused", "dense", "margin", "keyword_share", "keyword_max"]


def load(paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    rows, labels = [], []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                features = row["features"]
                if not features:
                    continue
                values = [features[name] for name in FEATURES]
                values[-1] = float(np.log1p(values[-1]))  # the model takes log(1 + best BM25)
                rows.append(values)
                labels.append(int(row["rank"] == 1))
    return np.array(rows), np.array(labels)


def main(paths: list[str]) -> None:
    x, y = load(paths)
    model = LogisticRegression(C=10.0, max_iter=5000)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    p = cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1]
    model.fit(x, y)
    print(f"examples {len(y)}, right top-1 {y.mean():.3f}, CV AUC {roc_auc_score(y, p):.3f}")
    coefficients = {"bias": round(float(model.intercept_[0]), 3)}
    coefficients |= {n: round(float(c), 3) for n, c in zip(FEATURES, model.coef_[0], strict=True)}
    print("CONFIDENCE_COEFFICIENTS =", json.dumps(coefficients))
    print(f"{'threshold':>10}{'answered':>10}{'precision':>11}")
    for threshold in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        answered = p >= threshold
        precision = y[answered].mean() if answered.any() else float("nan")
        print(f"{threshold:>10.1f}{answered.mean():>10.3f}{precision:>11.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
