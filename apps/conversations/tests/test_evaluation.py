"""`evaluate conversations`: each query through the whole engine, counted by what the bot did,
with nothing left behind."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.conversations import caches
from apps.conversations.models import Conversation, Customer, Message, SemanticCacheEntry
from apps.knowledge.models import KnowledgeBase

pytestmark = pytest.mark.django_db

QUERIES: list[dict[str, Any]] = [
    {"query_id": "q1", "query": "How much is shipping?", "faq_id": "shipping-fee"},
    {"query_id": "q2", "query": "退款多久能到账？", "faq_id": "refund-time"},
    # Labelled with the wrong article on purpose: counted as a wrong answer.
    {"query_id": "q3", "query": "I forgot my password", "faq_id": "invoice"},
    {"query_id": "q4", "query": "转人工", "faq_id": None},
]


def evaluate(tmp_path: Path, rows: list[dict[str, Any]], *extra: str) -> dict[str, Any]:
    path = tmp_path / "queries.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    out = io.StringIO()
    arguments = ["conversations", "--queries", str(path), *extra]
    call_command("evaluate", *arguments, stdout=out, stderr=io.StringIO())
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_outcomes_are_counted_and_nothing_stays(chat_kb: KnowledgeBase, tmp_path: Path) -> None:
    details = tmp_path / "details.jsonl"
    result = evaluate(tmp_path, QUERIES, "--kb", str(chat_kb.pk), "--details", str(details))
    assert (result["n"], result["answerable"], result["out_of_scope"]) == (4, 3, 1)
    assert result["answerable_right"] == pytest.approx(2 / 3, abs=1e-4)
    assert result["answerable_wrong"] == pytest.approx(1 / 3, abs=1e-4)
    assert result["out_of_scope_handed_off"] == 1.0
    rows = [json.loads(line) for line in details.read_text(encoding="utf-8").splitlines()]
    assert [r["category"] for r in rows] == ["right", "right", "wrong", "handed_off"]
    assert rows[2]["cited"][0] == "password"
    # Rolled back: no customer, conversation, message or cached answer; the exact cache was
    # not written either.
    assert not Customer.objects.exists() and not Conversation.objects.exists()
    assert not Message.objects.exists() and not SemanticCacheEntry.objects.exists()
    assert caches.AnswerCache(chat_kb, "en").exact_get("How much is shipping?") is None


def test_bad_input_is_refused(chat_kb: KnowledgeBase, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="not in knowledge base"):
        evaluate(tmp_path, [{"query": "hi", "faq_id": "no-such-article"}], "--kb", str(chat_kb.pk))
    with pytest.raises(CommandError, match="no knowledge base with id"):
        evaluate(tmp_path, QUERIES, "--kb", "999999")
    with pytest.raises(CommandError, match="needs query and faq_id"):
        evaluate(tmp_path, [{"query": "hi"}], "--kb", str(chat_kb.pk))


def test_not_sure_counts_whether_the_right_article_was_suggested() -> None:
    from apps.conversations.evaluation import _outcome

    unsure = Message(decision="fallback", sources=[])
    offered = Conversation(status="bot", state={"offered": [{"article_id": 5}, {"article_id": 6}]})
    external = {5: "refund-time", 6: "invoice"}
    assert _outcome(True, "invoice", unsure, offered, external) == (
        "not_sure_suggested",
        ["refund-time", "invoice"],
    )
    assert _outcome(True, "password", unsure, offered, external)[0] == "not_sure"
    assert _outcome(False, "", unsure, offered, external)[0] == "not_sure"
    offered.status = "waiting_agent"
    assert _outcome(True, "invoice", unsure, offered, external)[0] == "handed_off"
