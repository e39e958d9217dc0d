"""Thin Celery tasks of conversations."""

from __future__ import annotations

from celery import shared_task

from apps.conversations import services


@shared_task(acks_late=True)
def conversation_summarize_task(conversation_id: int) -> None:
    services.conversation_summarize(conversation_id)


@shared_task(acks_late=True)
def messages_unprocessed_process_task() -> int:
    """Beat, every minute: reply to messages whose processing died."""
    return services.messages_unprocessed_process()


@shared_task(acks_late=True)
def messages_originals_purge_task() -> int:
    """Beat, hourly: forget the encrypted originals older than the retention period."""
    return services.messages_originals_purge()
