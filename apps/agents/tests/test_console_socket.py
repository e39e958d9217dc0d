"""The console socket with Channels' WebsocketCommunicator and a real session: the queue updates
live, claims race, the agent and the customer talk in real time, close and rate."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.test import Client

from apps.agents.models import Macro
from apps.conversations.models import Conversation
from apps.conversations.tests.test_consumer import TIMEOUT
from cs_platform.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


def session_cookie(user: Any) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    return [(b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


def console(user: Any) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, "/ws/console/", session_cookie(user))


def customer(kb: Any) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, f"/ws/chat/?kb={kb.pk}&lang=zh-hans")


async def until(socket: WebsocketCommunicator, predicate: Any) -> dict[str, Any]:
    while True:
        frame = await socket.receive_json_from(timeout=TIMEOUT)
        if predicate(frame):
            return frame


def queue_with(n: int) -> Any:
    return lambda f: f["type"] == "queue" and len(f["items"]) == n


@pytest.fixture
def manual(settings: Any) -> None:
    settings.AGENTS = {**settings.AGENTS, "AUTO_ASSIGN": False}


def test_non_agents_and_foreign_pages_are_refused(
    live_chat_kb: Any, django_user_model: Any, make_agent: Any
) -> None:
    clerk = console(django_user_model.objects.create_user("clerk"))
    foreign = WebsocketCommunicator(
        application,
        "/ws/console/",
        [*session_cookie(make_agent("ann")), (b"origin", b"https://evil.example")],
    )

    async def scenario() -> None:
        anonymous = WebsocketCommunicator(application, "/ws/console/")
        for socket in (anonymous, clerk, foreign):
            connected, code = await socket.connect()
            assert not connected and code == 4403

    async_to_sync(scenario)()


def test_handoff_appears_live_then_claim_chat_close_and_rate(
    live_chat_kb: Any, make_agent: Any, manual: None
) -> None:
    ann, bob = make_agent("ann"), make_agent("bob")
    Macro.objects.create(shortcut="hi", title="Hello", body_zh="您好，我是{agent_name}。")
    agent, other = console(ann), console(bob)

    async def scenario() -> None:
        assert (await agent.connect())[0] and (await other.connect())[0]
        hello = await until(agent, lambda f: f["type"] == "hello")
        assert hello["me"]["name"] == "ann" and not hello["me"]["supervisor"]
        await until(agent, queue_with(0))
        await until(other, queue_with(0))

        chat = customer(live_chat_kb)
        await chat.connect()
        await chat.send_json_to({"type": "message", "client_id": "c1", "text": "转人工"})
        session = await until(chat, lambda f: f["type"] == "session")
        queue = await until(agent, queue_with(1))
        item = queue["items"][0]
        assert item["handoff_reason"] == "customer_request" and item["language"] == "zh"
        conversation_id = item["id"]
        assert conversation_id == session["conversation_id"]
        await until(other, queue_with(1))

        # Both click "claim": one wins, the other is told.
        await agent.send_json_to({"type": "claim", "conversation_id": conversation_id})
        await until(agent, lambda f: f["type"] == "done" and f["action"] == "claim")
        await other.send_json_to({"type": "claim", "conversation_id": conversation_id})
        refused = await until(other, lambda f: f["type"] == "error")
        assert refused["code"] in ("taken", "not_found") and refused["action"] == "claim"
        joined = await until(
            chat,
            lambda f: (
                f["type"] == "message"
                and f["message"]["role"] == "system"
                and "ann" in f["message"]["text"]
            ),
        )
        assert "加入" in joined["message"]["text"]
        mine = await until(agent, lambda f: f["type"] == "mine" and f["items"])
        assert mine["items"][0]["id"] == conversation_id

        await agent.send_json_to({"type": "open", "conversation_id": conversation_id})
        state = await until(agent, lambda f: f["type"] == "conversation")
        assert [m["role"] for m in state["messages"]][:1] == ["customer"]
        assert state["events"][0]["kind"] == "claimed"

        # Live both ways: typing, the agent's message, the customer's reply.
        await agent.send_json_to({"type": "typing", "conversation_id": conversation_id, "on": True})
        typing = await until(chat, lambda f: f["type"] == "typing")
        assert typing == {"type": "typing", "role": "agent", "on": True}
        await agent.send_json_to(
            {"type": "macros", "conversation_id": conversation_id, "query": "h"}
        )
        macros = await until(agent, lambda f: f["type"] == "macros")
        assert macros["items"][0]["text"] == "您好，我是ann。"
        await agent.send_json_to(
            {
                "type": "message",
                "conversation_id": conversation_id,
                "client_id": "a1",
                "text": macros["items"][0]["text"],
            }
        )
        ack = await until(agent, lambda f: f["type"] == "ack")
        assert ack["message"]["role"] == "agent" and ack["message"]["author"] == "ann"
        seen = await until(
            chat, lambda f: f["type"] == "message" and f["message"]["role"] == "agent"
        )
        assert seen["message"]["text"] == "您好，我是ann。"
        await chat.send_json_to({"type": "typing", "on": True})
        forwarded = await until(
            agent, lambda f: f["type"] == "chat" and f["frame"]["type"] == "typing"
        )
        assert forwarded["frame"] == {"type": "typing", "role": "customer", "on": True}
        await chat.send_json_to({"type": "message", "client_id": "c2", "text": "订单还没到"})
        reply = await until(
            agent,
            lambda f: (
                f["type"] == "chat"
                and f["frame"]["type"] == "message"
                and f["frame"]["message"]["role"] == "customer"
            ),
        )
        assert reply["conversation_id"] == conversation_id
        assert reply["frame"]["message"]["text"] == "订单还没到"

        # The other agent cannot open it now, nor write to it.
        await other.send_json_to({"type": "open", "conversation_id": conversation_id})
        assert (await until(other, lambda f: f["type"] == "error"))["code"] == "not_found"

        await agent.send_json_to(
            {"type": "close", "conversation_id": conversation_id, "resolution": "resolved"}
        )
        await until(chat, lambda f: f["type"] == "csat_request")
        await chat.send_json_to({"type": "csat", "score": 9})
        assert (await until(chat, lambda f: f["type"] == "error"))["code"] == "bad_frame"
        await chat.send_json_to({"type": "csat", "score": 4})
        assert (await until(chat, lambda f: f["type"] == "csat_done"))["score"] == 4
        for socket in (agent, other, chat):
            await socket.disconnect()

    async_to_sync(scenario)()
    conversation = Conversation.objects.get()
    assert conversation.status == "closed" and conversation.csat == 4
    assert [e.kind for e in conversation.agent_events.all()] == ["claimed", "closed", "rated"]


def test_supervisor_sees_agents_and_reassigns(
    live_chat_kb: Any, make_agent: Any, manual: None
) -> None:
    from apps.agents import services
    from apps.conversations import services as chat_services

    ann, bob = make_agent("ann"), make_agent("bob")
    boss = make_agent("boss", supervisor=True)
    conversation = chat_services.conversation_start(knowledge_base=live_chat_kb)
    chat_services.conversation_hand_off(conversation, "customer_button")
    services.conversation_claim(conversation, ann)
    socket = console(boss)

    async def scenario() -> None:
        await socket.connect()
        mine = await until(socket, lambda f: f["type"] == "mine")
        assert mine["items"][0]["agent_name"] == "ann"  # supervisors see every open one
        agents = await until(socket, lambda f: f["type"] == "agents")
        by_name = {a["name"]: a for a in agents["items"]}
        assert by_name["ann"]["open"] == 1 and by_name["bob"]["open"] == 0
        await socket.send_json_to(
            {
                "type": "transfer",
                "conversation_id": str(conversation.public_id),
                "to_agent": bob.pk,
                "note": "ann is overloaded",
            }
        )
        await until(socket, lambda f: f["type"] == "done" and f["action"] == "transfer")
        moved = await until(
            socket,
            lambda f: (
                f["type"] == "agents" and any(a["open"] for a in f["items"] if a["name"] == "bob")
            ),
        )
        assert {a["name"]: a["open"] for a in moved["items"]}["ann"] == 0
        await socket.send_json_to({"type": "transfer", "conversation_id": "x", "to_agent": 1})
        assert (await until(socket, lambda f: f["type"] == "error"))["code"] == "not_found"
        await socket.send_json_to({"type": "nonsense"})
        assert (await until(socket, lambda f: f["type"] == "error"))["code"] == "unknown_type"
        await socket.disconnect()

    async_to_sync(scenario)()
    conversation.refresh_from_db()
    assert conversation.assigned_agent_id == bob.pk


def test_handoff_reasons_come_in_words_in_the_consoles_language(
    live_chat_kb: Any, make_agent: Any, manual: None
) -> None:
    """The queue, an opened conversation and its hand-off message carry the reason's code and,
    as `handoff_reason_label`, the server's words for it in the console's language (the one
    source of these words: the summaries use them too)."""
    from apps.conversations import services as chat_services

    reasons = {"low_confidence": "zh-hans", "intent:track_order": "en"}
    for reason, locale in reasons.items():
        conversation = chat_services.conversation_start(knowledge_base=live_chat_kb, locale=locale)
        chat_services.conversation_hand_off(conversation, reason)
    words = {
        b"en-US,en;q=0.9": {
            "low_confidence": "the bot was unsure twice in a row",
            "intent:track_order": "the intent track_order goes to a person",
        },
        b"zh-CN,zh;q=0.9": {
            "low_confidence": "机器人连续两次没有把握",
            "intent:track_order": "意图 track_order 需转人工处理",
        },
    }
    sockets = {
        language: WebsocketCommunicator(
            application,
            "/ws/console/",
            [*session_cookie(make_agent(f"agent{n}")), (b"accept-language", language)],
        )
        for n, language in enumerate(words)
    }

    async def scenario() -> None:
        for language, socket in sockets.items():
            assert (await socket.connect())[0]
            queue = await until(socket, queue_with(2))
            labels = {i["handoff_reason"]: i["handoff_reason_label"] for i in queue["items"]}
            assert labels == words[language]
            for item in queue["items"]:
                await socket.send_json_to({"type": "open", "conversation_id": item["id"]})
                state = await until(socket, lambda f: f["type"] == "conversation")
                shown = state["conversation"]
                assert shown["id"] == item["id"]
                assert shown["handoff_reason_label"] == words[language][shown["handoff_reason"]]
                notice = next(m for m in state["messages"] if m["handoff_reason"])
                assert notice["handoff_reason_label"] == shown["handoff_reason_label"]
                assert all(
                    m["handoff_reason_label"] == "" for m in state["messages"] if m != notice
                )
            await socket.disconnect()

    async_to_sync(scenario)()
