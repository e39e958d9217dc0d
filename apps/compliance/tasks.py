"""Thin Celery tasks of compliance: run a data-subject request, archive old conversations."""

from __future__ import annotations

from celery import shared_task

from apps.compliance import retention, services


@shared_task(acks_late=True)
def data_subject_request_run_task(request_id: int) -> None:
    # Idempotent: the service takes only an approved request, under a row lock.
    services.data_subject_request_run(request_id)


@shared_task(acks_late=True)
def retention_archive_task() -> int:
    """Beat, daily: closed conversations past the retention period go to cold storage, and
    access exports past theirs are deleted."""
    services.access_exports_expire()
    return retention.conversations_archive().conversations
