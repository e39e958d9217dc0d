"""Socket events of a conversation, sent to its channel-layer group after the commit.

Every socket on a conversation (the customer's tabs, later the agent console) joins the group
`chat.<conversation public id>`; an event is a dict with a `type` that survives a JSON round
trip. The consumer's `chat_event` handler forwards `event["frame"]` to its client.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)


def group_name(conversation_public_id: Any) -> str:
    return f"chat.{conversation_public_id}"


def publish(conversation_public_id: Any, frame: dict[str, Any]) -> None:
    """Send `frame` to every socket on the conversation once the transaction commits."""
    group = group_name(conversation_public_id)

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            async_to_sync(layer.group_send)(group, {"type": "chat.event", "frame": frame})
        except Exception:  # the message is stored; a client catches up on resume
            logger.exception("could not publish %s to %s", frame.get("type"), group)

    transaction.on_commit(send)
