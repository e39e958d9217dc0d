"""Agent console speed: handoffs reaching the agents' queues, agents' messages reaching customers.

`manage.py bench console --agents 20 --customers 200 [--duration 20] [--url http://...]`

Without --url, a uvicorn server is started on a free port with Redis as the channel layer
(REDIS_URL, or a redis-server started for the run) and stopped afterwards. Agents are staff
users with console sessions (created for the run, online, capacity high enough for their
share); each keeps a `/ws/console/` socket. Customers arrive spread over `--duration` seconds,
each on its own `/ws/chat/` socket, and ask for a person. Measured by the clients:

- handoff to visible: from the customer sending "转人工" / "I want to talk to a human" until
  the first console receives a `queue` frame listing that conversation;
- agent message to customer: an agent claims the conversation and sends `--agent-messages`
  messages; from sending each until the customer's socket shows it.

Every handoff and message is counted; a lost one never arrived within `--timeout`.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from django.core.management.base import CommandParser

from apps.core.benchmarking import benchmark_knowledge_base_id, percentile

ROOT = Path(__file__).resolve().parents[2]
AGENT_PREFIX = "bench-agent-"


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--duration", type=float, default=20.0, help="arrivals spread over (s)")
    parser.add_argument("--agent-messages", type=int, default=3)
    parser.add_argument("--think-ms", type=int, default=300, help="between an agent's messages")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--url", default="", help="a running server (http://host:port)")
    parser.add_argument("--kb", type=int, default=0, help="knowledge base id (default: demo)")
    parser.add_argument("--seed", type=int, default=7)


def _agents(count: int, capacity: int) -> list[str]:
    """Session cookies of `count` online bench agents (created or reset)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.contrib.sessions.backends.db import SessionStore
    from django.utils import timezone

    from apps.agents.models import AgentProfile, Presence

    users = get_user_model()
    group = Group.objects.get(name="agents")
    cookies = []
    for index in range(count):
        user, _ = users.objects.get_or_create(username=f"{AGENT_PREFIX}{index:02d}")
        user.groups.add(group)
        AgentProfile.objects.update_or_create(
            user=user,
            defaults={
                "presence": Presence.ONLINE,
                "capacity": capacity,
                "languages": [],
                "last_seen_at": timezone.now(),
            },
        )
        session = SessionStore()
        session["_auth_user_id"] = str(user.pk)
        session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
        session["_auth_user_hash"] = user.get_session_auth_hash()
        session.create()
        cookies.append(f"sessionid={session.session_key}")
    return cookies


def _start_server(redis_url: str) -> tuple[subprocess.Popen, str]:
    from tests.support.services import start_asgi_server

    # The agents claim by hand here, as in a console (no Celery worker runs).
    return start_asgi_server({"REDIS_URL": redis_url, "AGENTS_AUTO_ASSIGN": "0"})


class Bench:
    def __init__(self, options: dict[str, Any], ws_base: str, kb_id: int) -> None:
        self.options = options
        self.ws_base = ws_base
        self.kb_id = kb_id
        self.handoff_sent: dict[str, float] = {}  # conversation id -> when "human" was sent
        self.handoff_visible: dict[str, float] = {}
        self.message_sent: dict[str, float] = {}  # message text -> when the agent sent it
        self.message_seen: dict[str, float] = {}
        self.claimed: set[str] = set()
        self.customers_done = 0
        self.errors: list[str] = []
        self.rng = random.Random(options["seed"])

    async def agent(self, index: int, cookie: str, count: int) -> None:
        import websockets

        async with websockets.connect(
            f"{self.ws_base}/ws/console/", additional_headers={"Cookie": cookie}, max_size=None
        ) as socket:
            mine: list[str] = []
            claiming: set[str] = set()
            deadline = time.monotonic() + self.options["duration"] + self.options["timeout"] * 2

            async def work(conversation_id: str) -> None:
                for n in range(self.options["agent_messages"]):
                    text = f"agent {index} says {n} {uuid.uuid4().hex[:8]}"
                    self.message_sent[text] = time.perf_counter()
                    await socket.send(
                        json.dumps(
                            {
                                "type": "message",
                                "conversation_id": conversation_id,
                                "text": text,
                                "client_id": uuid.uuid4().hex,
                            }
                        )
                    )
                    await asyncio.sleep(self.options["think_ms"] / 1000)

            tasks = []
            while time.monotonic() < deadline:
                if self.customers_done >= self.options["customers"]:
                    break
                try:
                    raw = await asyncio.wait_for(socket.recv(), timeout=1.0)
                except TimeoutError:
                    continue
                frame = json.loads(raw)
                now = time.perf_counter()
                if frame["type"] == "queue":
                    for item in frame["items"]:
                        self.handoff_visible.setdefault(item["id"], now)
                        # Each agent claims its share of the queue, as agents would.
                        if (
                            hash(item["id"]) % count == index
                            and item["id"] not in claiming
                            and item["id"] not in self.claimed
                        ):
                            claiming.add(item["id"])
                            await socket.send(
                                json.dumps({"type": "claim", "conversation_id": item["id"]})
                            )
                elif frame["type"] == "done" and frame["action"] == "claim":
                    conversation_id = frame["conversation_id"]
                    self.claimed.add(conversation_id)
                    mine.append(conversation_id)
                    tasks.append(asyncio.ensure_future(work(conversation_id)))
                elif frame["type"] == "error":
                    self.errors.append(f"agent {index}: {frame.get('code')} {frame.get('reason')}")
            await asyncio.gather(*tasks)

    async def customer(self, index: int, delay: float) -> None:
        import websockets

        await asyncio.sleep(delay)
        language = "zh" if index % 2 else "en"
        text = "转人工" if language == "zh" else "I want to talk to a human"
        expected = self.options["agent_messages"]
        try:
            async with websockets.connect(
                f"{self.ws_base}/ws/chat/?kb={self.kb_id}&lang={language}", max_size=None
            ) as socket:
                await socket.send(json.dumps({"type": "hello", "token": None, "last_seq": 0}))
                sent_at = time.perf_counter()
                await socket.send(
                    json.dumps({"type": "message", "client_id": uuid.uuid4().hex, "text": text})
                )
                seen = 0
                end = time.monotonic() + self.options["timeout"] + self.options["duration"]
                while seen < expected and time.monotonic() < end:
                    try:
                        raw = await asyncio.wait_for(socket.recv(), timeout=1.0)
                    except TimeoutError:
                        continue
                    frame = json.loads(raw)
                    if frame["type"] == "session":
                        self.handoff_sent[frame["conversation_id"]] = sent_at
                    elif frame["type"] == "message" and frame["message"]["role"] == "agent":
                        self.message_seen[frame["message"]["text"]] = time.perf_counter()
                        seen += 1
                    elif frame["type"] == "error":
                        self.errors.append(f"customer {index}: {frame.get('code')}")
        finally:
            self.customers_done += 1

    async def run(self, cookies: list[str]) -> None:
        count = len(cookies)
        agents = [asyncio.ensure_future(self.agent(i, c, count)) for i, c in enumerate(cookies)]
        await asyncio.sleep(1.0)  # consoles connected and showing the (empty) queue
        spread = self.options["duration"]
        customers = [
            self.customer(i, self.rng.uniform(0, spread)) for i in range(self.options["customers"])
        ]
        await asyncio.gather(*customers)
        await asyncio.gather(*agents)


def run(options: dict[str, Any], log: Any) -> dict[str, Any]:
    from apps.conversations.models import Conversation, ConversationStatus
    from tests.support import services as real

    kb_id = benchmark_knowledge_base_id(options["kb"])
    # Conversations left waiting by an earlier run would crowd the queue.
    Conversation.objects.filter(
        status__in=[ConversationStatus.WAITING_AGENT, ConversationStatus.AGENT]
    ).update(status=ConversationStatus.CLOSED)
    share = -(-options["customers"] // max(1, options["agents"]))
    cookies = _agents(options["agents"], capacity=min(50, share * 3))
    redis_process, redis_url = real.start_redis()
    server = None
    base = options["url"].rstrip("/")
    try:
        if not base:
            server, base = _start_server(redis_url)
            log(f"started a server at {base} (channel layer: Redis {redis_url})\n")
        bench = Bench(options, base.replace("http", "ws", 1), kb_id)
        started = time.perf_counter()
        asyncio.run(bench.run(cookies))
        elapsed = time.perf_counter() - started
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:  # sockets still draining: the numbers are in
                server.kill()
                server.wait()
        if redis_process is not None:
            real.stop(redis_process)

    handoff = [
        (bench.handoff_visible[c] - sent) * 1000
        for c, sent in bench.handoff_sent.items()
        if c in bench.handoff_visible
    ]
    delivery = [
        (bench.message_seen[t] - sent) * 1000
        for t, sent in bench.message_sent.items()
        if t in bench.message_seen
    ]
    result = {
        "agents": options["agents"],
        "customers": options["customers"],
        "seconds": round(elapsed, 1),
        "handoffs": len(bench.handoff_sent),
        "handoffs_visible": len(handoff),
        "handoff_to_queue_p50_ms": percentile(handoff, 50),
        "handoff_to_queue_p95_ms": percentile(handoff, 95),
        "claimed": len(bench.claimed),
        "agent_messages": len(bench.message_sent),
        "agent_messages_delivered": len(delivery),
        "agent_to_customer_p50_ms": percentile(delivery, 50),
        "agent_to_customer_p95_ms": percentile(delivery, 95),
        "errors": len(bench.errors),
    }
    log(
        f"handoff -> visible in a queue: n {len(handoff)}/{len(bench.handoff_sent)}, "
        f"p50 {result['handoff_to_queue_p50_ms']} ms, p95 {result['handoff_to_queue_p95_ms']} ms\n"
        f"agent message -> customer: n {len(delivery)}/{len(bench.message_sent)}, "
        f"p50 {result['agent_to_customer_p50_ms']} ms, "
        f"p95 {result['agent_to_customer_p95_ms']} ms\n"
        f"claimed {len(bench.claimed)}, errors {len(bench.errors)} {bench.errors[:3]}\n"
    )
    return result
