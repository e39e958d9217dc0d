"""Chat speed under load: real websocket clients against a running server.

`manage.py bench chat --sessions 200 --messages 5 [--url ws://127.0.0.1:8000] [--think-ms 1000]
[--workers N]`

Without --url, a uvicorn server is started on a free port (the embedded default: in-memory
channel layer, Celery eager) and stopped afterwards. With --workers N (N > 1) it runs N server
processes, as a deployment does, which share Redis (REDIS_URL, or a redis-server started for
the run) for the channel layer and the caches; their Celery tasks wait in that Redis (no worker
is started: answering needs none). Each session is one socket on the demo
knowledge base; its messages are a mix of repeated questions (the exact cache), new questions
(uncached: a help-centre question reworded with a random preface and detail), an order-status
form (three turns), and for some sessions a final "talk to a human". Latency is measured by the
client from sending a message to receiving the bot's reply. Each message is then classified by
what the server recorded (cache hit, decision): "cached" is an exact-cache hit, "semantic" a
similar question's cached answer (one embedding), "uncached" means the server did search.
Every message is counted: sent, acknowledged (stored), answered; a lost message is one that
was sent but never acknowledged or never answered.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.management.base import CommandParser

from apps.core.benchmarking import benchmark_knowledge_base_id, percentile

ROOT = Path(__file__).resolve().parents[2]

CACHED_QUESTIONS = [
    "How much does shipping cost?",
    "退货运费谁承担？",
    "How long does a refund take to arrive?",
    "退款多久到账？",
    "How do I track my package?",
    "如何取消订单？",
]
PREFACES_EN = ["", "Hi, ", "Hello, quick question: ", "Excuse me, ", "Hey there, ", "Please help: "]
DETAILS_EN = [
    "",
    " I ordered it last week.",
    " It was a gift for my mother.",
    " I'm asking for my company.",
    " This is my first order.",
    " I live in Shanghai.",
    " I paid with Alipay.",
    " It's a pair of shoes.",
]
PREFACES_ZH = ["", "你好，", "请问一下，", "客服你好，", "麻烦问下，", "我想咨询一下，"]
DETAILS_ZH = [
    "",
    "我上周买的。",
    "是送给妈妈的礼物。",
    "是公司采购。",
    "第一次下单。",
    "我在上海。",
    "用支付宝付的。",
]
# The order-status form: the order number, then the last digits of its mobile number.
FORM_TURNS = {
    "en": ["Where is my order?", "LM2026112001", "8001"],
    "zh": ["我的订单到哪了", "LM2026112001", "8001"],
}
HANDOFF = {"en": "I want to talk to a human", "zh": "转人工"}


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument("--sessions", type=int, default=200, help="concurrent sockets")
    parser.add_argument("--messages", type=int, default=5, help="messages per session")
    parser.add_argument("--url", default="", help="ws://host:port of a running server")
    parser.add_argument(
        "--think-ms", type=float, default=1000.0, help="mean pause between a reply and the next"
    )
    parser.add_argument("--kb", type=int, default=0, help="knowledge base id (default: demo)")
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes (more than one: with Redis)"
    )
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a reply")


@dataclass
class Sample:
    client_id: str
    kind: str  # what the client meant to send: cached, uncached, form, handoff
    latency_ms: float | None  # None: no reply came
    acked: bool
    ack_ms: float | None = None  # until the server said it had stored the message


@dataclass
class Session:
    plan: list[tuple[str, str]]  # (kind, text)
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: int = 0  # planned messages not sent because the conversation was handed off


def _questions() -> dict[str, list[str]]:
    """Every demo article's title and alternative questions, by language."""
    from apps.knowledge.services import DEMO_DIR

    questions: dict[str, list[str]] = defaultdict(list)
    for line in (DEMO_DIR / "articles.jsonl").read_text(encoding="utf-8").splitlines():
        article = json.loads(line)
        questions[article["language"]].append(article["title"])
        questions[article["language"]].extend(article.get("questions", []))
    return questions


def _plans(count: int, messages: int, rng: random.Random) -> list[Session]:
    questions = _questions()
    sessions = []
    for n in range(count):
        language = "zh" if n % 2 else "en"
        plan: list[tuple[str, str]] = []
        while len(plan) < messages:
            roll = rng.random()
            if roll < 0.15 and len(plan) <= messages - len(FORM_TURNS[language]):
                plan.extend(("form", text) for text in FORM_TURNS[language])
            elif roll < 0.5:
                plan.append(("cached", rng.choice(CACHED_QUESTIONS)))
            else:
                question = rng.choice(questions[language])
                if language == "zh":
                    text = rng.choice(PREFACES_ZH) + question + rng.choice(DETAILS_ZH)
                else:
                    text = rng.choice(PREFACES_EN) + question + rng.choice(DETAILS_EN)
                plan.append(("uncached", text))
        plan = plan[:messages]
        if n % 10 == 9:  # one session in ten ends by asking for a person
            plan[-1] = ("handoff", HANDOFF[language])
        sessions.append(Session(plan))
    return sessions


async def _run_session(
    url: str, session: Session, think_ms: float, timeout: float, rng: random.Random
) -> None:
    import websockets

    async with websockets.connect(url, max_size=2**20, open_timeout=timeout) as socket:
        await socket.send(json.dumps({"type": "hello", "token": None, "last_seq": 0}))
        for kind, text in session.plan:
            await asyncio.sleep(rng.expovariate(1000.0 / think_ms) if think_ms > 0 else 0)
            client_id = uuid.uuid4().hex
            started = time.perf_counter()
            await socket.send(json.dumps({"type": "message", "client_id": client_id, "text": text}))
            acked, ack_seq, latency, handed_off, ack_ms = False, None, None, False, None
            deadline = started + timeout
            while time.perf_counter() < deadline:
                try:
                    raw = await asyncio.wait_for(socket.recv(), deadline - time.perf_counter())
                except TimeoutError:
                    break
                frame = json.loads(raw)
                if frame["type"] == "ack" and frame.get("client_id") == client_id:
                    acked, ack_seq = True, frame["message"]["seq"]
                    ack_ms = (time.perf_counter() - started) * 1000
                elif frame["type"] == "status" and frame.get("status") != "bot":
                    handed_off = True
                elif frame["type"] == "error":
                    session.errors.append(frame.get("code", "?"))
                    if frame.get("client_id") == client_id:
                        break
                elif (
                    frame["type"] == "message"
                    and frame["message"]["role"] in ("bot", "system")
                    and ack_seq is not None
                    and frame["message"]["seq"] > ack_seq
                ):
                    latency = (time.perf_counter() - started) * 1000
                    # The system notice of a handoff comes before the status frame.
                    handed_off = handed_off or frame["message"]["role"] == "system"
                    break
            session.samples.append(Sample(client_id, kind, latency, acked, ack_ms))
            if handed_off:
                # A person takes over from here: the bot does not answer the rest.
                session.skipped = len(session.plan) - len(session.samples)
                break


def _unanswered_line(sample: Sample, message: Any) -> str:
    """What the server recorded of a message whose reply never reached the client: tells a
    message that was never stored or answered from an answer that was lost on its way."""
    if message is None:
        return f"unanswered {sample.kind} {sample.client_id}: not stored (acked: {sample.acked})\n"
    replies = message.replies.count()
    state = "processed" if message.processed_at else "not processed"
    return (
        f"unanswered {sample.kind} {sample.client_id}: stored as seq {message.seq}, {state}, "
        f"{replies} replies stored (acked: {sample.acked})\n"
    )


def _delete_bench_customers(client_ids: list[str], log: Any) -> None:
    """The bench's customers go when it is done, with their conversations and messages: a
    queue of bench hand-offs would otherwise wait for agents in the real console."""
    from apps.conversations.models import Customer, Message

    customers = set(
        Message.objects.filter(client_id__in=client_ids).values_list(
            "conversation__customer_id", flat=True
        )
    )
    deleted, _ = Customer.objects.filter(pk__in=customers).delete()
    log(f"deleted the bench's {len(customers)} customers and their data ({deleted} rows)")


@contextmanager
def _server(workers: int) -> Iterator[str]:
    """A uvicorn server (ws:// address) for the run, with `workers` processes; more than one
    share a Redis (REDIS_URL, or a redis-server started here). Both stop afterwards."""
    from tests.support import services as real

    redis_process, redis_url = real.start_redis() if workers > 1 else (None, "")
    process = None
    try:
        process, url = real.start_asgi_server(
            {"REDIS_URL": redis_url} if redis_url else {}, workers
        )
        yield url.replace("http", "ws", 1)
    finally:
        if process is not None:
            real.stop(process)
        if redis_process is not None:
            real.stop(redis_process)


def _run_all(
    sessions: list[Session], url: str, think_ms: float, timeout: float, rng: random.Random
) -> None:
    async def all_sessions() -> None:
        await asyncio.gather(*(_run_session(url, s, think_ms, timeout, rng) for s in sessions))

    asyncio.run(all_sessions())


def run(options: dict[str, Any], log: Any) -> dict[str, Any]:
    from apps.conversations.models import Message

    rng = random.Random(options["seed"])
    kb_id = benchmark_knowledge_base_id(options["kb"])
    workers = max(1, options["workers"])
    sessions = _plans(options["sessions"], options["messages"], rng)
    # Warm-up: ask the repeated questions once, so later asks hit the exact cache, and load
    # every model in the server (classifier, both embedders) before timing. One socket per
    # process would do, but which process takes a connection is the kernel's choice: a few per
    # process, side by side, reach them all.
    warm_up = [*CACHED_QUESTIONS, *FORM_TURNS["en"], *FORM_TURNS["zh"]]
    warm_up += ["Do you ship to Canada?", "可以开专票吗", "hello", "你好"]
    warm_sessions = [
        Session([("warm", q) for q in warm_up]) for _ in range(1 if workers == 1 else 4 * workers)
    ]
    with ExitStack() as stack:
        base = options["url"].rstrip("/")
        if not base:
            # Every run starts from the same state: no semantic-cache entries from earlier
            # runs (the exact cache lives in the new server's memory).
            from apps.conversations.models import SemanticCacheEntry

            cleared, _ = SemanticCacheEntry.objects.filter(knowledge_base_id=kb_id).delete()
            log(f"semantic cache of knowledge base {kb_id} emptied ({cleared} entries)")
            base = stack.enter_context(_server(workers))
            log(f"started a server at {base} ({workers} process(es))")
        url = f"{base}/ws/chat/?kb={kb_id}"
        _run_all(warm_sessions, url, 0, options["timeout"], rng)
        started = time.perf_counter()
        _run_all(sessions, url, options["think_ms"], options["timeout"], rng)
        elapsed = time.perf_counter() - started

    samples = [s for session in sessions for s in session.samples]
    errors = [e for session in sessions for e in session.errors]
    stored = {
        m.client_id: m for m in Message.objects.filter(client_id__in=[s.client_id for s in samples])
    }
    unanswered = [s for s in samples if not s.acked or s.latency_ms is None]
    for sample in unanswered[:20]:
        log(_unanswered_line(sample, stored.get(sample.client_id)))
    warm_ids = [s.client_id for w in warm_sessions for s in w.samples]
    _delete_bench_customers([*warm_ids, *(s.client_id for s in samples)], log)
    by_class: dict[str, list[float]] = defaultdict(list)
    # What the server spent deciding (Message.latency_ms), against what the client waited.
    server_ms: dict[str, list[float]] = defaultdict(list)
    for sample in samples:
        message = stored.get(sample.client_id)
        if message is None or sample.latency_ms is None:
            continue
        if message.cache_hit == "exact":
            kind = "cached"
        elif message.cache_hit:
            kind = "semantic"  # a similar question's answer: costs one embedding
        elif message.decision in ("form", "action"):
            kind = "form"
        elif message.decision == "handoff":
            kind = "handoff"
        else:
            kind = "uncached"  # searched the knowledge base (answer, clarify or not sure)
        by_class[kind].append(sample.latency_ms)
        if message.latency_ms is not None:
            server_ms[kind].append(message.latency_ms)
    sent = len(samples)
    planned = sum(len(s.plan) for s in sessions)
    skipped = sum(s.skipped for s in sessions)
    lost = sum(1 for s in samples if not s.acked or s.latency_ms is None) + (
        planned - skipped - sent
    )
    result: dict[str, Any] = {
        "sessions": len(sessions),
        "workers": workers,
        "messages_planned": planned,
        "sent": sent,
        "not_sent_after_handoff": skipped,
        "acked": sum(1 for s in samples if s.acked),
        "stored": len(stored),
        "answered": sum(1 for s in samples if s.latency_ms is not None),
        "lost": lost,
        "errors": len(errors),
        "seconds": round(elapsed, 2),
        "answers_per_s": round(sum(len(v) for v in by_class.values()) / elapsed, 1),
        "uncached_answers_per_s": round(len(by_class["uncached"]) / elapsed, 1),
    }
    acks = [s.ack_ms for s in samples if s.ack_ms is not None]
    result["stored_p50_ms"] = percentile(acks, 50)
    result["stored_p95_ms"] = percentile(acks, 95)
    log(
        f"{'class':<10}{'n':>6}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'mean':>10}"
        f"{'server p50':>12}{'server p95':>12}\n"
    )
    for kind in ("cached", "semantic", "uncached", "form", "handoff"):
        values = by_class.get(kind, [])
        result[kind] = {
            "n": len(values),
            "p50_ms": percentile(values, 50),
            "p95_ms": percentile(values, 95),
            "p99_ms": percentile(values, 99),
            "server_p50_ms": percentile(server_ms.get(kind, []), 50),
            "server_p95_ms": percentile(server_ms.get(kind, []), 95),
        }
        mean = round(statistics.fmean(values), 1) if values else None
        log(
            f"{kind:<10}{len(values):>6}{result[kind]['p50_ms']!s:>10}"
            f"{result[kind]['p95_ms']!s:>10}{result[kind]['p99_ms']!s:>10}{mean!s:>10}"
            f"{result[kind]['server_p50_ms']!s:>12}{result[kind]['server_p95_ms']!s:>12}\n"
        )
    log(
        f"sent {sent}, stored {len(stored)}, answered {result['answered']}, lost {lost}, "
        f"{result['answers_per_s']} answers/s ({result['uncached_answers_per_s']} uncached/s) "
        f"over {elapsed:.1f}s; stored (acknowledged) p50 {result['stored_p50_ms']} ms, "
        f"p95 {result['stored_p95_ms']} ms\n"
    )
    return result
