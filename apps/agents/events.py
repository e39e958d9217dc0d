"""Console socket events, sent after the commit to the group every console socket joins.

Frames are small notices ("this conversation changed", "agents changed"); a console re-reads
what it shows through the selectors, which apply the viewer's permissions. So no frame ever
carries a conversation to an agent who may not see it.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from apps.conversations.events import group_send

CONSOLE_GROUP = "console"


def _send(frame: dict[str, Any]) -> None:
    event = {"type": "console.event", "frame": frame}
    transaction.on_commit(lambda: group_send(CONSOLE_GROUP, event))


def conversation_changed(conversation: Any) -> None:
    _send(
        {
            "type": "conversation",
            "id": str(conversation.public_id),
            "status": conversation.status,
            "agent_id": conversation.assigned_agent_id,
        }
    )


def agents_changed() -> None:
    _send({"type": "agents"})
