"""Writes for moderation: flags for staff, and their review."""

from __future__ import annotations

from django.db.models import QuerySet
from django.utils import timezone

from apps.safety.models import FlagDirection, ModerationFlag
from apps.safety.moderation import Verdict


def moderation_flag_record(
    *,
    conversation_id: int,
    message_id: int | None,
    direction: str,
    verdict: Verdict,
) -> ModerationFlag:
    """Record a blocked or flagged text for staff: ids, score and categories, never the text.
    A message processed again (a retry after a crash) keeps its first flag."""
    assert direction in FlagDirection.values
    fields = {
        "source": verdict.source,
        "blocked": verdict.blocked,
        "score": None if verdict.score is None else round(verdict.score, 4),
        "categories": list(verdict.categories),
    }
    if message_id is None:
        return ModerationFlag.objects.create(
            conversation_id=conversation_id, direction=direction, **fields
        )
    # get_or_create also covers the same message flagged at the same moment by another worker:
    # it inserts in a savepoint and, on the unique constraint's IntegrityError, reads that row.
    flag, _ = ModerationFlag.objects.get_or_create(
        message_id=message_id,
        direction=direction,
        defaults={"conversation_id": conversation_id, **fields},
    )
    return flag


def moderation_flags_review(flags: QuerySet[ModerationFlag], user: object) -> int:
    """Mark the flags not reviewed yet as reviewed by `user` (one UPDATE); returns how many."""
    return flags.filter(reviewed_at__isnull=True).update(
        reviewed_by=user, reviewed_at=timezone.now()
    )
