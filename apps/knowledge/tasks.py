from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from apps.knowledge import services
from apps.knowledge.embeddings import EmbeddingUnavailable


class ArticlesEmbedTask(Task):
    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        # Reached once retries are spent, or at once for a permanent error.
        article_ids = args[0] if args else kwargs["article_ids"]
        services.articles_embed_failed(article_ids, f"{type(exc).__name__}: {exc}")


@shared_task(
    base=ArticlesEmbedTask,
    autoretry_for=(EmbeddingUnavailable,),
    retry_backoff=5,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=5,
    acks_late=True,
)
def articles_embed_task(article_ids: list[int]) -> list[dict]:
    results = services.articles_embed(article_ids)
    return [{"article_id": r.article_id, "chunks": r.chunks, "skipped": r.skipped} for r in results]
