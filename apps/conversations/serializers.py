"""The wire shape of a message, shared by the socket and the REST API (docs/chat-protocol.md)."""

from __future__ import annotations

from typing import Any

from apps.conversations.models import Message


def message_frame(message: Message) -> dict[str, Any]:
    return {
        "id": str(message.public_id),
        "seq": message.seq,
        "role": message.role,
        "text": message.text,
        # Personal data in it was redacted; the console can ask for the original (audited).
        "redacted": message.redacted,
        "created": message.created_at.isoformat(),
        "client_id": message.client_id or None,
        "sources": message.sources or [],
        "choices": message.choices or [],
        "rating": message.rating or None,
        "rateable": message.rateable,
        # The draft this message replaces in the widget (generated answers only).
        "stream_id": (message.generation or {}).get("stream_id"),
    }
