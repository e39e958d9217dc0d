from __future__ import annotations

from typing import Any

from celery import shared_task
from django.core.cache import cache
from django.db import InterfaceError, OperationalError
from django.utils.dateparse import parse_datetime

from apps.knowledge.embeddings import EmbeddingUnavailable
from apps.nlu import services


@shared_task(
    autoretry_for=(EmbeddingUnavailable, OperationalError, InterfaceError),
    retry_backoff=10,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=3,
    acks_late=True,
)
def classifier_train_task(requested_at: str | None = None) -> dict[str, Any]:
    """Retrain the intent classifier on the current examples. `requested_at` (ISO time of the
    change that queued it): nothing is done if a training started after it. A failure is
    recorded on the version row by the service."""
    # From here on, a new change must queue a new job: this one may have read its data already.
    cache.delete(services.QUEUED_KEY)
    version = services.classifier_train(
        requested_at=services.last_change_at(parse_datetime(requested_at)) if requested_at else None
    )
    if version is None:
        return {"skipped": True}
    return {"version": version.number, "status": version.status, "accuracy": version.accuracy}
