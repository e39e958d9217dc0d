"""Cache invalidation: a changed moderation term makes every process recompile the lexicon."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from apps.safety.models import ModerationTerm
from apps.safety.selectors import LEXICON_KEY


@receiver(post_save, sender=ModerationTerm)
@receiver(post_delete, sender=ModerationTerm)
def lexicon_changed(**_kwargs: Any) -> None:
    # Now, so this process sees its own edit at once, and again after the commit, so no
    # process can compile the old terms between the two and keep them.
    def bump() -> None:
        cache.set(LEXICON_KEY, uuid.uuid4().hex, timeout=None)

    bump()
    transaction.on_commit(bump)
