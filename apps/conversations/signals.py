"""Drop cached answers when a knowledge base changes (connected in AppConfig.ready)."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from apps.knowledge.index_events import knowledge_changed


@receiver(knowledge_changed)
def answer_caches_invalidate(sender: Any, knowledge_base_id: int | None, **kwargs: Any) -> None:
    from apps.conversations import caches

    caches.knowledge_base_invalidate(knowledge_base_id)
