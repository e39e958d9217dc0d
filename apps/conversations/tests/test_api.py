"""The conversation REST API for apps: same services as the socket."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from django.test import Client, override_settings
from django.utils import translation

from apps.conversations import services
from apps.conversations.models import Conversation
from apps.knowledge.models import KnowledgeBase
from tests.support.translations import write_catalog


def start(client: Client, kb: KnowledgeBase, locale: str = "en") -> tuple[str, dict[str, str]]:
    response = client.post(
        "/api/v1/conversations", {"kb": kb.pk, "locale": locale}, content_type="application/json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    return body["id"], {"HTTP_AUTHORIZATION": f"Conversation {body['token']}"}


def test_create_post_list_rate_and_hand_off(chat_kb: KnowledgeBase, client: Client) -> None:
    conversation_id, auth = start(client, chat_kb)
    url = f"/api/v1/conversations/{conversation_id}/messages"
    response = client.post(
        url, {"text": "How much is shipping?", "client_id": "a1"}, "application/json", **auth
    )
    assert response.status_code == 201
    body = response.json()
    assert body["message"]["seq"] == 1 and body["message"]["role"] == "customer"
    answer = body["replies"][0]
    assert answer["role"] == "bot" and "99" in answer["text"]
    assert answer["sources"][0]["title"] == "How much is shipping?"

    # The same client_id again: stored once, same reply.
    again = client.post(
        url, {"text": "How much is shipping?", "client_id": "a1"}, "application/json", **auth
    ).json()
    assert again["message"]["id"] == body["message"]["id"]
    assert [r["id"] for r in again["replies"]] == [answer["id"]]

    listed = client.get(f"{url}?after=1", **auth).json()
    assert [m["seq"] for m in listed["messages"]] == [2] and listed["status"] == "bot"

    rated = client.post(f"{url}/{answer['id']}/rating", {"value": "up"}, "application/json", **auth)
    assert rated.status_code == 200 and rated.json()["rating"] == "up"

    handoff = client.post(f"/api/v1/conversations/{conversation_id}/handoff", **auth)
    assert handoff.json() == {"status": "waiting_agent"}
    assert Conversation.objects.get().status == "waiting_agent"


def test_errors_are_json_with_a_reason(chat_kb: KnowledgeBase, client: Client) -> None:
    conversation_id, auth = start(client, chat_kb)
    url = f"/api/v1/conversations/{conversation_id}/messages"
    cases: list[tuple[Any, dict[str, str], int]] = [
        ({"text": "hi"}, {}, 400),  # no token
        ({"text": "hi"}, {"HTTP_AUTHORIZATION": "Conversation forged"}, 400),
        ({"text": ""}, auth, 400),
        ({"text": "x" * 4001}, auth, 400),
        ({}, auth, 400),
    ]
    for payload, headers, code in cases:
        response = client.post(url, payload, "application/json", **headers)
        assert response.status_code == code, (payload, response.content)
        assert response.json()  # JSON, never an HTML error page
    # A valid token for another conversation does not open this one.
    other = client.post(
        f"/api/v1/conversations/{uuid.uuid4()}/messages", {"text": "hi"}, "application/json", **auth
    )
    assert other.status_code == 404
    unknown_kb = client.post("/api/v1/conversations", {"kb": 999999}, "application/json")
    assert unknown_kb.status_code == 404
    assert Conversation.objects.get().messages.count() == 0


def test_bad_after_and_another_conversations_id_say_why(
    chat_kb: KnowledgeBase, client: Client
) -> None:
    conversation_id, auth = start(client, chat_kb)
    url = f"/api/v1/conversations/{conversation_id}/messages"
    response = client.get(f"{url}?after=yesterday", **auth)
    assert response.status_code == 400
    assert response.json() == {"detail": "`after` must be a whole number.", "code": "invalid"}
    response = client.get(f"/api/v1/conversations/{uuid.uuid4()}/messages", **auth)
    assert response.status_code == 404
    assert response.json()["detail"] == "This conversation does not exist."


# A Chinese catalog of our own, so these tests do not depend on what locale/ translates yet.
TEST_TRANSLATIONS = {
    "`after` must be a whole number.": "after 必须是整数。",
    "This conversation does not exist.": "会话不存在。",
    "First question: %(text)s": "首个问题：%(text)s",
    "Handoff reason: %(reason)s": "转人工原因：%(reason)s",
    "the customer pressed “talk to a human”": "客户点击了“转人工”",
}


def test_api_errors_are_in_the_language_the_client_asks_for(
    chat_kb: KnowledgeBase, client: Client, tmp_path: Path
) -> None:
    write_catalog(tmp_path, "zh_Hans", TEST_TRANSLATIONS)
    conversation_id, auth = start(client, chat_kb)
    url = f"/api/v1/conversations/{conversation_id}/messages"
    chinese = {**auth, "HTTP_ACCEPT_LANGUAGE": "zh-hans"}
    with override_settings(LOCALE_PATHS=[tmp_path]):
        assert client.get(f"{url}?after=x", **chinese).json()["detail"] == "after 必须是整数。"
        other = client.get(f"/api/v1/conversations/{uuid.uuid4()}/messages", **chinese)
        assert other.json()["detail"] == "会话不存在。"
        english = client.get(f"{url}?after=x", **auth, HTTP_ACCEPT_LANGUAGE="en")
        assert english.json()["detail"] == "`after` must be a whole number."


def test_handoff_summary_labels_follow_the_conversation_not_the_request(
    chat_kb: KnowledgeBase, client: Client, tmp_path: Path
) -> None:
    # The summary is stored text that agents read later, and may be built where there is no
    # request (a Celery task): it is written in the conversation's language.
    write_catalog(tmp_path, "zh_Hans", TEST_TRANSLATIONS)
    conversation_id, auth = start(client, chat_kb, locale="zh-hans")
    english = {**auth, "HTTP_ACCEPT_LANGUAGE": "en"}
    with override_settings(LOCALE_PATHS=[tmp_path]):
        url = f"/api/v1/conversations/{conversation_id}/messages"
        response = client.post(url, {"text": "运费怎么算？"}, "application/json", **english)
        assert response.status_code == 201
        handoff = client.post(f"/api/v1/conversations/{conversation_id}/handoff", **english)
        assert handoff.json() == {"status": "waiting_agent"}
    summary = Conversation.objects.get().summary.splitlines()
    assert summary[0] == "首个问题：运费怎么算？"
    assert summary[-1] == "转人工原因：客户点击了“转人工”"


@pytest.mark.parametrize(
    ("code", "label"),
    [
        ("customer_button", "the customer pressed “talk to a human”"),
        ("low_confidence", "the bot was unsure twice in a row"),
        ("intent:human_agent", "the intent human_agent goes to a person"),
        ("a_future_reason", "a_future_reason"),
    ],
)
def test_handoff_reasons_in_words(code: str, label: str) -> None:
    # In English whatever an earlier test left active (a request activates its language).
    with translation.override("en"):
        assert services.handoff_reason_label(code) == label
