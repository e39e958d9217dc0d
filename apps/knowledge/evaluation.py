"""Retrieval quality: top-1, recall@5 and MRR@10 of FAQ queries against an FAQ bank.

The bank is loaded into a throwaway knowledge base through the same services as the admin
(question as title, answer as body when present), every query goes through
`knowledge.selectors.search`, and the knowledge base is deleted afterwards.
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
from apps.knowledge.models import ArticleStatus, EmbeddingBackend, EmbeddingStatus


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument("--bank", required=True, help="JSONL: faq_id, question, answer?")
    parser.add_argument(
        "--queries", required=True, help="JSONL: query_id, query, faq_id or relevant_faq_ids"
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
        help="language of the bank (default: detected)",
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


def read_jsonl(path: str) -> list[dict]:
    rows = []
    try:
        with Path(path).open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise CommandError(f"{path}:{number}: not JSON: {exc}") from exc
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc}") from exc
    return rows


def _held_out(key: str, fraction: float) -> bool:
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def _relevant(query: dict) -> set[str]:
    if "relevant_faq_ids" in query:
        return {str(x) for x in query["relevant_faq_ids"]}
    return {str(query["faq_id"])}


def run(options: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    from apps.core.text import detect_language
    from cs_platform.celery import app as celery_app

    bank = read_jsonl(options["bank"])
    queries = read_jsonl(options["queries"])
    if options["limit"]:
        queries = queries[: options["limit"]]
    if not bank or not queries:
        raise CommandError("the bank and the queries must not be empty")
    holdout = options["holdout"]
    if not 0 <= holdout < 1:
        raise CommandError("--holdout must be in [0, 1)")
    if holdout:
        # Keyed by the question: entries sharing a question (answers of one thread) go together.
        bank = [row for row in bank if not _held_out(str(row["question"]), holdout)]
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
        started = time.perf_counter()
        for row in bank:
            services.article_create(
                knowledge_base=kb,
                title=str(row["question"]),
                body=str(row.get("answer") or ""),
                language=language,
                external_id=str(row["faq_id"]),
                status=ArticleStatus.PUBLISHED,
            )
        index_seconds = time.perf_counter() - started
        failed = kb.articles.exclude(embedding_status=EmbeddingStatus.READY).count()
        if failed:
            raise CommandError(f"{failed} articles were not embedded; see their embedding_error")
        log(f"indexed {len(bank)} articles in {index_seconds:.1f}s with {kb.embedding_backend}")
        external = dict(kb.articles.values_list("id", "external_id"))

        in_bank = set(external.values())
        hits1 = hits5 = 0
        reciprocal = 0.0
        latencies = []
        details = []
        answered_right = answered_wrong = unanswerable = answered_unanswerable = 0
        selectors.search(kb, str(queries[0]["query"]), top_k=10)  # warm the model
        for query in queries:
            t0 = time.perf_counter()
            result = selectors.search(kb, str(query["query"]), top_k=10)
            latencies.append((time.perf_counter() - t0) * 1000)
            ranked = [external[s.article_id] for s in result.sources]
            relevant = _relevant(query) & in_bank
            rank = next((i for i, fid in enumerate(ranked, start=1) if fid in relevant), None)
            if relevant:
                hits1 += rank == 1
                hits5 += rank is not None and rank <= 5
                reciprocal += 1 / rank if rank else 0.0
                answered_right += result.answerable and rank == 1
                answered_wrong += result.answerable and rank != 1
            else:
                unanswerable += 1
                answered_unanswerable += result.answerable
            details.append(
                {
                    "query_id": query.get("query_id"),
                    "answerable_in_bank": bool(relevant),
                    "rank": rank,
                    "top": ranked[:3],
                    "confidence": round(result.confidence, 4),
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
        return report
    finally:
        services.knowledge_base_delete(kb)
