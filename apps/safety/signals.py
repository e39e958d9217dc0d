"""Cache invalidation: a changed moderation term makes every process recompile the lexicon."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from apps.core.stamps import change_stamp_bump
from apps.safety.models import ModerationTerm
from apps.safety.selectors import LEXICON_KEY


@receiver(post_save, sender=ModerationTerm)
@receiver(post_delete, sender=ModerationTerm)
def lexicon_changed(**_kwargs: Any) -> None:
    # Now, so this process sees its own edit at once, and again after the commit, so no
    # process can compile the old terms between the two and keep them.
    change_stamp_bump(LEXICON_KEY)
    transaction.on_commit(lambda: change_stamp_bump(LEXICON_KEY))
