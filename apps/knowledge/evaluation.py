"""Retrieval quality: top-1, recall@5 and MRR@10 of FAQ queries against an FAQ bank.

The bank is loaded into a throwaway knowledge base through the same services as the admin
(question as title, answer as body when present, with its alternative questions and kind), every
query goes through `knowledge.selectors.search`, and the knowledge base is deleted afterwards.
`--bank demo` takes the demo help centre's articles (and synonyms) in `--language` as the bank.
A query with `"faq_id": null` has no right answer (out of scope), like one whose answer was held
out: the bot should not answer it.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from django.core.management.base import CommandError, CommandParser

from apps.knowledge import selectors, services
from apps.knowledge.models import (
    ArticleKind,
    ArticleStatus,
    EmbeddingBackend,
    EmbeddingStatus,
    KnowledgeBase,
    SynonymGroup,
)

DEMO_BANK = "demo"


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument(
        "--bank",
        required=True,
        help="JSONL: faq_id, question, answer?, questions?, kind?, tags?; or 'demo': the demo "
        "help centre's articles in --language",
    )
    parser.add_argument(
        "--queries",
        required=True,
        help="JSONL: query_id, query, faq_id (null: no right answer) or relevant_faq_ids",
    )
    parser.add_argument(
        "--embedding",
        choices=EmbeddingBackend.values,
        default="",
        help="embedding backend (default: the platform's choice per language)",
    )
    parser.add_argument("--embedding-model", default="", help="model name or path")
    parser.add_argument(
        "--language",
        choices=["zh", "en"],
        default="",
        help="language of the bank (default: detected; required with --bank demo)",
    )
    parser.add_argument(
        "--keyword-weight",
        type=float,
        default=None,
        help="the knowledge base's keyword weight (default: the model default)",
    )
    parser.add_argument("--limit", type=int, default=0, help="evaluate only the first N queries")
    parser.add_argument("--details", default="", help="write per-query results to this JSONL")
    parser.add_argument(
        "--holdout",
        type=float,
        default=0.0,
        help="leave this fraction of the bank out (chosen by a hash of the question): its queries "
        "then have no right answer, which measures how often the bot answers anyway",
    )
    parser.add_argument(
        "--holdout-seed",
        type=int,
        default=0,
        help="salt of the holdout hash: each seed leaves out a different part of the bank "
        "(0, the default, is the split used before seeds existed)",
    )


def read_jsonl(path: str) -> list[dict]:
    rows = []
    try:
        with Path(path).open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise CommandError(f"{path}:{number}: not JSON: {exc}") from exc
                    if not isinstance(row, dict):
                        raise CommandError(f"{path}:{number}: not a JSON object")
                    rows.append(row)
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc}") from exc
    return rows


def demo_bank(language: str) -> list[dict]:
    """The demo help centre's articles in `language` as bank rows, read by the importer that
    `load_demo` uses. Their validity dates are dropped: the promotions (one expired, one to
    come, at any date) stay searchable, so that the evaluation gives the same result whatever
    day it runs and customers' questions about them keep their right answer."""
    from apps.knowledge.importing import parse_files

    path = services.DEMO_DIR / "articles.jsonl"
    rows = [row.values for row in parse_files([(path.name, path.read_bytes())])]
    return [
        {
            "faq_id": values["external_id"],
            "question": values["title"],
            "answer": values.get("body") or "",
            "kind": values.get("kind") or ArticleKind.FAQ,
            "questions": values["questions"],
            "tags": values["tags"],
        }
        for values in rows
        if values.get("language") == language
    ]


def demo_synonyms_load(kb: KnowledgeBase, language: str) -> int:
    """The demo help centre's synonym groups in `language`, as `load_demo` saves them: search
    expands queries with them, so the scores match the demo's."""
    entries = json.loads((services.DEMO_DIR / "synonyms.json").read_text(encoding="utf-8"))
    groups = [entry for entry in entries if entry["language"] == language]
    for entry in groups:
        services.synonym_group_save(
            SynonymGroup(
                knowledge_base=kb,
                language=language,
                canonical=entry["canonical"],
                variants=entry["variants"],
            )
        )
    return len(groups)


def bank_index(kb: KnowledgeBase, bank: list[dict], language: str) -> float:
    """The bank's entries as published articles of `kb`, created and embedded through the
    admin's services (with Celery eager: at once); the seconds it took. An article left
    unembedded is an error: the numbers would be meaningless."""
    started = time.perf_counter()
    for row in bank:
        services.article_create(
            knowledge_base=kb,
            title=str(row["question"]),
            body=str(row.get("answer") or ""),
            kind=str(row.get("kind") or ArticleKind.FAQ),
            questions=[str(q) for q in row.get("questions") or []],
            tags=[str(t) for t in row.get("tags") or []],
            language=language,
            external_id=str(row["faq_id"]),
            status=ArticleStatus.PUBLISHED,
        )
    seconds = time.perf_counter() - started
    failed = kb.articles.exclude(embedding_status=EmbeddingStatus.READY).count()
    if failed:
        raise CommandError(f"{failed} articles were not embedded; see their embedding_error")
    return seconds


def _check_bank(bank: list[dict], source: str) -> None:
    for number, row in enumerate(bank, start=1):
        if row.get("faq_id") in (None, "") or not str(row.get("question") or "").strip():
            raise CommandError(f"{source}: entry {number} needs a faq_id and a question")
        if not isinstance(row.get("questions", []), list):
            raise CommandError(f"{source}: entry {number}: questions must be a list")
        if row.get("kind", ArticleKind.FAQ) not in ArticleKind.values:
            raise CommandError(
                f"{source}: entry {number}: kind must be one of {', '.join(ArticleKind.values)}"
            )


def _check_queries(queries: list[dict], source: str) -> None:
    for number, query in enumerate(queries, start=1):
        text = query.get("query")
        if not isinstance(text, str) or not text.strip():
            raise CommandError(f"{source}: query {number} has no query text")
        if "relevant_faq_ids" in query:
            if not isinstance(query["relevant_faq_ids"], list):
                raise CommandError(f"{source}: query {number}: relevant_faq_ids must be a list")
        elif "faq_id" not in query:
            raise CommandError(
                f"{source}: query {number} needs faq_id (null when nothing answers it) "
                "or relevant_faq_ids"
            )


def _held_out(key: str, fraction: float, seed: int = 0) -> bool:
    salted = key if seed == 0 else f"{seed}:{key}"
    digest = hashlib.sha256(salted.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def _relevant(query: dict) -> set[str]:
    """The bank entries that answer the query; empty for an out-of-scope query."""
    if "relevant_faq_ids" in query:
        return {str(x) for x in query["relevant_faq_ids"]}
    if query["faq_id"] is None:
        return set()
    return {str(query["faq_id"])}


def run(options: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    from apps.core.text import detect_language
    from cs_platform.celery import app as celery_app

    demo = options["bank"] == DEMO_BANK
    if demo and not options["language"]:
        raise CommandError("--bank demo needs --language (zh or en)")
    bank = demo_bank(options["language"]) if demo else read_jsonl(options["bank"])
    queries = read_jsonl(options["queries"])
    if options["limit"]:
        queries = queries[: options["limit"]]
    if not bank or not queries:
        raise CommandError("the bank and the queries must not be empty")
    _check_bank(bank, options["bank"])
    _check_queries(queries, options["queries"])
    holdout = options["holdout"]
    if not 0 <= holdout < 1:
        raise CommandError("--holdout must be in [0, 1)")
    unknown = sorted(
        {fid for q in queries for fid in _relevant(q)} - {str(row["faq_id"]) for row in bank}
    )
    if unknown:
        # Probably a typo: such queries count as unanswerable, as if their answer were held out.
        log(f"{len(unknown)} faq_ids of the queries are not in the bank: {', '.join(unknown[:10])}")
    if holdout:
        # Keyed by the question: entries sharing a question (answers of one thread) go together.
        bank = [
            row
            for row in bank
            if not _held_out(str(row["question"]), holdout, options["holdout_seed"])
        ]
    language = options["language"] or detect_language(
        " ".join(str(row.get("question", "")) for row in bank[:50])
    )

    # Index synchronously in this process, whatever the deployment's Celery setting.
    celery_app.conf.task_always_eager = True
    kb = services.knowledge_base_create(
        name=f"evaluation-{uuid.uuid4().hex[:12]}",
        languages=[language],
        embedding_backend=options["embedding"],
        embedding_model=options["embedding_model"],
        **(
            {}
            if options["keyword_weight"] is None
            else {"keyword_weight": options["keyword_weight"]}
        ),
    )
    try:
        if demo:
            demo_synonyms_load(kb, language)
        index_seconds = bank_index(kb, bank, language)
        log(f"indexed {len(bank)} articles in {index_seconds:.1f}s with {kb.embedding_backend}")
        external = dict(kb.articles.values_list("id", "external_id"))
        written = {
            pk: {selectors._plain(text) for text in [title, *questions]}
            for pk, title, questions in kb.articles.values_list("id", "title", "questions")
        }

        in_bank = set(external.values())
        hits1 = hits5 = 0
        reciprocal = 0.0
        latencies = []
        details = []
        answered_right = answered_wrong = unanswerable = answered_unanswerable = 0
        out_of_scope = 0
        selectors.search(kb, str(queries[0]["query"]), top_k=10)  # warm the model
        for query in queries:
            t0 = time.perf_counter()
            result = selectors.search(kb, str(query["query"]), top_k=10)
            latencies.append((time.perf_counter() - t0) * 1000)
            ranked = [external[s.article_id] for s in result.sources]
            named = _relevant(query)
            relevant = named & in_bank
            rank = next((i for i, fid in enumerate(ranked, start=1) if fid in relevant), None)
            if relevant:
                hits1 += rank == 1
                hits5 += rank is not None and rank <= 5
                reciprocal += 1 / rank if rank else 0.0
                answered_right += result.answerable and rank == 1
                answered_wrong += result.answerable and rank != 1
            else:
                unanswerable += 1
                out_of_scope += not named
                answered_unanswerable += result.answerable
            plain = selectors._plain(result.query)
            top_two = [written.get(source.article_id, set()) for source in result.sources[:2]]
            details.append(
                {
                    "query_id": query.get("query_id"),
                    "language": result.language,
                    "answerable_in_bank": bool(relevant),
                    "out_of_scope": not named,
                    "rank": rank,
                    "top": ranked[:3],
                    "confidence": round(result.confidence, 4),
                    # The query is the top article's title or one of its questions, word for
                    # word, and no runner-up's: search's confidence is then at least
                    # EXACT_QUESTION_CONFIDENCE, whatever the model says.
                    "exact_question": bool(top_two)
                    and plain in top_two[0]
                    and not any(plain in other for other in top_two[1:]),
                    "features": {k: round(v, 5) for k, v in result.features.items()},
                }
            )
        if options["details"]:
            with open(options["details"], "w", encoding="utf-8") as handle:
                for row in details:
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        n = len(queries) - unanswerable
        answered = answered_right + answered_wrong + answered_unanswerable
        report = {
            "n": n,
            "top1": round(hits1 / n, 4) if n else 0.0,
            "recall_at_5": round(hits5 / n, 4) if n else 0.0,
            "mrr_at_10": round(reciprocal / n, 4) if n else 0.0,
            "index_seconds": round(index_seconds, 2),
            "query_p50_ms": round(float(np.percentile(latencies, 50)), 2),
            "query_p95_ms": round(float(np.percentile(latencies, 95)), 2),
            "embedding": kb.embedding_backend
            + (f":{kb.embedding_model}" if kb.embedding_model else ""),
            # Of the answers the bot would give (confidence >= threshold), the share that is right.
            "answer_precision": round(answered_right / answered, 4) if answered else None,
            "answer_rate": round((answered_right + answered_wrong) / n, 4) if n else 0.0,
        }
        if unanswerable:
            report["n_unanswerable"] = unanswerable
            report["false_answer_rate"] = round(answered_unanswerable / unanswerable, 4)
        if out_of_scope:
            report["n_out_of_scope"] = out_of_scope
        return report
    finally:
        services.knowledge_base_delete(kb)
