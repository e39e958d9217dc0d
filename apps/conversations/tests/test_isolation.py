"""One customer can never reach another's conversation: not by its id, not by another token,
not by a token edited to name it, not over REST and not over the socket."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.core import signing
from django.test import Client

from apps.conversations import services
from apps.conversations.models import Conversation, Message, Role
from apps.conversations.tests.test_api import start
from cs_platform.asgi import application


def _ask(client: Client, conversation_id: str, auth: dict[str, str], text: str) -> dict[str, Any]:
    response = client.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        {"text": text},
        "application/json",
        **auth,
    )
    assert response.status_code == 201, response.content
    return response.json()


def _forged_token(real_token: str, other_id: str) -> str:
    """The same token with its payload swapped for another conversation's id (signature kept)."""
    body, _, rest = real_token.partition(":")
    payload = signing.b64_encode(signing.JSONSerializer().dumps({"c": other_id})).decode()
    assert base64.urlsafe_b64decode(body + "==")  # the token really is payload:signature
    return f"{payload}:{rest}"


@pytest.mark.django_db
def test_rest_customers_are_isolated(chat_kb: Any, client: Client) -> None:
    alice_id, alice = start(client, chat_kb)
    bob_id, bob = start(client, chat_kb)
    _ask(client, alice_id, alice, "How much is shipping?")
    bob_reply = _ask(client, bob_id, bob, "How do I return an item?")
    bob_answer = bob_reply["replies"][0]["id"]

    # Alice's token on Bob's conversation: as if it did not exist.
    read = client.get(f"/api/v1/conversations/{bob_id}/messages", **alice)
    assert read.status_code == 404 and "return" not in read.content.decode()
    write = client.post(
        f"/api/v1/conversations/{bob_id}/messages", {"text": "hi"}, "application/json", **alice
    )
    assert write.status_code == 404
    handoff = client.post(
        f"/api/v1/conversations/{bob_id}/handoff", {}, "application/json", **alice
    )
    assert handoff.status_code == 404
    # Bob's message id under Alice's own conversation: not found either.
    rated = client.post(
        f"/api/v1/conversations/{alice_id}/messages/{bob_answer}/rating",
        {"value": "down"},
        "application/json",
        **alice,
    )
    assert rated.status_code == 404
    assert Message.objects.get(public_id=bob_answer).rating == ""

    # A token edited to name Bob's conversation fails its signature.
    token = alice["HTTP_AUTHORIZATION"].removeprefix("Conversation ")
    forged = {"HTTP_AUTHORIZATION": f"Conversation {_forged_token(token, bob_id)}"}
    response = client.get(f"/api/v1/conversations/{bob_id}/messages", **forged)
    assert response.status_code == 400 and response.json()["code"] == "bad_token"
    # No token at all.
    assert client.get(f"/api/v1/conversations/{bob_id}/messages").status_code == 400

    bob_conversation = Conversation.objects.get(public_id=bob_id)
    assert bob_conversation.messages.filter(role=Role.CUSTOMER).count() == 1
    assert bob_conversation.status == "bot"


def test_socket_customers_are_isolated(live_chat_kb: Any) -> None:
    alice = services.conversation_start(knowledge_base=live_chat_kb, locale="en")
    bob = services.conversation_start(knowledge_base=live_chat_kb, locale="en")
    services.message_receive(bob, "Bob's private question")
    alice_token = services.conversation_token(alice)

    async def scenario() -> None:
        socket = WebsocketCommunicator(application, f"/ws/chat/?kb={live_chat_kb.pk}")
        connected, _ = await socket.connect()
        assert connected
        # A forged token naming Bob's conversation is refused, the socket stays usable.
        await socket.send_json_to(
            {"type": "hello", "token": _forged_token(alice_token, str(bob.public_id))}
        )
        refused = await socket.receive_json_from(timeout=10)
        assert refused["type"] == "error" and refused["code"] == "bad_token"
        # Alice's own token gives Alice's conversation and nothing of Bob's.
        await socket.send_json_to({"type": "hello", "token": alice_token, "last_seq": 0})
        session = await socket.receive_json_from(timeout=10)
        assert session["type"] == "session"
        assert session["conversation_id"] == str(alice.public_id)
        assert await socket.receive_nothing(timeout=0.5)
        await socket.disconnect()

    async_to_sync(scenario)()
