"""The chat socket with Channels' WebsocketCommunicator: resume, replay, limits, bad frames."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import override_settings

from apps.conversations import consumers
from apps.conversations.models import Conversation, Message, Role
from apps.knowledge.models import KnowledgeBase
from cs_platform.asgi import application

TIMEOUT = 30  # answering embeds the question; the first call loads the model


def connect(kb: KnowledgeBase, origin: str | None = None) -> WebsocketCommunicator:
    headers = [(b"origin", origin.encode())] if origin else []
    return WebsocketCommunicator(application, f"/ws/chat/?kb={kb.pk}&lang=zh-hans", headers)


async def receive_until(socket: WebsocketCommunicator, predicate: Any) -> list[dict[str, Any]]:
    """Frames up to and including the first one `predicate` accepts."""
    frames = []
    while True:
        frame = await socket.receive_json_from(timeout=TIMEOUT)
        frames.append(frame)
        if predicate(frame):
            return frames


def bot_message(frame: dict[str, Any]) -> bool:
    return frame["type"] == "message" and frame["message"]["role"] in ("bot", "system")


def test_ask_answer_then_resume_and_replay_after_reconnect(live_chat_kb: KnowledgeBase) -> None:
    async def scenario() -> None:
        socket = connect(live_chat_kb)
        connected, _ = await socket.connect()
        assert connected
        await socket.send_json_to({"type": "hello", "token": None, "last_seq": 0})
        await socket.send_json_to({"type": "message", "client_id": "m1", "text": "运费怎么算？"})
        frames = await receive_until(socket, bot_message)
        types = [f["type"] for f in frames]
        assert types.index("session") < types.index("ack")
        session = next(f for f in frames if f["type"] == "session")
        ack = next(f for f in frames if f["type"] == "ack")
        assert ack["client_id"] == "m1" and ack["message"]["seq"] == 1
        assert {"type": "typing", "role": "bot", "on": True} in frames
        answer = frames[-1]["message"]
        assert answer["seq"] == 2 and "99" in answer["text"]
        assert answer["sources"][0]["title"] == "运费怎么算？" and answer["rateable"]

        await socket.send_json_to({"type": "rate", "message_id": answer["id"], "value": "down"})
        rated = await receive_until(socket, lambda f: f["type"] == "rated")
        assert rated[-1]["value"] == "down"
        await socket.disconnect()

        # A new socket (a reload) with the token: everything after seq 1 is replayed.
        socket = connect(live_chat_kb)
        await socket.connect()
        await socket.send_json_to({"type": "hello", "token": session["token"], "last_seq": 1})
        frames = await receive_until(socket, lambda f: f["type"] == "message")
        assert frames[0]["type"] == "session"
        assert frames[0]["conversation_id"] == session["conversation_id"]
        assert frames[-1]["message"]["seq"] == 2 and frames[-1]["message"]["rating"] == "down"
        # Re-sending a message the client is unsure about (same client_id) stores it once.
        await socket.send_json_to({"type": "message", "client_id": "m1", "text": "运费怎么算？"})
        again = await receive_until(socket, lambda f: f["type"] == "ack")
        assert again[-1]["message"]["seq"] == 1
        assert await socket.receive_nothing(timeout=0.5)
        await socket.disconnect()

    async_to_sync(scenario)()
    conversation = Conversation.objects.get()
    assert conversation.messages.filter(role=Role.CUSTOMER).count() == 1


def test_a_message_stored_but_never_answered_is_answered_on_resume(
    live_chat_kb: KnowledgeBase,
) -> None:
    from apps.conversations import services

    conversation = services.conversation_start(knowledge_base=live_chat_kb)
    services.message_receive(conversation, "How much is shipping?")  # then the server "died"
    token = services.conversation_token(conversation)

    async def scenario() -> None:
        socket = connect(live_chat_kb)
        await socket.connect()
        await socket.send_json_to({"type": "hello", "token": token, "last_seq": 0})
        frames = await receive_until(socket, bot_message)
        assert "99" in frames[-1]["message"]["text"]
        await socket.disconnect()

    async_to_sync(scenario)()
    assert Message.objects.filter(role=Role.CUSTOMER, processed_at__isnull=True).count() == 0


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_frame"),
        ('{"text": "no type"}', "bad_frame"),
        ('{"type": "shout"}', "unknown_type"),
        ('{"type": "message", "text": ""}', "empty"),
        ('{"type": "message", "text": 5}', "bad_frame"),
        (json.dumps({"type": "message", "text": "长" * 4001}), "too_long"),
        ('{"type": "hello", "token": "forged"}', "bad_token"),
        ('{"type": "rate", "message_id": "x", "value": "up"}', "no_conversation"),
    ],
)
def test_bad_frames_get_an_error_and_the_socket_stays_usable(
    live_chat_kb: KnowledgeBase, raw: str, code: str
) -> None:
    async def scenario() -> None:
        socket = connect(live_chat_kb)
        await socket.connect()
        await socket.send_to(text_data=raw)
        error = await socket.receive_json_from(timeout=TIMEOUT)
        assert error["type"] == "error" and error["code"] == code and error["reason"]
        await socket.send_json_to({"type": "message", "client_id": "ok", "text": "你好"})
        frames = await receive_until(socket, bot_message)
        assert frames[-1]["message"]["text"] == "您好！请问有什么可以帮您？"
        await socket.disconnect()

    async_to_sync(scenario)()


@override_settings(
    CHAT={
        **settings.CHAT,
        "RATE_LIMIT": {"burst": 3, "per_second": 0.01},
    }
)
def test_rate_limit_per_connection(live_chat_kb: KnowledgeBase) -> None:
    async def scenario() -> None:
        socket = connect(live_chat_kb)
        await socket.connect()
        for n in range(4):
            await socket.send_json_to({"type": "message", "client_id": f"r{n}", "text": "你好"})
        frames = await receive_until(
            socket, lambda f: f["type"] == "error" and f["code"] == "rate_limited"
        )
        assert frames[-1]["client_id"] == "r3"
        await socket.disconnect()

    async_to_sync(scenario)()
    stored = set(Message.objects.filter(role=Role.CUSTOMER).values_list("client_id", flat=True))
    assert stored == {"r0", "r1", "r2"}


@override_settings(CHAT={**settings.CHAT, "ALLOWED_ORIGINS": []})
def test_foreign_origin_is_refused_own_host_allowed(live_chat_kb: KnowledgeBase) -> None:
    async def scenario() -> None:
        socket = connect(live_chat_kb, origin="https://evil.example")
        connected, _ = await socket.connect()
        assert connected  # accepted only to say why, then closed
        refused = await socket.receive_json_from(timeout=TIMEOUT)
        assert refused["type"] == "error" and refused["code"] == "forbidden_origin"
        assert refused["reason"]
        closed = await socket.receive_output(timeout=TIMEOUT)
        assert closed == {"type": "websocket.close", "code": 4403}
        # A frame sent before the close arrived is ignored.
        await socket.send_json_to({"type": "message", "client_id": "x", "text": "你好"})
        assert await socket.receive_nothing(timeout=0.5)
        await socket.disconnect()

        socket = connect(live_chat_kb, origin="http://127.0.0.1:8000")
        connected, _ = await socket.connect()
        assert connected
        # Errors come in the socket's language (lang=zh-hans), not the server's (en).
        await socket.send_to(text_data="not json")
        error = await socket.receive_json_from(timeout=TIMEOUT)
        assert error["code"] == "bad_json" and error["reason"] == "数据帧不是有效的 JSON。"
        await socket.disconnect()

    async_to_sync(scenario)()
    assert not Conversation.objects.exists()  # the refused socket's message was not taken


def test_handoff_button_moves_the_conversation_and_tells_the_customer(
    live_chat_kb: KnowledgeBase,
) -> None:
    async def scenario() -> None:
        socket = connect(live_chat_kb)
        await socket.connect()
        await socket.send_json_to({"type": "handoff"})
        frames = await receive_until(socket, lambda f: f["type"] == "status")
        assert frames[-1]["status"] == "waiting_agent"
        assert any(bot_message(f) and "人工" in f["message"]["text"] for f in frames)
        await socket.disconnect()

    async_to_sync(scenario)()
    assert Conversation.objects.get().handoff_reason == "customer_button"


def test_a_repeated_question_is_answered_while_every_answering_thread_is_busy(
    live_chat_kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load the threads that embed and search are all taken; a message is still stored
    and acknowledged at once, and a question already in the exact cache is still answered."""

    async def ask(text: str, *, answered: bool) -> dict[str, Any]:
        socket = connect(live_chat_kb)
        await socket.connect()
        await socket.send_json_to({"type": "hello", "token": None, "last_seq": 0})
        await socket.send_json_to({"type": "message", "client_id": "q", "text": text})
        if answered:
            frames = await receive_until(socket, bot_message)
            await socket.disconnect()
            return frames[-1]["message"]
        await receive_until(socket, lambda f: f["type"] == "typing" and f["on"])
        return {"socket": socket}

    first = async_to_sync(ask)("运费怎么算？", answered=True)
    assert "99" in first["text"]

    busy = ThreadPoolExecutor(max_workers=1, thread_name_prefix="busy")
    release = threading.Event()
    busy.submit(release.wait, TIMEOUT)
    monkeypatch.setitem(consumers._executors, "answer", busy)
    try:
        again = async_to_sync(ask)("运费怎么算？", answered=True)
        assert again["text"] == first["text"]

        async def new_question_waits() -> None:
            waiting = await ask("怎么申请增值税专用发票？", answered=False)
            socket = waiting["socket"]
            # Stored and acknowledged, but its search waits for an answering thread.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(receive_until(socket, bot_message), timeout=1.0)
            release.set()
            frames = await receive_until(socket, bot_message)
            assert "申请发票" in frames[-1]["message"]["text"]
            await socket.disconnect()

        async_to_sync(new_question_waits)()
    finally:
        release.set()
        busy.shutdown(wait=True)
    asked = Message.objects.filter(role=Role.CUSTOMER).order_by("pk")
    assert [m.cache_hit for m in asked] == ["", "exact", ""]


def _answer_frames(live_chat_kb: KnowledgeBase) -> list[dict[str, Any]]:
    async def scenario() -> list[dict[str, Any]]:
        socket = connect(live_chat_kb)
        await socket.connect()
        await socket.send_json_to({"type": "message", "client_id": "c1", "text": "运费怎么算？"})
        frames = await receive_until(socket, bot_message)
        frames += await receive_until(socket, lambda f: f["type"] == "typing" and f["on"] is False)
        assert await socket.receive_nothing(timeout=0.5)
        await socket.disconnect()
        return frames

    return async_to_sync(scenario)()


def test_each_reply_reaches_the_socket_once(live_chat_kb: KnowledgeBase) -> None:
    # It comes through the channel layer and from the socket's own processing: sent once.
    frames = _answer_frames(live_chat_kb)
    sent = [(f["message"]["role"], f["message"]["id"]) for f in frames if f["type"] == "message"]
    assert len(sent) == len(set(sent))
    assert [role for role, _ in sent].count("bot") == 1


def test_a_reply_the_channel_layer_drops_still_reaches_the_customer(
    live_chat_kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    from apps.conversations import events

    dropped: list[str] = []
    monkeypatch.setattr(events, "group_send", lambda group, event: dropped.append(group))
    frames = _answer_frames(live_chat_kb)
    assert dropped  # the layer carried nothing
    answer = next(f["message"] for f in frames if bot_message(f))
    assert "99" in answer["text"] and answer["seq"] == 2


def test_pools_drain_waits_for_work_still_running() -> None:
    release = threading.Event()
    consumers._pool("answer").submit(release.wait, 10)  # e.g. an answer whose socket is gone
    assert not consumers.pools_drain(timeout=0.2)
    release.set()
    assert consumers.pools_drain(timeout=5)
