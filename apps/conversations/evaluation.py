"""Conversations: what the whole bot does with customers' questions, each the first message of a
new conversation.

Each query (JSONL: `query_id`, `query`, `faq_id`: the external id of the article that answers
it, or null when none does) goes through the services the chat socket uses (stored, moderated,
the intents, search, then an answer, "which of these?", "not sure", a form or a hand-off) on a
knowledge base: the demo help centre unless --kb names another. The answer caches are off, so
each question is searched on its own, and everything runs in one transaction that is rolled
back: no customer, message or hand-off stays behind, and no agent is ever offered one.

Answerable queries are counted as `right` (answered from the labelled article), `wrong` (from
another), `ended` (told that the promotion asked about is over: no article is quoted),
`clarified_right` / `clarified` ("which of these?", with or without the labelled article among
the choices), `not_sure_suggested` / `not_sure` ("not sure", suggesting the labelled article
or not), `handed_off`, `form` (a form started or an intent's fixed reply) or
`refused` (the guard); out-of-scope ones as `handed_off`, `not_sure` or `answered` (anything
else). Rates are shares of the answerable and out-of-scope queries respectively.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser
from django.db import transaction
from django.test.utils import override_settings

from apps.conversations import services
from apps.conversations.models import (
    Channel,
    Conversation,
    ConversationStatus,
    Decision,
    Message,
)
from apps.core.text import detect_language
from apps.knowledge import selectors as knowledge_selectors
from apps.knowledge.evaluation import read_jsonl
from apps.knowledge.models import Article, KnowledgeBase

ANSWERABLE = (
    "right",
    "wrong",
    "ended",
    "clarified_right",
    "clarified",
    "not_sure_suggested",
    "not_sure",
    "handed_off",
    "form",
    "refused",
)
OUT_OF_SCOPE = ("handed_off", "not_sure", "answered")


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument(
        "--queries",
        required=True,
        help="JSONL: query_id, query, faq_id (the answering article's external id, or null)",
    )
    parser.add_argument("--kb", type=int, default=0, help="knowledge base id (default: demo)")
    parser.add_argument(
        "--locale", default="", help="the customers' locale (default: the query's language)"
    )
    parser.add_argument("--details", default="", help="write per-query results to this JSONL")


def _knowledge_base(kb_id: int) -> KnowledgeBase:
    if kb_id:
        kb = KnowledgeBase.objects.filter(pk=kb_id).first()
        if kb is None:
            raise CommandError(f"no knowledge base with id {kb_id}")
        return kb
    demo = knowledge_selectors.demo_knowledge_base_get()
    if demo is None:
        raise CommandError("the demo knowledge base is not loaded: run `manage.py load_demo`")
    return demo


def _outcome(
    answerable: bool,
    gold: str,
    message: Message,
    conversation: Conversation,
    external: dict[int, str],
) -> tuple[str, list[str]]:
    """The query's category and the external ids of the articles the reply cites (or offers),
    from what the engine recorded on the customer's message and the conversation."""
    cited = [external.get(int(s.get("article_id") or 0), "?") for s in message.sources]
    if conversation.status == ConversationStatus.WAITING_AGENT:
        return "handed_off", cited
    decision = message.decision
    if decision == Decision.FALLBACK:
        offered = conversation.state.get("offered") or []
        cited = [external.get(int(o.get("article_id") or 0), "?") for o in offered]
        suggested = answerable and gold in cited
        return ("not_sure_suggested" if suggested else "not_sure"), cited
    if not answerable:
        return "answered", cited
    if decision == Decision.ANSWER:
        if not cited:
            return "ended", cited
        return ("right" if cited[0] == gold else "wrong"), cited
    if decision == Decision.CLARIFY:
        return ("clarified_right" if gold in cited else "clarified"), cited
    if decision == Decision.GUARD:
        return "refused", cited
    return "form", cited


def run(options: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    from cs_platform.celery import app as celery_app

    queries = read_jsonl(options["queries"])
    for number, row in enumerate(queries, start=1):
        if not str(row.get("query") or "").strip() or "faq_id" not in row:
            raise CommandError(f"{options['queries']}: query {number} needs query and faq_id")
    if not queries:
        raise CommandError("no queries to evaluate")
    kb = _knowledge_base(options["kb"])
    external = dict(Article.objects.filter(knowledge_base=kb).values_list("pk", "external_id"))
    unknown = {str(r["faq_id"]) for r in queries if r["faq_id"]} - set(external.values())
    if unknown:
        raise CommandError(f"articles not in knowledge base {kb.pk}: {sorted(unknown)[:5]}")
    celery_app.conf.task_always_eager = True
    counts: dict[str, Counter[str]] = {"answerable": Counter(), "out_of_scope": Counter()}
    details = []
    latencies = []
    started = time.perf_counter()
    chat = {**settings.CHAT, "ANSWER_CACHES": False}
    with override_settings(CHAT=chat), transaction.atomic():
        marker = f"evaluation-{uuid.uuid4().hex[:12]}"
        for number, row in enumerate(queries, start=1):
            text = str(row["query"])
            locale = options["locale"] or ("zh-hans" if detect_language(text) == "zh" else "en")
            conversation = services.conversation_start(
                knowledge_base=kb, channel=Channel.API, locale=locale, external_id=marker
            )
            message, _ = services.message_receive(conversation, text)
            replies = services.message_process(message)
            message.refresh_from_db()
            conversation.refresh_from_db()
            answerable = bool(row["faq_id"])
            category, cited = _outcome(
                answerable,
                str(row["faq_id"] or ""),
                message,
                conversation,
                external,
            )
            counts["answerable" if answerable else "out_of_scope"][category] += 1
            if message.latency_ms is not None:
                latencies.append(message.latency_ms)
            details.append(
                {
                    "query_id": row.get("query_id", number),
                    "query": text,
                    "faq_id": row["faq_id"],
                    "category": category,
                    "decision": message.decision,
                    "cited": cited,
                    "confidence": message.confidence,
                    "handoff_reason": conversation.handoff_reason,
                    "reply": replies[0].text[:200] if replies else "",
                }
            )
            if number % 50 == 0:
                log(f"{number} / {len(queries)} queries")
        # Nothing the queries made stays: customers, messages, hand-offs, cached answers.
        transaction.set_rollback(True)
    if options["details"]:
        with Path(options["details"]).open("w", encoding="utf-8") as out:
            for detail in details:
                out.write(json.dumps(detail, ensure_ascii=False) + "\n")
    result: dict[str, Any] = {"n": len(queries), "knowledge_base": kb.pk}
    for group, names in (("answerable", ANSWERABLE), ("out_of_scope", OUT_OF_SCOPE)):
        total = sum(counts[group].values())
        result[group] = total
        for name in names:
            result[f"{group}_{name}"] = round(counts[group][name] / total, 4) if total else None
    latencies.sort()
    result["latency_p50_ms"] = round(latencies[len(latencies) // 2], 1) if latencies else None
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result
