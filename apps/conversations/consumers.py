"""The customer's chat socket, `/ws/chat/` (protocol: docs/chat-protocol.md).

Frames are parsed here and handed to `services`; nothing is decided in the consumer. Database
work runs on the thread pool (not Channels' single database thread), so one slow answer does
not hold up the other sockets of the process.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, ClassVar
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import close_old_connections
from django.utils import translation
from django.utils.translation import gettext as _

from apps.agents import services as agent_services
from apps.conversations import engine, events, services
from apps.conversations.models import Conversation, ConversationStatus, Message, Role
from apps.conversations.serializers import message_frame
from apps.core.exceptions import ServiceError

logger = logging.getLogger(__name__)

CLOSE_FORBIDDEN_ORIGIN = 4403
SENT_MESSAGES_KEPT = 200


def _with_connection(function: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        close_old_connections()
        try:
            return function(*args, **kwargs)
        finally:
            close_old_connections()

    return run


class _Pool(ThreadPoolExecutor):
    """A thread pool that knows which of the work handed to it has not finished: an answer
    goes on after its socket has closed (the customer sees it on return), and `pools_drain`
    waits for it."""

    running: ClassVar[set[Future]] = set()
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future = super().submit(fn, *args, **kwargs)
        with self._lock:
            self.running.add(future)
        future.add_done_callback(self._finished)
        return future

    @classmethod
    def _finished(cls, future: Future) -> None:
        with cls._lock:
            cls.running.discard(future)


_executors: dict[str, ThreadPoolExecutor] = {}
_executors_lock = threading.Lock()


def _pool(name: str) -> ThreadPoolExecutor:
    # Two pools per process. "answer": messages that need the models; they wait on PostgreSQL
    # and on the embedding models (which release the GIL), so more threads than cores keep both
    # busy. "quick": storing and replaying messages and exact-cache answers, a few ms each, which
    # would otherwise queue behind every search under load.
    with _executors_lock:
        if name not in _executors:
            setting = "WORKER_THREADS" if name == "answer" else "QUICK_THREADS"
            _executors[name] = _Pool(
                max_workers=settings.CHAT[setting], thread_name_prefix=f"chat-{name}"
            )
        return _executors[name]


async def _off_loop(pool: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    # asgiref, not a bare executor call: its thread handler lets the work reach this event loop
    # (async_to_sync for the channel layer) and waits for the thread if the caller is cancelled.
    return await sync_to_async(
        _with_connection(function), thread_sensitive=False, executor=_pool(pool)
    )(*args, **kwargs)


def pools_drain(timeout: float = 60.0) -> bool:
    """Wait until the work handed to the pools so far has finished; False if `timeout` passed
    first. For shutdown and tests: a test's database is emptied only after its answers are in."""
    with _Pool._lock:
        pending = list(_Pool.running)
    _, not_done = wait(pending, timeout=timeout)
    return not not_done


async def db(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a quick database call (store, read, a cached answer) off the event loop."""
    return await _off_loop("quick", function, *args, **kwargs)


async def answer(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run work that needs the models (embedding, search, generation) off the event loop."""
    return await _off_loop("answer", function, *args, **kwargs)


def origin_allowed(
    headers: list[tuple[bytes, bytes]],
    host_allowed: Callable[[str], bool],
    allowed: Iterable[str] = (),
) -> bool:
    """Browsers send Origin on every websocket; `allowed` lists the other sites whose pages may
    open this socket ("*" for any: the widget's `CHAT_ALLOWED_ORIGINS`), and the platform's own
    hosts always may. A client without Origin (an app, a test) is not a browser page and is let
    through."""
    origin = dict(headers).get(b"origin", b"").decode("latin-1")
    if not origin:
        return True
    if "*" in allowed or origin in allowed:
        return True
    host = origin.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    return host_allowed(host)


class TokenBucket:
    """Per-connection rate limit: `burst` frames at once, refilled at `rate` per second."""

    def __init__(self, burst: int, rate: float) -> None:
        self.capacity, self.rate = float(burst), rate
        self.tokens, self.updated = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def decode_frame(text_data: str) -> dict[str, Any]:
    """A client's frame: a JSON object with a string "type". ServiceError (bad_json,
    bad_frame) with the reason otherwise; both sockets answer it with an error frame."""
    try:
        frame = json.loads(text_data)
    except ValueError:
        raise ServiceError(_("The frame is not valid JSON."), code="bad_json") from None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise ServiceError(_('A frame is a JSON object with a "type".'), code="bad_frame")
    return frame


def own_host(host: str) -> bool:
    from django.http.request import validate_host

    return validate_host(host, settings.ALLOWED_HOSTS)


class ChatConsumer(AsyncWebsocketConsumer):
    conversation: Conversation | None
    kb_id: str
    locale: str

    async def connect(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        self.kb_id = (query.get("kb") or [""])[0]
        lang = (query.get("lang") or ["en"])[0].lower()
        self.locale = "zh-hans" if lang.startswith("zh") else "en"
        self.conversation = None
        self.group = ""
        limits = settings.CHAT["RATE_LIMIT"]
        self.bucket = TokenBucket(limits["burst"], limits["per_second"])
        self.typing_bucket = TokenBucket(limits["burst"] * 2, limits["per_second"] * 4)
        self.processing = asyncio.Lock()
        self.tasks: set[asyncio.Task] = set()
        # Set when the customer goes away: a reply still being generated stops early.
        self.gone = threading.Event()
        # Digests of the message frames sent lately, so the same one is not sent twice (see
        # send_frame); a frame with its sources is a few KB, kept per socket.
        self.sent_messages: OrderedDict[bytes, None] = OrderedDict()
        await self.accept()
        if not origin_allowed(
            self.scope.get("headers", []), own_host, settings.CHAT["ALLOWED_ORIGINS"]
        ):
            # Accepted all the same, to say why before closing: a socket closed during the
            # handshake reaches the page as a bare failure, without the code or a reason.
            # Frames the page sent meanwhile are ignored (receive checks `gone`).
            self.gone.set()
            with translation.override(self.locale):
                await self.error(
                    "forbidden_origin", _("This site is not allowed to open the chat.")
                )
            await self.close(code=CLOSE_FORBIDDEN_ORIGIN)

    async def disconnect(self, code: int) -> None:
        self.gone.set()
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    # Frames from the client -----------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.gone.is_set():  # a refused origin's socket, closing
            return
        # Every answer to the frame, its error frames included, in the conversation's language
        # (the socket's, or the one a hello frame chose), whatever language the server runs in.
        with translation.override(self.locale):
            await self._receive_frame(text_data)

    async def _receive_frame(self, text_data: str | None) -> None:
        if text_data is None:
            await self.error("bad_frame", _("Frames must be JSON text."))
            return
        if len(text_data) > settings.CHAT["MAX_FRAME_BYTES"]:
            await self.error("too_long", _("The frame is too large."))
            return
        try:
            frame = decode_frame(text_data)
        except ServiceError as exc:
            await self.error(exc.code, exc.message)
            return
        kind = frame["type"]
        bucket = self.typing_bucket if kind == "typing" else self.bucket
        if not bucket.take():
            await self.error(
                "rate_limited",
                _("You are sending messages too quickly. Please wait a moment."),
                client_id=frame.get("client_id"),
            )
            return
        handler = {
            "hello": self.on_hello,
            "message": self.on_message,
            "typing": self.on_typing,
            "rate": self.on_rate,
            "handoff": self.on_handoff,
            "csat": self.on_csat,
        }.get(kind)
        if handler is None:
            await self.error(
                "unknown_type", _("Unknown frame type: %(type)s") % {"type": kind[:40]}
            )
            return
        try:
            await handler(frame)
        except ServiceError as exc:
            await self.error(exc.code or "bad_frame", str(exc), client_id=frame.get("client_id"))

    async def on_hello(self, frame: dict[str, Any]) -> None:
        token = frame.get("token")
        if frame.get("locale") in ("en", "zh-hans"):
            self.locale = frame["locale"]
        if not token:
            return
        conversation = await db(services.conversation_from_token, token)
        await self.join(conversation)
        try:
            last_seq = max(0, int(frame.get("last_seq") or 0))
        except (TypeError, ValueError):
            last_seq = 0
        missed = await db(_messages_after, conversation, last_seq)
        for message in missed:
            await self.send_frame({"type": "message", "message": message})
        # Messages stored but never answered (the server died while answering): answer now.
        pending = await db(_unprocessed, conversation)
        for message_id in pending:
            self.spawn(self.process(message_id))

    async def on_message(self, frame: dict[str, Any]) -> None:
        client_id = frame.get("client_id")
        if client_id is not None and not isinstance(client_id, str | int):
            raise ServiceError(_("client_id must be a string."), code="bad_frame")
        text = services.validate_text(frame.get("text"))
        if self.conversation is None:
            conversation = await db(
                services.conversation_start, knowledge_base=self.kb_id, locale=self.locale
            )
            await self.join(conversation)
        assert self.conversation is not None
        message, quick = await db(_receive, self.conversation, text, str(client_id or ""))
        await self.send_frame(
            {"type": "ack", "client_id": client_id, "message": message_frame(message)}
        )
        if message.processed_at is None:
            self.spawn(self.process(message.pk, quick=quick))

    async def on_typing(self, frame: dict[str, Any]) -> None:
        if self.group:
            await self.channel_layer.group_send(
                self.group,
                {
                    "type": "chat.event",
                    "frame": {"type": "typing", "role": "customer", "on": bool(frame.get("on"))},
                    "sender": self.channel_name,
                    "conversation_id": str(self.conversation.public_id)
                    if self.conversation
                    else "",
                },
            )

    async def on_rate(self, frame: dict[str, Any]) -> None:
        if self.conversation is None:
            raise ServiceError(_("There is no conversation yet."), code="no_conversation")
        await db(
            services.message_rate, self.conversation, frame.get("message_id"), frame.get("value")
        )

    async def on_handoff(self, frame: dict[str, Any]) -> None:
        if self.conversation is None:
            conversation = await db(
                services.conversation_start, knowledge_base=self.kb_id, locale=self.locale
            )
            await self.join(conversation)
        assert self.conversation is not None
        await db(services.conversation_hand_off, self.conversation, "customer_button")

    async def on_csat(self, frame: dict[str, Any]) -> None:
        """The customer's rating (1-5) of a conversation an agent closed."""
        if self.conversation is None:
            raise ServiceError(_("There is no conversation yet."), code="no_conversation")
        await db(agent_services.conversation_rate, self.conversation, frame.get("score"))

    # Work ----------------------------------------------------------------------------------

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def process(self, message_id: int, *, quick: bool = False) -> None:
        """Answer one stored message; one at a time per socket, so answers keep their order.
        `quick`: its answer is in the exact cache, so it need not wait for the models."""
        async with self.processing:
            await self.send_frame({"type": "typing", "role": "bot", "on": True})
            try:
                run = db if quick else answer
                replies = await run(services.message_process, message_id, cancel=self.gone)
                # The replies also go to every socket on the conversation through the channel
                # layer. Sent here as well, they reach this customer even when the layer did
                # not carry them (Redis down or overloaded); send_frame drops the second copy.
                for reply in replies:
                    await self.send_frame({"type": "message", "message": message_frame(reply)})
            except ServiceError as exc:
                await self.error(exc.code or "unavailable", str(exc))
            except Exception:
                # The message is stored; it is answered again on resume or by the beat task.
                logger.exception("processing message %s failed", message_id)
                await self.error(
                    "unavailable",
                    _("Sorry, something went wrong while answering. We will reply shortly."),
                )
            finally:
                await self.send_frame({"type": "typing", "role": "bot", "on": False})

    async def join(self, conversation: Conversation) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        self.conversation = conversation
        self.group = events.group_name(conversation.public_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.send_frame(
            {
                "type": "session",
                "token": services.conversation_token(conversation),
                "conversation_id": str(conversation.public_id),
                "status": conversation.status,
                "last_seq": conversation.last_seq,
                # An agent closed it and the customer has not rated it yet: ask again.
                "csat_pending": conversation.status == ConversationStatus.CLOSED
                and conversation.csat is None
                and bool(conversation.resolution_code),
            }
        )

    # Events from the channel layer -----------------------------------------------------------

    async def chat_event(self, event: dict[str, Any]) -> None:
        if event.get("sender") == self.channel_name:
            return
        frame = event["frame"]
        if frame.get("type") == "status" and self.conversation is not None:
            self.conversation.status = frame["status"]
        await self.send_frame(frame)

    async def send_frame(self, frame: dict[str, Any]) -> None:
        text = json.dumps(frame, ensure_ascii=False, sort_keys=True)
        if frame.get("type") == "message":
            # A reply comes both from the channel layer and from the socket that asked (see
            # process); an updated message (a rating) differs, so it is sent again.
            digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
            if digest in self.sent_messages:
                return
            self.sent_messages[digest] = None
            if len(self.sent_messages) > SENT_MESSAGES_KEPT:
                self.sent_messages.popitem(last=False)
        try:
            await self.send(text_data=text)
        except OSError:
            # The client went away (uvicorn's ClientDisconnected): what it missed is stored and
            # replayed when it comes back.
            logger.debug("socket closed before a %s frame", frame.get("type"))

    async def error(self, code: str, reason: str, client_id: Any = None) -> None:
        frame: dict[str, Any] = {"type": "error", "code": code, "reason": reason}
        if client_id is not None:
            frame["client_id"] = client_id
        await self.send_frame(frame)


def _receive(conversation: Conversation, text: str, client_id: str) -> tuple[Message, bool]:
    """Store a customer's message (`services.message_receive`), and whether its answer is in
    the exact cache: such a question is answered on the quick threads, not queued behind
    searches (still after this socket's earlier messages). Checked here, not on the event loop:
    the cache may be Redis, and the original text may have to be decrypted. Should the answer
    be gone by the time it is processed, the engine does the whole work there, only slower."""
    message, _created = services.message_receive(conversation, text, client_id=client_id)
    quick = message.processed_at is None and engine.exact_answer_ready(
        message.conversation, message.original_text
    )
    return message, quick


def _messages_after(conversation: Conversation, seq: int) -> list[dict[str, Any]]:
    return [
        message_frame(m)
        for m in Message.objects.filter(conversation=conversation, seq__gt=seq).order_by("seq")
    ]


def _unprocessed(conversation: Conversation) -> list[int]:
    return list(
        Message.objects.filter(
            conversation=conversation, role=Role.CUSTOMER, processed_at__isnull=True
        ).values_list("pk", flat=True)
    )
