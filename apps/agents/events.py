"""Console socket events, sent after the commit to the group every console socket joins.

Frames are small notices ("this conversation changed", "agents changed"); a console re-reads
what it shows through the selectors, which apply the viewer's permissions. So no frame ever
carries a conversation to an agent who may not see it.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

CONSOLE_GROUP = "console"


def _send(frame: dict[str, Any]) -> None:
    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            async_to_sync(layer.group_send)(
                CONSOLE_GROUP, {"type": "console.event", "frame": frame}
            )
        except Exception:  # the console re-reads on its next event or reconnect
            logger.exception("could not publish %s to the console", frame.get("type"))

    transaction.on_commit(send)


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
