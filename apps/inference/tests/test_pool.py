"""The pool against real fake OpenAI-compatible servers: routing, retry, breaker, deadline,
cancellation. No database: the pool is given its endpoints directly."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from apps.inference.fake_server import FakeLLMServer
from apps.inference.pool import (
    Cancelled,
    DeadlineExceeded,
    EndpointConfig,
    EndpointFailed,
    NoEndpointAvailable,
    Pool,
    StreamStopped,
)

MESSAGES = [
    {"role": "system", "content": "Answer from the sources."},
    {"role": "user", "content": "Sources:\n[1] Refunds\nRefunds take 3-5 days. Then done.\n\nHow?"},
]


@pytest.fixture
def servers() -> Iterator[list[FakeLLMServer]]:
    started = [FakeLLMServer().start() for _ in range(2)]
    yield started
    for server in started:
        server.stop()


def config(server: FakeLLMServer, number: int, **overrides: Any) -> EndpointConfig:
    values: dict[str, Any] = {
        "id": number,
        "name": f"ep-{number}",
        "kind": "chat",
        "base_url": server.base_url,
        "model": "fake-llm",
    }
    return EndpointConfig(**{**values, **overrides})


def chat(pool: Pool, deadline: float = 5.0, **kwargs: Any) -> Any:
    return pool.chat(MESSAGES, first_token_deadline=time.monotonic() + deadline, **kwargs)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_answer_streams_with_usage_and_time_to_first_token(servers: list[FakeLLMServer]) -> None:
    servers[0].configure(first_token_delay=0.1)
    pool = Pool(lambda: [config(servers[0], 1)])
    pieces: list[str] = []
    result = chat(pool, on_delta=pieces.append)
    assert result.text == "Refunds take 3-5 days. Then done. [1]"
    assert "".join(pieces) == result.text and len(pieces) > 3
    assert result.endpoint == "ep-1" and result.attempts == 1
    assert result.input_tokens and result.output_tokens == len(pieces)
    assert result.ttft_ms is not None and result.ttft_ms >= 100


def test_least_outstanding_weighted_routing(servers: list[FakeLLMServer]) -> None:
    for server in servers:
        server.configure(first_token_delay=0.4)
    light, heavy = servers
    pool = Pool(lambda: [config(light, 1, weight=1), config(heavy, 2, weight=3)])
    threads = [threading.Thread(target=chat, args=(pool,)) for _ in range(8)]
    for thread in threads:
        thread.start()
        time.sleep(0.02)  # each request is in flight before the next one is routed
    for thread in threads:
        thread.join()
    assert 5 <= heavy.counts["chat"] <= 7
    assert light.counts["chat"] + heavy.counts["chat"] == 8
    # Idle, the heavier endpoint always has the lower load per weight.
    before = heavy.counts["chat"]
    chat(pool)
    assert heavy.counts["chat"] == before + 1


def test_unhealthy_and_full_endpoints_are_skipped(servers: list[FakeLLMServer]) -> None:
    sick, well = servers
    pool = Pool(lambda: [config(sick, 1, healthy=False, weight=10), config(well, 2)])
    assert chat(pool).endpoint == "ep-2"
    assert sick.counts["chat"] == 0

    well.configure(first_token_delay=0.5)
    full = Pool(lambda: [config(well, 2, max_concurrency=1)])
    waiting = threading.Thread(target=chat, args=(full,))
    waiting.start()
    time.sleep(0.1)
    with pytest.raises(NoEndpointAvailable):
        chat(full)
    waiting.join()


@pytest.mark.parametrize("status", [500, 503, 429])
def test_failure_before_any_token_is_retried_once_on_another_endpoint(
    servers: list[FakeLLMServer], status: int
) -> None:
    first, second = servers
    first.fail_with(status, retry_after=1 if status == 429 else None)
    pool = Pool(lambda: [config(first, 1, weight=5), config(second, 2)])
    retries = metric("inference_retries_total", kind="chat")
    result = chat(pool)
    assert result.endpoint == "ep-2" and result.attempts == 2
    assert result.errors and f"HTTP {status}" in result.errors[0]
    assert metric("inference_retries_total", kind="chat") == retries + 1
    # Both failing: one retry only, then the caller hears why.
    second.fail_with(500)
    with pytest.raises(EndpointFailed):
        chat(pool)
    assert first.counts["failed"] + second.counts["failed"] == 3


def test_a_client_error_is_not_retried_and_does_not_open_the_breaker(
    servers: list[FakeLLMServer],
) -> None:
    first, second = servers
    first.fail_with(400)
    pool = Pool(lambda: [config(first, 1, weight=5), config(second, 2)], breaker_failures=1)
    with pytest.raises(EndpointFailed) as failure:
        chat(pool)
    assert failure.value.reason == "status_4xx" and second.counts["chat"] == 0
    first.recover()
    assert chat(pool).endpoint == "ep-1"


def test_a_stream_broken_after_tokens_is_not_retried(servers: list[FakeLLMServer]) -> None:
    first, second = servers
    first.close_mid_stream(after_chunks=2)
    pool = Pool(lambda: [config(first, 1, weight=5), config(second, 2)])
    pieces: list[str] = []
    with pytest.raises(EndpointFailed) as failure:
        chat(pool, on_delta=pieces.append)
    assert failure.value.produced_tokens and len(pieces) == 2
    assert second.counts["chat"] == 0


def test_killed_endpoint_fails_over(servers: list[FakeLLMServer]) -> None:
    first, second = servers
    pool = Pool(lambda: [config(first, 1, weight=5), config(second, 2)])
    assert chat(pool).endpoint == "ep-1"
    first.kill()
    started = time.monotonic()
    result = chat(pool)
    assert result.endpoint == "ep-2" and result.attempts == 2
    assert time.monotonic() - started < 1.0


def test_breaker_opens_after_failures_and_a_trial_closes_it(servers: list[FakeLLMServer]) -> None:
    server = servers[0]
    server.fail_with(500)
    pool = Pool(lambda: [config(server, 1)], breaker_failures=3, breaker_cooldown=0.3)
    for _ in range(3):
        with pytest.raises(EndpointFailed):
            chat(pool)
    assert pool.snapshot()[0]["breaker"] == "open"
    assert metric("inference_breaker_state", endpoint="ep-1") == 2
    with pytest.raises(NoEndpointAvailable):
        chat(pool)
    assert server.counts["failed"] == 3  # the open breaker kept the request away

    time.sleep(0.35)
    server.recover()
    assert chat(pool).text  # the half-open trial succeeds ...
    assert pool.snapshot()[0]["breaker"] == "closed"  # ... and closes the breaker


def test_half_open_failure_opens_the_breaker_again(servers: list[FakeLLMServer]) -> None:
    server = servers[0]
    server.fail_with(500)
    pool = Pool(lambda: [config(server, 1)], breaker_failures=2, breaker_cooldown=0.2)
    for _ in range(2):
        with pytest.raises(EndpointFailed):
            chat(pool)
    time.sleep(0.25)
    with pytest.raises(EndpointFailed):
        chat(pool)  # the single trial fails
    assert pool.snapshot()[0]["breaker"] == "open"
    with pytest.raises(NoEndpointAvailable):
        chat(pool)


def test_slow_first_token_misses_the_deadline(servers: list[FakeLLMServer]) -> None:
    for server in servers:
        server.configure(first_token_delay=2.0)
    pool = Pool(lambda: [config(servers[0], 1), config(servers[1], 2)])
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        chat(pool, deadline=0.4)
    assert time.monotonic() - started < 1.0


def test_cancellation_stops_the_stream(servers: list[FakeLLMServer]) -> None:
    server = servers[0]
    server.configure(token_delay=0.05)
    pool = Pool(lambda: [config(server, 1)], breaker_failures=1)
    gone = threading.Event()

    def on_delta(piece: str) -> None:
        gone.set()  # the customer closes the chat after the first piece

    started = time.monotonic()
    with pytest.raises(Cancelled):
        chat(pool, on_delta=on_delta, cancel=gone)
    assert time.monotonic() - started < 0.5
    assert pool.snapshot()[0]["breaker"] == "closed" and pool.snapshot()[0]["outstanding"] == 0


def test_the_caller_can_stop_a_stream(servers: list[FakeLLMServer]) -> None:
    pool = Pool(lambda: [config(servers[0], 1)], breaker_failures=1)
    with pytest.raises(StreamStopped):
        chat(pool, on_delta=lambda piece: False)
    assert pool.snapshot()[0]["breaker"] == "closed"
    assert chat(pool).text


def test_no_endpoints_of_the_kind(servers: list[FakeLLMServer]) -> None:
    pool = Pool(lambda: [config(servers[0], 1, kind="embedding")])
    assert not pool.has_endpoints("chat") and pool.has_endpoints("embedding")
    with pytest.raises(NoEndpointAvailable):
        chat(pool)
