"""Model-pool client: overhead over a direct call, and failover when an endpoint is killed.

`manage.py bench inference --endpoints K` starts K fake OpenAI-compatible servers as separate
processes (apps.inference.fake_server, with the configured first-token and per-token delays),
then:

1. Overhead: the same streamed chat request, alternately straight through the `openai` client
   to one endpoint and through the pool (routing, breaker, metrics, retry bookkeeping);
   overhead = p50 through the pool - p50 direct.
2. Failover: `--concurrency` customers ask questions back to back for `--duration` seconds
   through the real generation path (prompt, streamed draft checked for facts, grounding
   check); after `--kill-after` seconds one endpoint is SIGKILLed. A customer request fails
   when it does not get a generated answer. Failover time: from the kill until every request
   that was in flight on the killed endpoint has its answer from another one, and until the
   killed endpoint's breaker is open (no new request goes there).

No database is touched: the pool is given the endpoints directly.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, cast

import openai
from django.core.management.base import CommandParser

from apps.core.benchmarking import percentile
from apps.inference.generation import GenerationRequest, SourceText, answer_generate
from apps.inference.models import PromptConfig
from apps.inference.pool import EndpointConfig, Pool

ROOT = Path(__file__).resolve().parents[2]

SOURCE = SourceText(
    1,
    "How long do refunds take?",
    "Refunds go back to the original payment method within 3-5 business days after the "
    "returned item arrives at our warehouse. Bank cards may take up to 7 days to show the "
    "credit. You can follow the refund under My Orders.",
)
QUESTION = "When will I get my money back for a return?"


def add_arguments(parser: CommandParser) -> None:
    parser.add_argument("--endpoints", type=int, default=3, help="fake endpoints to start (K)")
    parser.add_argument("--requests", type=int, default=300, help="overhead phase: pairs of calls")
    parser.add_argument("--concurrency", type=int, default=16, help="failover phase: customers")
    parser.add_argument("--duration", type=float, default=12.0, help="failover phase: seconds")
    parser.add_argument("--kill-after", type=float, default=4.0, help="seconds before the kill")
    parser.add_argument("--first-token-delay", type=float, default=0.05, metavar="SECONDS")
    parser.add_argument("--token-delay", type=float, default=0.01, metavar="SECONDS")


def _start_endpoints(count: int, first_token: float, per_token: float) -> list[tuple[Any, str]]:
    servers = []
    for _ in range(count):
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "apps.inference.fake_server",
                "--port",
                "0",
                "--first-token-delay",
                str(first_token),
                "--token-delay",
                str(per_token),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("ready "):
            process.kill()
            raise RuntimeError(f"fake endpoint did not start: {line!r}")
        servers.append((process, line.split(" ", 1)[1]))
    return servers


def _messages() -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "Answer from the sources."},
        {"role": "user", "content": f"Sources:\n[1] {SOURCE.title}\n{SOURCE.text}\n\n{QUESTION}"},
    ]


def _direct(client: openai.OpenAI) -> float:
    started = time.perf_counter()
    stream = client.chat.completions.create(
        model="fake-llm",
        messages=cast(Any, _messages()),
        max_tokens=400,
        temperature=0.2,
        stream=True,
        stream_options={"include_usage": True},
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text
    return (time.perf_counter() - started) * 1000


def _through_pool(pool: Pool) -> float:
    started = time.perf_counter()
    result = pool.chat(_messages(), first_token_deadline=time.monotonic() + 5)
    assert result.text
    return (time.perf_counter() - started) * 1000


def run(options: dict[str, Any], log: Any) -> dict[str, Any]:
    count = options["endpoints"]
    log(f"starting {count} fake endpoints")
    servers = _start_endpoints(count, options["first_token_delay"], options["token_delay"])
    try:
        return _run(options, log, servers)
    finally:
        for process, _url in servers:
            if process.poll() is None:
                process.terminate()
        for process, _url in servers:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()


def _run(options: dict[str, Any], log: Any, servers: list[tuple[Any, str]]) -> dict[str, Any]:
    configs = [
        EndpointConfig(
            id=i + 1,
            name=f"fake-{i}",
            kind="chat",
            base_url=url,
            model="fake-llm",
            max_concurrency=256,
            request_timeout=30.0,
        )
        for i, (_process, url) in enumerate(servers)
    ]

    # 1. Overhead --------------------------------------------------------------------------------
    single = Pool(lambda: configs[:1])
    direct_client = openai.OpenAI(base_url=configs[0].base_url, api_key="none", max_retries=0)
    for _ in range(20):  # warm both paths: connections, imports
        _direct(direct_client)
        _through_pool(single)
    direct, pooled = [], []
    for _ in range(options["requests"]):
        direct.append(_direct(direct_client))
        pooled.append(_through_pool(single))
    direct_p50 = statistics.median(direct)
    pooled_p50 = statistics.median(pooled)
    overhead = pooled_p50 - direct_p50
    paired = statistics.median(p - d for p, d in zip(pooled, direct, strict=True))
    log(
        f"overhead: direct p50 {direct_p50:.2f} ms, through the pool p50 {pooled_p50:.2f} ms, "
        f"overhead {overhead:.2f} ms (median of paired differences {paired:.2f} ms)"
    )

    # 2. Failover ------------------------------------------------------------------------------
    result: dict[str, Any] = {
        "endpoints": len(servers),
        "direct_p50_ms": round(direct_p50, 2),
        "pool_p50_ms": round(pooled_p50, 2),
        "overhead_p50_ms": round(overhead, 2),
        "overhead_paired_median_ms": round(paired, 2),
    }
    if len(servers) < 2:
        log("failover needs at least two endpoints: skipped")
        return result
    pool = Pool(lambda: configs, refresh_seconds=3600)
    config = PromptConfig(first_token_deadline=5.0)
    request = GenerationRequest(QUESTION, "en", [SOURCE], config)
    records: list[dict[str, Any]] = []
    lock = threading.Lock()
    stop = time.monotonic() + options["duration"]
    killed_at: list[float] = []
    victim = configs[0].name

    def customer() -> None:
        while time.monotonic() < stop:
            started = time.monotonic()
            generated = answer_generate(request, pool=pool)
            ended = time.monotonic()
            tried = [a.get("endpoint") for a in generated.details.get("attempts", [])]
            errors = " ".join(
                " ".join(a.get("errors", [])) + str(a.get("error", ""))
                for a in generated.details.get("attempts", [])
            ) + str(generated.details.get("error", ""))
            with lock:
                records.append(
                    {
                        "start": started,
                        "end": ended,
                        "ok": generated.ok,
                        "status": generated.status,
                        "endpoint": generated.endpoint,
                        "hit_victim": victim in errors or victim in tried,
                        "ms": (ended - started) * 1000,
                    }
                )

    breaker_open_at: list[float] = []

    def watch() -> None:
        while time.monotonic() < stop:
            if killed_at and not breaker_open_at:
                for state in pool.snapshot():
                    if state["name"] == victim and state["breaker"] == "open":
                        breaker_open_at.append(time.monotonic())
            time.sleep(0.002)

    threads = [threading.Thread(target=customer) for _ in range(options["concurrency"])]
    threads.append(threading.Thread(target=watch))
    for thread in threads:
        thread.start()
    time.sleep(options["kill_after"])
    servers[0][0].send_signal(signal.SIGKILL)
    killed_at.append(time.monotonic())
    log(f"killed {victim} after {options['kill_after']} s")
    for thread in threads:
        thread.join()

    kill = killed_at[0]
    before = [r["ms"] for r in records if r["end"] < kill]
    affected = [
        r
        for r in records
        if r["start"] < kill < r["end"] or (r["start"] >= kill and r["hit_victim"])
    ]
    in_flight = [r for r in records if r["start"] < kill < r["end"]]
    failed = [r for r in records if not r["ok"]]
    recovered = max((r["end"] - kill for r in in_flight), default=0.0)
    result.update(
        {
            "customer_requests": len(records),
            "customer_requests_failed": len(failed),
            "failed_statuses": sorted({r["status"] for r in failed}),
            "answers_per_second": round(len(records) / options["duration"], 1),
            "latency_before_kill_p50_ms": round(statistics.median(before), 1) if before else None,
            "in_flight_at_kill": len(in_flight),
            "affected_requests": len(affected),
            "affected_p95_ms": round(percentile([r["ms"] for r in affected], 95) or 0, 1),
            "failover_s": round(recovered, 3),
            "breaker_open_after_s": (
                round(breaker_open_at[0] - kill, 3) if breaker_open_at else None
            ),
            "after_kill_to_victim": sum(
                1
                for r in records
                if r["start"] > (breaker_open_at or [kill])[0] and r["endpoint"] == victim
            ),
        }
    )
    log(
        f"failover: {len(records)} customer requests, {len(failed)} without a generated answer; "
        f"{len(in_flight)} in flight at the kill, all answered {recovered:.3f} s after it; "
        f"breaker open after {result['breaker_open_after_s']} s"
    )
    return result
