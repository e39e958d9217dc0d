"""The client side of the model pool: routing, circuit breakers, retry, deadlines, streaming.

A request goes to the enabled, healthy endpoint of its kind with the fewest outstanding
requests per unit of weight (plus the queue the server reported at its last health check),
skipping endpoints whose breaker is open or that are at their concurrency limit. A request that
fails before producing any token is retried once on another endpoint if the caller's deadline
allows; one that fails mid-stream is not (the customer already saw part of it), and the caller
falls back. Everything here is per process, like a load balancer's view of its upstreams; the
health task (`services.endpoints_health_check`) shares what it learns through the database.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import httpx2
import openai

from apps.inference import metrics

logger = logging.getLogger(__name__)


class PoolError(Exception):
    """No answer from the pool; `reason` is a short code for metrics and the message record."""

    reason = "error"

    def __init__(self, message: str, *, produced_tokens: bool = False) -> None:
        super().__init__(message)
        self.produced_tokens = produced_tokens


class NoEndpointAvailable(PoolError):
    reason = "unavailable"


class DeadlineExceeded(PoolError):
    reason = "timeout"


class Cancelled(PoolError):
    reason = "cancelled"


class EndpointFailed(PoolError):
    """One endpoint failed; `retryable` when another endpoint may well succeed."""

    def __init__(
        self, message: str, *, reason: str, retryable: bool, produced_tokens: bool = False
    ) -> None:
        super().__init__(message, produced_tokens=produced_tokens)
        self.reason = reason
        self.retryable = retryable


@dataclass(frozen=True)
class EndpointConfig:
    """A snapshot of one `ModelEndpoint` row (the pool never touches the ORM on a request)."""

    id: int
    name: str
    kind: str
    base_url: str
    model: str
    weight: int = 1
    max_concurrency: int = 32
    connect_timeout: float = 2.0
    request_timeout: float = 60.0
    api_key: str = ""
    healthy: bool = True
    queue_waiting: int = 0


class Breaker:
    """Per-endpoint circuit breaker. `failures` consecutive failures open it; after `cooldown`
    seconds one trial request is let through (half-open): success closes it, failure opens it
    again for another cooldown."""

    CLOSED, HALF_OPEN, OPEN = 0, 1, 2

    def __init__(self, failures: int = 3, cooldown: float = 5.0) -> None:
        self.threshold = failures
        self.cooldown = cooldown
        self.state = self.CLOSED
        self.consecutive = 0
        self.opened_at = 0.0
        self.trial_running = False

    def allows(self, now: float) -> bool:
        if self.state == self.CLOSED:
            return True
        if self.state == self.OPEN and now - self.opened_at >= self.cooldown:
            self.state = self.HALF_OPEN
            self.trial_running = False
        return self.state == self.HALF_OPEN and not self.trial_running

    def on_start(self) -> None:
        if self.state == self.HALF_OPEN:
            self.trial_running = True

    def on_success(self) -> None:
        self.state, self.consecutive, self.trial_running = self.CLOSED, 0, False

    def on_failure(self, now: float) -> None:
        self.consecutive += 1
        self.trial_running = False
        if self.state == self.HALF_OPEN or self.consecutive >= self.threshold:
            self.state, self.opened_at = self.OPEN, now

    def on_neutral(self) -> None:
        """A request that ended without telling anything (cancelled): free the trial slot."""
        self.trial_running = False


@dataclass
class EndpointState:
    config: EndpointConfig
    breaker: Breaker
    outstanding: int = 0
    client: openai.OpenAI | None = None

    def openai_client(self) -> openai.OpenAI:
        if self.client is None:
            config = self.config
            self.client = openai.OpenAI(
                base_url=config.base_url,
                api_key=config.api_key or "none",
                max_retries=0,  # the pool retries, on another endpoint
                http_client=httpx2.Client(
                    limits=httpx2.Limits(
                        max_connections=config.max_concurrency,
                        max_keepalive_connections=config.max_concurrency,
                    ),
                ),
            )
        return self.client


@dataclass
class ChatResult:
    text: str
    endpoint: str
    model: str
    input_tokens: int | None
    output_tokens: int | None
    ttft_ms: float | None
    latency_ms: float
    attempts: int
    errors: list[str] = field(default_factory=list)


# Called with each new piece of text; returning False stops the stream (the caller saw
# something it will not send, e.g. an unsupported fact).
DeltaCallback = Callable[[str], bool | None]


class StreamStopped(Exception):
    """The caller's callback stopped the stream; not the endpoint's fault."""


def _endpoint_failure(exc: Exception, *, produced_tokens: bool) -> EndpointFailed:
    """What an error of the `openai` client (or of the stream under it) means for the pool."""
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        return EndpointFailed(
            f"HTTP {status}",
            reason=f"status_{status}" if status in (429, 503) else f"status_{status // 100}xx",
            retryable=status == 429 or status >= 500,
            produced_tokens=produced_tokens,
        )
    if isinstance(exc, openai.APITimeoutError):
        return EndpointFailed(
            "timed out", reason="timeout", retryable=True, produced_tokens=produced_tokens
        )
    if isinstance(exc, openai.APIConnectionError):
        return EndpointFailed(
            f"connection failed: {exc.__cause__ or exc}",
            reason="connect",
            retryable=True,
            produced_tokens=produced_tokens,
        )
    # Raised while iterating: the server closed or broke the stream.
    return EndpointFailed(
        f"stream broken: {type(exc).__name__}: {exc}",
        reason="timeout" if isinstance(exc, httpx2.TimeoutException) else "stream_broken",
        retryable=True,
        produced_tokens=produced_tokens,
    )


class Pool:
    """Routes requests over the endpoints that `loader` returns (refreshed every
    `refresh_seconds`). Thread-safe: chat threads share one pool per process."""

    def __init__(
        self,
        loader: Callable[[], Iterable[EndpointConfig]],
        *,
        refresh_seconds: float = 5.0,
        breaker_failures: int = 3,
        breaker_cooldown: float = 5.0,
    ) -> None:
        self._loader = loader
        self._refresh_seconds = refresh_seconds
        self._breaker_args = (breaker_failures, breaker_cooldown)
        self._lock = threading.Lock()
        self._states: dict[int, EndpointState] = {}
        self._loaded_at = -1e9

    # Endpoints -------------------------------------------------------------------------------

    def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._loaded_at < self._refresh_seconds:
            return
        configs = {c.id: c for c in self._loader()}
        with self._lock:
            self._loaded_at = now
            for endpoint_id in list(self._states):
                if endpoint_id not in configs:
                    del self._states[endpoint_id]
            for endpoint_id, config in configs.items():
                state = self._states.get(endpoint_id)
                if state is None:
                    self._states[endpoint_id] = EndpointState(config, Breaker(*self._breaker_args))
                elif state.config != config:
                    connection = (config.base_url, config.api_key, config.max_concurrency)
                    before = (
                        state.config.base_url,
                        state.config.api_key,
                        state.config.max_concurrency,
                    )
                    state.config = config
                    if connection != before:
                        state.client = None
                metrics.HEALTHY.labels(config.name).set(1 if config.healthy else 0)

    def has_endpoints(self, kind: str) -> bool:
        self.refresh()
        return any(s.config.kind == kind for s in self._states.values())

    def snapshot(self) -> list[dict[str, Any]]:
        """Per-endpoint state of this process, for staff pages and the benchmark."""
        with self._lock:
            return [
                {
                    "name": s.config.name,
                    "kind": s.config.kind,
                    "healthy": s.config.healthy,
                    "outstanding": s.outstanding,
                    "breaker": ("closed", "half_open", "open")[s.breaker.state],
                }
                for s in self._states.values()
            ]

    def _acquire(self, kind: str, exclude: set[int]) -> EndpointState | None:
        now = time.monotonic()
        with self._lock:
            best: list[EndpointState] = []
            best_load = float("inf")
            for state in self._states.values():
                config = state.config
                if (
                    config.kind != kind
                    or config.id in exclude
                    or not config.healthy
                    or state.outstanding >= config.max_concurrency
                    or not state.breaker.allows(now)
                ):
                    continue
                load = (state.outstanding + config.queue_waiting + 1) / config.weight
                if load < best_load:
                    best, best_load = [state], load
                elif load == best_load:
                    best.append(state)
            if not best:
                return None
            # Spreading ties, not security: the standard generator is right here.
            chosen = random.choice(best) if len(best) > 1 else best[0]  # noqa: S311
            chosen.outstanding += 1
            chosen.breaker.on_start()
            metrics.OUTSTANDING.labels(chosen.config.name).set(chosen.outstanding)
            return chosen

    def _release(self, state: EndpointState, outcome: str) -> None:
        now = time.monotonic()
        with self._lock:
            state.outstanding -= 1
            if outcome in ("ok", "rejected"):
                state.breaker.on_success()
            elif outcome == "error":
                state.breaker.on_failure(now)
            else:
                state.breaker.on_neutral()
            metrics.OUTSTANDING.labels(state.config.name).set(state.outstanding)
            metrics.BREAKER.labels(state.config.name).set(state.breaker.state)
        metrics.REQUESTS.labels(state.config.name, state.config.kind, outcome).inc()

    # Requests --------------------------------------------------------------------------------

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        first_token_deadline: float,
        max_tokens: int = 400,
        temperature: float = 0.2,
        on_delta: DeltaCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> ChatResult:
        """Stream a chat completion. `first_token_deadline` is a `time.monotonic()` instant by
        which the first token must have arrived (retries included); after that the endpoint's
        request timeout bounds the rest. Raises a PoolError when no endpoint answered."""
        started = time.monotonic()

        def attempt(state: EndpointState, remaining: float) -> ChatResult:
            return self._stream(
                state, messages, remaining, max_tokens, temperature, on_delta, cancel
            )

        result, tries, errors = self._route("chat", first_token_deadline, attempt, cancel)
        result.attempts = tries
        result.errors = errors
        result.latency_ms = (time.monotonic() - started) * 1000
        return result

    def _route(
        self,
        kind: str,
        deadline: float,
        attempt: Callable[[EndpointState, float], Any],
        cancel: threading.Event | None = None,
    ) -> tuple[Any, int, list[str]]:
        """Run `attempt(endpoint, seconds left)` on the best endpoint of `kind`; when it fails
        before producing anything and another endpoint may do better, once more on another one
        before `deadline`. Returns the result, the endpoints tried and their errors."""
        self.refresh()
        tried: set[int] = set()
        errors: list[str] = []
        last_error: EndpointFailed | None = None
        while True:
            if cancel is not None and cancel.is_set():
                raise Cancelled("the customer left")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceeded("; ".join(errors) or "deadline passed before a request")
            state = self._acquire(kind, tried)
            if state is None:
                if last_error is not None:  # nowhere else to retry: the failure stands
                    raise last_error
                raise NoEndpointAvailable(f"no healthy {kind} endpoint with free capacity")
            tried.add(state.config.id)
            if len(tried) > 1:
                metrics.RETRIES.labels(kind).inc()
            try:
                result = attempt(state, remaining)
            except EndpointFailed as exc:
                # A 4xx other than 429 is the request's fault, not the server's: no breaker.
                self._release(state, "rejected" if exc.reason == "status_4xx" else "error")
                metrics.ERRORS.labels(state.config.name, kind, exc.reason).inc()
                errors.append(f"{state.config.name}: {exc}")
                logger.warning("%s request to %s failed: %s", kind, state.config.name, exc)
                if exc.produced_tokens or not exc.retryable or len(tried) >= 2:
                    raise
                last_error = exc
                continue
            except (Cancelled, StreamStopped):
                self._release(state, "cancelled")
                raise
            self._release(state, "ok")
            return result, len(tried), errors

    def _stream(
        self,
        state: EndpointState,
        messages: list[dict[str, str]],
        first_token_timeout: float,
        max_tokens: int,
        temperature: float,
        on_delta: DeltaCallback | None,
        cancel: threading.Event | None,
    ) -> ChatResult:
        config = state.config
        started = time.monotonic()
        # Until the first token the caller's deadline bounds every wait; the read timeout then
        # guards against a stream that stalls.
        timeout = httpx2.Timeout(
            min(config.request_timeout, first_token_timeout),
            connect=min(config.connect_timeout, first_token_timeout),
        )
        parts: list[str] = []
        ttft: float | None = None
        usage: Any = None
        try:
            stream = state.openai_client().chat.completions.create(
                model=config.model,
                messages=cast(Any, messages),
                max_tokens=max_tokens,
                temperature=temperature,
                stream=True,
                stream_options={"include_usage": True},
                timeout=timeout,
            )
            try:
                for chunk in stream:
                    if chunk.usage is not None:
                        usage = chunk.usage
                    if not chunk.choices:
                        continue
                    piece = chunk.choices[0].delta.content or ""
                    if not piece:
                        continue
                    if ttft is None:
                        ttft = time.monotonic() - started
                        metrics.TTFT.labels(config.name).observe(ttft)
                    parts.append(piece)
                    if cancel is not None and cancel.is_set():
                        raise Cancelled("the customer left")
                    if time.monotonic() - started > config.request_timeout:
                        raise EndpointFailed(
                            "answer took longer than the request timeout",
                            reason="timeout",
                            retryable=False,
                            produced_tokens=True,
                        )
                    if on_delta is not None and on_delta(piece) is False:
                        raise StreamStopped()
            finally:
                stream.close()
        except (openai.APIError, httpx2.HTTPError) as exc:
            raise _endpoint_failure(exc, produced_tokens=bool(parts)) from exc
        elapsed = time.monotonic() - started
        metrics.LATENCY.labels(config.name, "chat").observe(elapsed)
        input_tokens = getattr(usage, "prompt_tokens", None)
        output_tokens = getattr(usage, "completion_tokens", None)
        if input_tokens is not None:
            metrics.TOKENS.labels(config.name, "input").inc(input_tokens)
        if output_tokens is not None:
            metrics.TOKENS.labels(config.name, "output").inc(output_tokens)
        return ChatResult(
            text="".join(parts),
            endpoint=config.name,
            model=config.model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            ttft_ms=ttft * 1000 if ttft is not None else None,
            latency_ms=elapsed * 1000,
            attempts=1,
        )

    def embed(self, texts: list[str], *, input_type: str = "query", deadline: float) -> Any:
        """Embeddings from the pool's embedding endpoints (same routing, breaker and retry)."""

        def attempt(state: EndpointState, remaining: float) -> list[Any]:
            config = state.config
            started = time.monotonic()
            try:
                response = state.openai_client().embeddings.create(
                    model=config.model,
                    input=texts,
                    encoding_format="float",
                    extra_body={"input_type": input_type},
                    timeout=httpx2.Timeout(
                        min(config.request_timeout, remaining),
                        connect=min(config.connect_timeout, remaining),
                    ),
                )
            except (openai.APIError, httpx2.HTTPError) as exc:
                raise _endpoint_failure(exc, produced_tokens=False) from exc
            metrics.LATENCY.labels(config.name, "embedding").observe(time.monotonic() - started)
            return [item.embedding for item in sorted(response.data, key=lambda d: d.index)]

        return self._route("embedding", deadline, attempt)[0]
