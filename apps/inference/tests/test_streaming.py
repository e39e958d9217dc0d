"""A generated answer streams to the customer's socket as it is written, the stored message
replaces the draft, and a customer who leaves stops the generation."""

from __future__ import annotations

import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from apps.conversations.models import Message, Role
from apps.conversations.tests.test_consumer import TIMEOUT, bot_message, receive_until
from apps.inference import services
from apps.inference.fake_server import FakeLLMServer
from apps.inference.models import GenerationStatus
from apps.knowledge.models import KnowledgeBase
from cs_platform.asgi import application


@pytest.fixture
def live_endpoint(live_chat_kb: KnowledgeBase, llm: FakeLLMServer) -> KnowledgeBase:
    services.endpoint_save(name="gpu-0", base_url=llm.base_url, model="fake-llm")
    return live_chat_kb


def connect(kb: KnowledgeBase) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, f"/ws/chat/?kb={kb.pk}&lang=en")


def test_tokens_stream_to_the_socket_and_the_stored_message_replaces_the_draft(
    live_endpoint: KnowledgeBase, llm: FakeLLMServer
) -> None:
    llm.configure(token_delay=0.06)

    async def scenario() -> list[dict[str, Any]]:
        socket = connect(live_endpoint)
        await socket.connect()
        await socket.send_json_to({"type": "hello", "token": None, "last_seq": 0})
        await socket.send_json_to(
            {"type": "message", "client_id": "m1", "text": "How long does a refund take?"}
        )
        frames = await receive_until(socket, bot_message)
        await socket.disconnect()
        return frames

    frames = async_to_sync(scenario)()
    drafts = [f for f in frames if f["type"] == "stream"]
    final = frames[-1]["message"]
    assert len(drafts) >= 3, [f["type"] for f in frames]
    texts = [d["text"] for d in drafts]
    assert texts == sorted(texts, key=len) and all(final["text"].startswith(t) for t in texts)
    assert len(texts[0]) < len(final["text"])  # the first draft came before the answer was done
    assert {d["stream_id"] for d in drafts} == {final["stream_id"]}
    stored = Message.objects.get(role=Role.BOT)
    assert stored.generation_status == GenerationStatus.GENERATED
    assert stored.text == final["text"]  # stored once, complete


def test_a_draft_with_an_invented_phone_number_is_withdrawn_before_it_shows(
    live_endpoint: KnowledgeBase, llm: FakeLLMServer
) -> None:
    llm.invent_phone(times=1)

    async def scenario() -> list[dict[str, Any]]:
        socket = connect(live_endpoint)
        await socket.connect()
        await socket.send_json_to(
            {"type": "message", "client_id": "m1", "text": "How long does a refund take?"}
        )
        frames = await receive_until(socket, bot_message)
        await socket.disconnect()
        return frames

    frames = async_to_sync(scenario)()
    shown = " ".join(f["text"] for f in frames if f["type"] == "stream")
    assert "555" not in shown and "400" not in shown
    assert any(f["type"] == "stream_end" and f["discarded"] for f in frames) or not shown
    assert frames[-1]["message"]["text"] and "555" not in frames[-1]["message"]["text"]


def test_customer_leaving_cancels_generation_and_the_answer_waits_for_them(
    live_endpoint: KnowledgeBase, llm: FakeLLMServer
) -> None:
    llm.configure(token_delay=0.3)

    async def scenario() -> str:
        socket = connect(live_endpoint)
        await socket.connect()
        await socket.send_json_to(
            {"type": "message", "client_id": "m1", "text": "How long does a refund take?"}
        )
        frames = await receive_until(socket, lambda f: f["type"] == "stream")
        await socket.disconnect()
        return next(f for f in frames if f["type"] == "session")["token"]

    token = async_to_sync(scenario)()
    deadline = time.monotonic() + TIMEOUT
    while not Message.objects.filter(role=Role.BOT).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    reply = Message.objects.get(role=Role.BOT)
    assert reply.generation_status == GenerationStatus.CANCELLED
    assert reply.text.startswith("Once approved, refunds reach Alipay")  # extractive, complete
    assert llm.counts["aborted"] >= 1 or llm.counts["completed"] == 0

    async def come_back() -> dict[str, Any]:
        socket = connect(live_endpoint)
        await socket.connect()
        await socket.send_json_to({"type": "hello", "token": token, "last_seq": 1})
        frames = await receive_until(socket, bot_message)
        await socket.disconnect()
        return frames[-1]["message"]

    assert async_to_sync(come_back)()["text"] == reply.text
