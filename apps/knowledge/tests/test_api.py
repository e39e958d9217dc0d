"""POST /api/v1/knowledge-bases/{id}/search: what an integrating system sees, errors included.
Every error is JSON with a message; nothing answers with a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.authtoken.models import Token

from apps.knowledge.tests.conftest import article

pytestmark = pytest.mark.django_db


def search_url(kb_id: Any) -> str:
    return f"/api/v1/knowledge-bases/{kb_id}/search"


@pytest.fixture
def staff_user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("support", password="pw", is_staff=True)


@pytest.fixture
def session_client(client: Any, staff_user: Any) -> Any:
    client.force_login(staff_user)
    return client


@pytest.fixture
def token_client(client: Any, staff_user: Any) -> Any:
    token = Token.objects.create(user=staff_user)
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {token.key}"
    return client


def post(client: Any, kb_id: Any, body: Any, *, raw: bool = False) -> Any:
    return client.post(
        search_url(kb_id), body if raw else json.dumps(body), content_type="application/json"
    )


def assert_search_answer(response: Any, kb: Any, query: str) -> dict:
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("application/json")
    data = response.json()
    assert data["query"] == query
    assert 0.0 <= data["confidence"] <= 1.0
    assert isinstance(data["answerable"], bool)
    assert data["sources"]
    for source in data["sources"]:
        assert {
            "article_id",
            "title",
            "text",
            "dense_score",
            "keyword_score",
            "fused_score",
        } <= source.keys()
        assert source["text"]
    return data


@pytest.mark.parametrize("auth", ["session_client", "token_client"])
def test_search_returns_ranked_sources_with_scores(request, published_kb, auth):
    client = request.getfixturevalue(auth)
    response = post(client, published_kb.pk, {"query": "退款要几天才能收到", "top_k": 3})
    data = assert_search_answer(response, published_kb, "退款要几天才能收到")
    assert data["language"] == "zh"
    assert len(data["sources"]) == 3
    top = data["sources"][0]
    assert top["article_id"] == article(published_kb, "refund-time", "zh").pk
    assert top["title"] == "退款多久能到账？"
    assert top["dense_score"] > 0.8 and top["keyword_score"] > 0
    fused = [s["fused_score"] for s in data["sources"]]
    assert fused == sorted(fused, reverse=True)
    assert data["threshold"] == published_kb.answer_threshold
    assert data["answerable"] is (data["confidence"] >= published_kb.answer_threshold)


def test_search_in_english_and_with_default_top_k(session_client, published_kb):
    response = post(session_client, published_kb.pk, {"query": "I forgot my password"})
    data = assert_search_answer(response, published_kb, "I forgot my password")
    assert data["language"] == "en"
    assert data["sources"][0]["article_id"] == article(published_kb, "password", "en").pk
    assert len(data["sources"]) == published_kb.top_k


def test_search_of_an_empty_knowledge_base_answers_nothing(session_client, kb):
    response = post(session_client, kb.pk, {"query": "退款"})
    assert response.status_code == 200
    data = response.json()
    assert data["sources"] == [] and data["answerable"] is False and data["confidence"] == 0


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"query": ""}, "query", "may not be blank"),
        ({"query": "   "}, "query", "may not be blank"),
        ({}, "query", "required"),
        ({"query": "x" * 2001}, "query", "no more than 2000 characters"),
        ({"query": ["refund"]}, "query", "Not a valid string"),
        ({"query": "refund\x00"}, "query", "Null characters are not allowed"),
        ({"query": "refund", "top_k": 0}, "top_k", "greater than or equal to 1"),
        ({"query": "refund", "top_k": 51}, "top_k", "less than or equal to 50"),
        ({"query": "refund", "top_k": "ten"}, "top_k", "valid integer"),
        ({"query": "refund", "language": "fr"}, "language", "not a valid choice"),
    ],
)
def test_invalid_input_is_a_400_naming_the_field(session_client, kb, body, field, message):
    response = post(session_client, kb.pk, body)
    assert response.status_code == 400
    errors = response.json()
    assert message in " ".join(errors[field])


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("not json", "JSON parse error"),
        ('{"query": "refund"', "JSON parse error"),
        ('["refund"]', "Expected a dictionary"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_a_400(session_client, kb, raw, message):
    response = post(session_client, kb.pk, raw, raw=True)
    assert response.status_code == 400
    assert message in json.dumps(response.json())


# The longest query allowed is English here: a 2,000-character Chinese one takes seconds to embed.
@pytest.mark.parametrize(
    "query",
    ["？？？", "\u200b", "\ud83d", "😀" * 5, "'; DROP TABLE x; --", ("refund " * 300)[:2000]],
)
def test_odd_but_valid_text_never_gives_a_500(session_client, published_kb, query):
    response = post(session_client, published_kb.pk, {"query": query})
    assert response.status_code in (200, 400), response.content
    data = response.json()
    if response.status_code == 200:
        assert 0.0 <= data["confidence"] <= 1.0 and isinstance(data["sources"], list)
    else:
        assert data["query"] or data["detail"]  # says what is wrong


def test_unknown_knowledge_base_is_a_json_404(session_client, db):
    response = post(session_client, 987654, {"query": "refund"})
    assert response.status_code == 404
    assert response.json()["detail"] == "Knowledge base 987654 does not exist."


@pytest.mark.parametrize(
    "headers",
    [{}, {"HTTP_AUTHORIZATION": "Token not-a-real-token"}, {"HTTP_AUTHORIZATION": "Bearer x"}],
)
def test_unauthenticated_requests_are_refused(client, kb, headers):
    response = client.post(
        search_url(kb.pk),
        json.dumps({"query": "refund"}),
        content_type="application/json",
        **headers,
    )
    assert response.status_code in (401, 403)
    assert response.json()["detail"]
    assert "sources" not in response.json()


def test_a_deactivated_users_token_stops_working(token_client, staff_user, published_kb):
    assert post(token_client, published_kb.pk, {"query": "refund"}).status_code == 200
    staff_user.is_active = False
    staff_user.save(update_fields=["is_active"])
    assert post(token_client, published_kb.pk, {"query": "refund"}).status_code in (401, 403)


def test_openapi_schema_describes_the_search_endpoint(client, db):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = response.json()
    operation = schema["paths"]["/api/v1/knowledge-bases/{kb_id}/search"]["post"]
    assert operation["requestBody"]
    assert {"200", "400", "404"} <= operation["responses"].keys()
    components = schema["components"]["schemas"]
    assert {"query", "top_k", "language"} <= components["KnowledgeBaseSearchInput"][
        "properties"
    ].keys()
    source = components["KnowledgeBaseSearchSource"]["properties"]
    assert {"article_id", "title", "text", "dense_score", "keyword_score", "fused_score"} <= (
        source.keys()
    )
