"""Socket events of a conversation, sent to its channel-layer group after the commit.

Every socket on a conversation (the customer's tabs, the agents' consoles that opened it) joins
the group `chat.<conversation public id>`; an event is a dict with a `type` that survives a JSON
round trip, and carries `conversation_id`. The consumers' `chat_event` handlers forward
`event["frame"]` to their clients.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)


def group_name(conversation_public_id: Any) -> str:
    return f"chat.{conversation_public_id}"


def group_send(group: str, event: dict[str, Any]) -> None:
    """Send a channel-layer event now. A failure is logged, never raised: what the event
    announces is stored, and clients catch up on resume or on the next event."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, event)
    except Exception:
        logger.exception("could not publish %s to %s", event.get("type"), group)


def _chat_event(conversation_public_id: Any, frame: dict[str, Any]) -> dict[str, Any]:
    return {"type": "chat.event", "frame": frame, "conversation_id": str(conversation_public_id)}


def publish(conversation_public_id: Any, frame: dict[str, Any]) -> None:
    """Send `frame` to every socket on the conversation once the transaction commits."""
    transaction.on_commit(lambda: publish_now(conversation_public_id, frame))


def publish_now(conversation_public_id: Any, frame: dict[str, Any]) -> None:
    """Send `frame` at once, outside any transaction (a draft being generated is not stored,
    so there is no commit to wait for)."""
    group_send(group_name(conversation_public_id), _chat_event(conversation_public_id, frame))


class ReplyStream:
    """The draft of a reply being generated, shown to the conversation's sockets as it grows.
    `stream` frames carry the whole text so far (a lost frame is repaired by the next);
    `stream_end` with `discarded` withdraws it. The stored message that follows carries the
    same `stream_id` and replaces the draft."""

    def __init__(self, conversation_public_id: Any, reply_to: Any) -> None:
        self.id = uuid.uuid4().hex
        self.conversation_public_id = conversation_public_id
        self.reply_to = str(reply_to)

    def update(self, text: str) -> None:
        publish_now(
            self.conversation_public_id,
            {"type": "stream", "stream_id": self.id, "reply_to": self.reply_to, "text": text},
        )

    def discard(self) -> None:
        publish_now(
            self.conversation_public_id,
            {"type": "stream_end", "stream_id": self.id, "discarded": True},
        )
