"""Prometheus metrics of the model pool, per endpoint (served at /metrics by django-prometheus).

Each server process keeps its own counters (as the pool keeps its own outstanding counts); run
one process per container, or scrape each process.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "inference_requests_total",
    "Requests sent to model endpoints, by outcome (ok, error, cancelled).",
    ["endpoint", "kind", "outcome"],
)
ERRORS = Counter(
    "inference_errors_total",
    "Failed requests to model endpoints, by reason (connect, timeout, status_5xx, status_429, "
    "stream_broken, ...).",
    ["endpoint", "kind", "reason"],
)
LATENCY = Histogram(
    "inference_request_seconds",
    "Whole request time per endpoint.",
    ["endpoint", "kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
)
TTFT = Histogram(
    "inference_time_to_first_token_seconds",
    "Time to the first streamed token per endpoint.",
    ["endpoint"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8),
)
TOKENS = Counter(
    "inference_tokens_total", "Tokens in prompts and answers.", ["endpoint", "direction"]
)
OUTSTANDING = Gauge(
    "inference_outstanding_requests", "Requests in flight from this process.", ["endpoint"]
)
BREAKER = Gauge(
    "inference_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open.", ["endpoint"]
)
HEALTHY = Gauge("inference_endpoint_healthy", "1 when the last health check passed.", ["endpoint"])
RETRIES = Counter("inference_retries_total", "Requests retried on another endpoint.", ["kind"])
FALLBACKS = Counter(
    "inference_fallbacks_total",
    "Answers sent extractive instead of generated, by reason (unavailable, timeout, "
    "ungrounded, cancelled).",
    ["reason"],
)
