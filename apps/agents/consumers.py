"""The agents' console socket, `/ws/console/` (protocol: docs/console-protocol.md).

Session-authenticated; only agents and supervisors, only from the platform's own pages. Every
console joins the `console` group, whose small notices make it re-read the queue, the agent's
conversations and (supervisors) the agents' load through the selectors, which apply the
viewer's permissions. Opening a conversation joins its chat group, so the customer's messages and
typing arrive live.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import asdict
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext as _

from apps.agents import events, selectors, services
from apps.agents.models import Resolution
from apps.conversations import events as chat_events
from apps.conversations.consumers import (
    CLOSE_FORBIDDEN_ORIGIN,
    answer,
    db,
    decode_frame,
    origin_allowed,
    own_host,
)
from apps.conversations.models import Conversation, Message
from apps.conversations.serializers import message_frame
from apps.conversations.services import handoff_reason_label
from apps.core.exceptions import ServiceError

logger = logging.getLogger(__name__)

# Console notices arriving close together cause one re-read, this long after the first.
REFRESH_DELAY_SECONDS = 0.03


def _staff_message(message: Message) -> dict[str, Any]:
    """A message with what the bot decided about it, for agents."""
    return {
        **message_frame(message),
        "decision": message.decision,
        "intent": message.intent,
        "confidence": message.confidence,
        "entities": message.entities,
        "handoff_reason": message.handoff_reason,
        "handoff_reason_label": handoff_reason_label(message.handoff_reason),
        "generation_status": message.generation_status,
        "grounding_score": message.grounding_score,
        "author": _user_name(message.author) if message.author_id else None,
    }


def _user_name(user: Any) -> str | None:
    return services.display_name(user) if user is not None else None


def conversation_state(conversation: Conversation) -> dict[str, Any]:
    return {
        "type": "conversation",
        "conversation": {
            "id": str(conversation.public_id),
            "status": conversation.status,
            "language": conversation.language,
            "intent": conversation.intent,
            "handoff_reason": conversation.handoff_reason,
            "handoff_reason_label": handoff_reason_label(conversation.handoff_reason),
            "summary": conversation.summary,
            "agent_id": conversation.assigned_agent_id,
            "agent_name": _user_name(conversation.assigned_agent),
            "csat": conversation.csat,
            "resolution_code": conversation.resolution_code,
            "customer": {
                "id": str(conversation.customer.public_id),
                "channel": conversation.customer.channel,
                "locale": conversation.customer.locale,
            },
        },
        "messages": [_staff_message(m) for m in selectors.conversation_history(conversation)],
        "events": [
            {
                "kind": e.kind,
                "label": e.get_kind_display(),
                "actor": _user_name(e.actor),
                "agent": _user_name(e.agent),
                "note": e.note,
                "created": e.created_at.isoformat(),
            }
            for e in selectors.conversation_events(conversation)
        ],
        "other_conversations": [
            {
                "id": str(c.public_id),
                "status": c.status,
                "created": c.created_at.isoformat(),
                "intent": c.intent,
            }
            for c in selectors.customer_other_conversations(conversation)
        ],
    }


def _queue_frame() -> dict[str, Any]:
    return {"type": "queue", "items": [asdict(item) for item in selectors.waiting_conversations()]}


def _queue_labelled(frame: dict[str, Any]) -> dict[str, Any]:
    """The queue frame with each hand-off reason in words, in the active language. Added per
    console, after the read: one read of the queue serves consoles in every language."""
    return {
        **frame,
        "items": [
            {**item, "handoff_reason_label": handoff_reason_label(item["handoff_reason"])}
            for item in frame["items"]
        ],
    }


class SharedQueue:
    """One read of the queue serves every console of this process: all agents see the same
    queue, so twenty consoles told of the same change make one query, not twenty. A console
    told of a change at time t waits for a read that started after t."""

    def __init__(self) -> None:
        self.read: asyncio.Future | None = None
        self.started = 0.0

    async def frame(self, changed_at: float) -> dict[str, Any]:
        if self.read is None or self.started < changed_at:
            self.started = time.monotonic()
            self.read = asyncio.ensure_future(db(_queue_frame))
        return await asyncio.shield(self.read)


_shared_queue = SharedQueue()


def _mine_frame(user: Any) -> dict[str, Any]:
    return {
        "type": "mine",
        "items": [
            {
                "id": str(c.public_id),
                "language": c.language,
                "intent": c.intent,
                "status": c.status,
                "agent_id": c.assigned_agent_id,
                "agent_name": _user_name(c.assigned_agent),
                "assigned_at": c.assigned_at.isoformat() if c.assigned_at else None,
                "first_agent_reply_at": c.first_agent_reply_at.isoformat()
                if c.first_agent_reply_at
                else None,
            }
            for c in selectors.agent_conversations(user)
        ],
    }


def _agents_frame(user: Any) -> dict[str, Any]:
    return {"type": "agents", "items": selectors.agents_load(user)}


def _hello(user: Any) -> dict[str, Any]:
    profile = services.agent_profile(user)  # created on the first visit, then marked seen
    services.agent_seen(user)
    return {
        "type": "hello",
        "me": {
            "id": user.pk,
            "name": _user_name(user),
            "supervisor": services.is_supervisor(user),
            "presence": profile.presence,
            "capacity": profile.capacity,
            "languages": profile.languages,
        },
        "resolutions": [{"code": c, "label": str(label)} for c, label in Resolution.choices],
        "ping_seconds": settings.AGENTS["PING_SECONDS"],
        "sla_seconds": settings.AGENTS["SLA_FIRST_RESPONSE_SECONDS"],
    }


def _transfer_target(agent_id: Any) -> Any:
    if agent_id in (None, ""):
        return None
    from django.contrib.auth import get_user_model

    try:
        return get_user_model().objects.get(pk=int(agent_id), is_active=True)
    except (ValueError, TypeError, get_user_model().DoesNotExist):
        raise ServiceError(_("There is no such agent."), code="not_found") from None


class ConsoleConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        # Staff sockets come from the platform's own pages only (no other site may embed them).
        if not origin_allowed(self.scope.get("headers", []), own_host):
            await self.close(code=CLOSE_FORBIDDEN_ORIGIN)
            return
        if user is None or not user.is_authenticated or not await db(services.is_agent, user):
            await self.close(code=CLOSE_FORBIDDEN_ORIGIN)
            return
        self.user = user
        self.opened: set[str] = set()
        self.mine: set[str] = set()  # ids in the last "mine" frame
        self.stale: set[str] = set()  # lists to re-read at the next refresh
        self.refresh_pending = False
        self.changed_at = 0.0
        self.tasks: set[asyncio.Task] = set()
        self.supervisor = await db(services.is_supervisor, user)
        await self.accept()
        await self.channel_layer.group_add(events.CONSOLE_GROUP, self.channel_name)
        with translation.override(self._language()):
            await self.send_frame(await db(_hello, user))
        await self.send_lists()

    def _language(self) -> str:
        """The console's language: the language cookie the pages set, else the browser's."""
        chosen = self.scope.get("cookies", {}).get(settings.LANGUAGE_COOKIE_NAME, "")
        if not chosen:
            accept = dict(self.scope.get("headers", [])).get(b"accept-language", b"")
            chosen = accept.decode("latin-1").split(",")[0].strip().lower()
        return "zh-hans" if chosen.startswith("zh") else "en"

    async def disconnect(self, code: int) -> None:
        if not hasattr(self, "user"):
            return
        await self.channel_layer.group_discard(events.CONSOLE_GROUP, self.channel_name)
        for public_id in self.opened:
            await self.channel_layer.group_discard(
                chat_events.group_name(public_id), self.channel_name
            )

    # Frames from the agent ----------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            frame = decode_frame(text_data or "")
        except ServiceError as exc:
            await self.error(exc.code, exc.message)
            return
        kind = frame["type"]
        handler = getattr(self, f"on_{kind}", None) if kind.isidentifier() else None
        if handler is None:
            await self.error(
                "unknown_type", _("Unknown frame type: %(type)s") % {"type": kind[:40]}
            )
            return
        try:
            with translation.override(self._language()):
                await handler(frame)
        except ServiceError as exc:
            await self.error(exc.code or "bad_frame", str(exc), action=kind)

    async def on_ping(self, frame: dict[str, Any]) -> None:
        await db(services.agent_seen, self.user)

    async def on_refresh(self, frame: dict[str, Any]) -> None:
        await self.send_lists()

    async def on_presence(self, frame: dict[str, Any]) -> None:
        await db(services.agent_presence_set, self.user, frame.get("presence"))
        await self.done("presence")

    async def _conversation(self, frame: dict[str, Any]) -> Conversation:
        return await db(selectors.access_conversation, self.user, frame.get("conversation_id"))

    async def on_claim(self, frame: dict[str, Any]) -> None:
        conversation = await self._conversation(frame)
        await db(services.conversation_claim, conversation, self.user)
        await self.done("claim", conversation)

    async def on_open(self, frame: dict[str, Any]) -> None:
        conversation = await self._conversation(frame)
        public_id = str(conversation.public_id)
        if public_id not in self.opened:
            self.opened.add(public_id)
            await self.channel_layer.group_add(chat_events.group_name(public_id), self.channel_name)
        await self.send_frame(await db(conversation_state, conversation))

    async def on_message(self, frame: dict[str, Any]) -> None:
        conversation = await self._conversation(frame)
        message = await db(
            services.agent_message_send,
            conversation,
            self.user,
            frame.get("text"),
            client_id=str(frame.get("client_id") or ""),
        )
        await self.send_frame(
            {
                "type": "ack",
                "client_id": frame.get("client_id"),
                "conversation_id": str(conversation.public_id),
                "message": await db(_staff_message, message),
            }
        )

    async def on_reveal(self, frame: dict[str, Any]) -> None:
        conversation = await self._conversation(frame)
        original = await db(
            services.message_original_reveal, conversation, self.user, frame.get("message_id")
        )
        await self.send_frame(
            {
                "type": "revealed",
                "conversation_id": str(conversation.public_id),
                "message_id": str(frame.get("message_id")),
                "text": original,
            }
        )

    async def on_typing(self, frame: dict[str, Any]) -> None:
        conversation = await self._conversation(frame)
        if conversation.assigned_agent_id != self.user.pk:
            return  # only the agent with the conversation types to the customer
        await self.channel_layer.group_send(
            chat_events.group_name(conversation.public_id),
            {
                "type": "chat.event",
                "frame": {"type": "typing", "role": "agent", "on": bool(frame.get("on"))},
                "sender": self.channel_name,
                "conversation_id": str(conversation.public_id),
            },
        )

    async def on_transfer(self, frame: dict[str, Any]) -> None:
        conversation = await self._conversation(frame)
        target = await db(_transfer_target, frame.get("to_agent"))
        note = str(frame.get("note") or "")[:2000]
        await db(
            services.conversation_transfer, conversation, self.user, to_agent=target, note=note
        )
        await self.done("transfer", conversation)

    async def on_to_bot(self, frame: dict[str, Any]) -> None:
        conversation = await self._conversation(frame)
        await db(services.conversation_return_to_bot, conversation, self.user)
        await self.done("to_bot", conversation)

    async def on_close(self, frame: dict[str, Any]) -> None:
        conversation = await self._conversation(frame)
        resolution = str(frame.get("resolution") or Resolution.RESOLVED)
        await db(services.conversation_close, conversation, self.user, resolution=resolution)
        await self.done("close", conversation)

    async def on_assist(self, frame: dict[str, Any]) -> None:
        conversation = await self._conversation(frame)
        # Suggestions search the knowledge base: they wait with the answers for the models.
        suggestions = await answer(selectors.assist_suggestions, conversation)
        await self.send_frame(
            {
                "type": "assist",
                "conversation_id": str(conversation.public_id),
                "suggestions": suggestions,
            }
        )

    async def on_macros(self, frame: dict[str, Any]) -> None:
        conversation = await self._conversation(frame)
        query = str(frame.get("query") or "")[:40]

        def found() -> list[dict[str, str]]:
            return [
                {
                    "shortcut": m.shortcut,
                    "title": m.title,
                    "text": selectors.macro_render(m, conversation, self.user),
                }
                for m in selectors.macros_search(query)
            ]

        await self.send_frame(
            {
                "type": "macros",
                "conversation_id": str(conversation.public_id),
                "items": await db(found),
            }
        )

    # Events -------------------------------------------------------------------------------

    async def console_event(self, event: dict[str, Any]) -> None:
        """Something in the queue, a conversation or the agents changed: re-read what this
        console shows that it may touch, once for a burst of notices. The re-read runs as its
        own task, so the notices behind this one are taken (and folded in) while it waits."""
        frame = event["frame"]
        if frame["type"] == "conversation":
            self.stale.add("queue")
            if frame.get("agent_id") == self.user.pk or frame.get("id") in self.mine:
                self.stale.add("mine")
            if self.supervisor:
                self.stale.update(("mine", "agents"))
        elif self.supervisor:
            self.stale.add("agents")
        if not self.stale or self.refresh_pending:
            return
        self.refresh_pending = True
        self.changed_at = time.monotonic()
        task = asyncio.ensure_future(self._refresh_soon())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _refresh_soon(self) -> None:
        await asyncio.sleep(REFRESH_DELAY_SECONDS)
        stale, self.stale = self.stale, set()
        changed_at, self.refresh_pending = self.changed_at, False
        await self.send_lists(stale, changed_at)

    async def chat_event(self, event: dict[str, Any]) -> None:
        if event.get("sender") == self.channel_name:
            return
        await self.send_frame(
            {
                "type": "chat",
                "conversation_id": event.get("conversation_id"),
                "frame": event["frame"],
            }
        )

    # Sending ------------------------------------------------------------------------------

    async def send_lists(
        self, which: set[str] | None = None, changed_at: float | None = None
    ) -> None:
        which = which or {"queue", "mine", "agents"}
        if "queue" in which:
            queue = await _shared_queue.frame(changed_at or time.monotonic())
            # Not always inside receive's override: on connect and after a notice as well.
            with translation.override(self._language()):
                queue = _queue_labelled(queue)
            await self.send_frame(queue)
        if "mine" in which:
            mine = await db(_mine_frame, self.user)
            self.mine = {item["id"] for item in mine["items"]}
            await self.send_frame(mine)
        if "agents" in which and self.supervisor:
            await self.send_frame(await db(_agents_frame, self.user))

    async def done(self, action: str, conversation: Conversation | None = None) -> None:
        frame: dict[str, Any] = {"type": "done", "action": action}
        if conversation is not None:
            frame["conversation_id"] = str(conversation.public_id)
        await self.send_frame(frame)

    async def send_frame(self, frame: dict[str, Any]) -> None:
        try:
            await self.send(text_data=json.dumps(frame, ensure_ascii=False, default=str))
        except OSError:
            logger.debug("console socket closed before a %s frame", frame.get("type"))

    async def error(self, code: str, reason: str, action: str | None = None) -> None:
        frame: dict[str, Any] = {"type": "error", "code": code, "reason": reason}
        if action:
            frame["action"] = action
        await self.send_frame(frame)
