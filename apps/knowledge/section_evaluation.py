"""Guide sections: whether search quotes the part of a guide a question asks about.

Each question names a demo guide and the section that answers it (its heading, or "" for the
guide's opening paragraph), and may lean on an earlier question (`topic`, searched together as
the engine does, the question itself as the search's focus). The demo help centre of each
language is loaded into a throwaway knowledge base (`evaluation.demo_bank`, its synonyms too),
every question goes through `knowledge.selectors.search`, and the knowledge base is deleted.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from django.core.management.base import CommandError, CommandParser

from apps.knowledge import selectors, services
from apps.knowledge.evaluation import bank_index, demo_bank, demo_synonyms_load, read_jsonl
from apps.knowledge.models import ArticleKind, Chunk, EmbeddingBackend

DEFAULT_QUESTIONS = services.DEMO_DIR.parent / "data" / "guide_section_questions.jsonl"
# The guide must be among this many results for its section to count (else: "missed").
WITHIN = 3


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument(
        "--questions",
        default=str(DEFAULT_QUESTIONS),
        help="JSONL: query_id, language, faq_id (the demo guide's key), query, section, topic?",
    )
    parser.add_argument("--language", choices=["zh", "en"], default="", help="only this one")
    parser.add_argument(
        "--embedding",
        choices=EmbeddingBackend.values,
        default="",
        help="embedding backend (default: the platform's choice per language)",
    )
    parser.add_argument("--details", default="", help="write per-question results to this JSONL")


def _section(chunk: Chunk | None) -> str | None:
    if chunk is None:
        return None
    parts = chunk.heading.split(" > ")
    return parts[1] if len(parts) > 1 else ""


def run(options: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    from cs_platform.celery import app as celery_app

    questions = read_jsonl(options["questions"])
    if options["language"]:
        questions = [q for q in questions if q.get("language") == options["language"]]
    if not questions:
        raise CommandError("no questions to evaluate")
    for number, question in enumerate(questions, start=1):
        missing = {"language", "faq_id", "query", "section"} - set(question)
        if missing or question["language"] not in ("zh", "en"):
            raise CommandError(
                f"{options['questions']}: question {number} needs language (zh or en), faq_id, "
                "query and section"
            )
    celery_app.conf.task_always_eager = True
    counts: Counter[str] = Counter()
    details = []
    started = time.perf_counter()
    for language in sorted({q["language"] for q in questions}):
        kb = services.knowledge_base_create(
            name=f"evaluation-{uuid.uuid4().hex[:12]}",
            languages=[language],
            embedding_backend=options["embedding"],
        )
        try:
            demo_synonyms_load(kb, language)
            bank_index(kb, demo_bank(language), language)
            guides = set(
                kb.articles.filter(kind=ArticleKind.GUIDE).values_list("external_id", flat=True)
            )
            for question in (q for q in questions if q["language"] == language):
                if question["faq_id"] not in guides:
                    raise CommandError(f"{question['faq_id']!r} is no demo guide in {language}")
                topic = str(question.get("topic") or "")
                text = str(question["query"])
                result = selectors.search(
                    kb,
                    f"{topic} {text}" if topic else text,
                    language=language,
                    focus=text if topic else "",
                )
                source = next(
                    (
                        s
                        for s in result.sources[:WITHIN]
                        if s.article is not None and s.article.external_id == question["faq_id"]
                    ),
                    None,
                )
                chunk_id = source and (source.passage_chunk_id or source.chunk_id)
                got = _section(Chunk.objects.filter(pk=chunk_id).first()) if chunk_id else None
                want = str(question["section"])
                if got is None:
                    outcome = "missed"
                else:
                    right = got.startswith(want) if want else got == ""
                    outcome = "right" if right else "wrong"
                counts[outcome] += 1
                counts[f"{language}_{outcome}"] += 1
                counts[f"{language}_n"] += 1
                if topic:
                    counts[f"follow_up_{outcome}"] += 1
                    counts["follow_up_n"] += 1
                details.append({**question, "got": got, "outcome": outcome})
        finally:
            services.knowledge_base_delete(kb)
    if options["details"]:
        with open(options["details"], "w", encoding="utf-8") as handle:
            for row in details:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    for row in details:
        if row["outcome"] != "right":
            log(f"{row['outcome']}: {row['query']!r} -> {row['got']!r} (want {row['section']!r})")
    n = len(details)
    report: dict[str, Any] = {
        "n": n,
        "right": round(counts["right"] / n, 4),
        "wrong_section": round(counts["wrong"] / n, 4),
        "guide_missed": round(counts["missed"] / n, 4),
    }
    for group in ("zh", "en", "follow_up"):
        if counts[f"{group}_n"]:
            report[f"{group}_n"] = counts[f"{group}_n"]
            report[f"{group}_right"] = round(counts[f"{group}_right"] / counts[f"{group}_n"], 4)
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report
