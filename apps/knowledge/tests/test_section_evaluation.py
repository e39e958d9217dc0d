"""`evaluate sections`: the demo guides' sections a question is quoted from."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.knowledge import section_evaluation
from apps.knowledge.models import KnowledgeBase

pytestmark = pytest.mark.django_db(transaction=True)


def run(tmp_path: Path, questions: list[dict]) -> tuple[dict, list[dict]]:
    path = tmp_path / "questions.jsonl"
    path.write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in questions))
    details = tmp_path / "details.jsonl"
    out = io.StringIO()
    call_command(
        "evaluate",
        "sections",
        "--questions",
        str(path),
        "--details",
        str(details),
        stdout=out,
        stderr=io.StringIO(),
    )
    rows = [json.loads(line) for line in details.read_text().splitlines()]
    return json.loads(out.getvalue().strip().splitlines()[-1]), rows


def test_sections_are_checked_and_the_knowledge_base_is_deleted(tmp_path: Path) -> None:
    before = KnowledgeBase.objects.count()
    report, rows = run(
        tmp_path,
        [
            # Right: the section on turning it on; the follow-up, searched with its topic.
            {"query_id": "a", "language": "en", "faq_id": "two-step-verification",
             "query": "how do I turn on two-step verification", "section": "How to turn it on"},
            {"query_id": "b", "language": "en", "faq_id": "two-step-verification",
             "topic": "how do I set up two-step verification",
             "query": "what if I lose my phone?", "section": "Lost your phone?"},
            # Labelled with a section the question is not about: counted wrong.
            {"query_id": "c", "language": "en", "faq_id": "two-step-verification",
             "query": "how do I turn on two-step verification", "section": "Trusted devices"},
        ],
    )  # fmt: skip
    assert [r["outcome"] for r in rows] == ["right", "right", "wrong"]
    assert rows[2]["got"] == "How to turn it on"
    assert report["n"] == 3 and report["right"] == round(2 / 3, 4)
    assert report["follow_up_n"] == 1 and report["follow_up_right"] == 1.0
    assert KnowledgeBase.objects.count() == before


def test_bad_question_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="needs language"):
        run(tmp_path, [{"query_id": "a", "language": "fr", "faq_id": "x", "query": "?"}])
    with pytest.raises(CommandError, match="no demo guide"):
        run(tmp_path, [{"language": "en", "faq_id": "refund-timing", "query": "?", "section": ""}])


def test_the_shipped_questions_name_demo_guides_and_their_sections() -> None:
    from apps.knowledge.evaluation import demo_bank

    questions = [
        json.loads(line)
        for line in section_evaluation.DEFAULT_QUESTIONS.read_text(encoding="utf-8").splitlines()
    ]
    assert len(questions) >= 60
    for language in ("zh", "en"):
        guides = {r["faq_id"]: r["answer"] for r in demo_bank(language) if r["kind"] == "guide"}
        for q in (q for q in questions if q["language"] == language):
            assert q["faq_id"] in guides, q
            headings = [line for line in guides[q["faq_id"]].splitlines() if line.startswith("## ")]
            assert not q["section"] or any(q["section"] in h for h in headings), q
