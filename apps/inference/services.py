"""Every write on the model pool: endpoints (with their encrypted keys), health, prompts."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import httpx
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.core import crypto
from apps.core.exceptions import ServiceError
from apps.inference import metrics
from apps.inference.models import EndpointKind, ModelEndpoint, PromptConfig

logger = logging.getLogger(__name__)

ENDPOINT_FIELDS = (
    "kind",
    "base_url",
    "model",
    "weight",
    "max_concurrency",
    "connect_timeout",
    "request_timeout",
    "enabled",
)


def endpoint_save(
    endpoint: ModelEndpoint | None = None, *, api_key: str | None = None, **fields: Any
) -> ModelEndpoint:
    """Create or change an endpoint. `api_key` None keeps the stored key, "" removes it; the
    key is stored encrypted and never shown again."""
    endpoint = endpoint or ModelEndpoint()
    for name, value in fields.items():
        if name not in (*ENDPOINT_FIELDS, "name"):
            raise ServiceError(_("Unknown endpoint field: %(name)s") % {"name": name})
        setattr(endpoint, name, value)
    if api_key is not None:
        endpoint.api_key_encrypted = crypto.encrypt(api_key)
    endpoint.full_clean()
    endpoint.save()
    return endpoint


def endpoints_sync(entries: list[dict[str, Any]], *, api_key: str | None = None) -> list[str]:
    """Upsert endpoints by name from a list of dicts (the INFERENCE_ENDPOINTS setting of a
    deployment); endpoints not listed are left alone. Returns the names written."""
    names = []
    with transaction.atomic():
        for entry in entries:
            if not isinstance(entry, dict) or not entry.get("name") or not entry.get("base_url"):
                raise ServiceError(_("Each endpoint needs at least a name and a base_url."))
            entry = dict(entry)
            name = entry.pop("name")
            entry.setdefault("kind", EndpointKind.CHAT)
            if "timeout" in entry:
                entry["request_timeout"] = entry.pop("timeout")
            existing = ModelEndpoint.objects.filter(name=name).first()
            try:
                endpoint_save(existing, name=name, api_key=api_key, **entry)
            except ValidationError as exc:
                raise ServiceError(f"endpoint {name}: {'; '.join(exc.messages)}") from None
            names.append(name)
    return names


def endpoints_sync_from_env() -> list[str]:
    raw = settings.INFERENCE["ENDPOINTS"]
    if not raw:
        return []
    try:
        entries = json.loads(raw)
    except ValueError as exc:
        raise ServiceError(f"INFERENCE_ENDPOINTS is not valid JSON: {exc}") from None
    if not isinstance(entries, list):
        raise ServiceError("INFERENCE_ENDPOINTS must be a JSON list of endpoints.")
    return endpoints_sync(entries, api_key=settings.INFERENCE["API_KEY"] or None)


_WAITING_RE = re.compile(r"^vllm:num_requests_waiting(?:\{[^}]*\})?\s+([0-9.eE+]+)", re.M)


def endpoint_probe(endpoint: ModelEndpoint, timeout: float = 3.0) -> tuple[bool, str, int | None]:
    """Ask a server whether it can answer: /health (when it has one), /v1/models (must list
    the endpoint's model), and vLLM's queue length from /metrics when present."""
    headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key_encrypted else {}
    root = endpoint.root_url
    with httpx.Client(timeout=timeout, headers=headers) as client:
        try:
            health = client.get(f"{root}/health")
            if health.status_code != 404 and health.status_code >= 300:
                return False, f"/health answered {health.status_code}", None
            models = client.get(f"{endpoint.base_url.rstrip('/')}/models")
            if models.status_code != 200:
                return False, f"/v1/models answered {models.status_code}", None
            served = {
                str(m.get("id")) for m in models.json().get("data", []) if isinstance(m, dict)
            }
            if endpoint.model not in served:
                return False, f"model {endpoint.model!r} not served (serves {sorted(served)})", None
            waiting = None
            try:
                scraped = client.get(f"{root}/metrics")
                if scraped.status_code == 200:
                    values = [float(v) for v in _WAITING_RE.findall(scraped.text)]
                    waiting = int(sum(values)) if values else None
            except httpx.HTTPError:
                pass  # metrics are optional
            return True, "", waiting
        except (httpx.HTTPError, ValueError) as exc:
            return False, f"{type(exc).__name__}: {exc}", None


def endpoint_health_record(
    endpoint: ModelEndpoint, *, healthy: bool, error: str = "", queue_waiting: int | None = None
) -> ModelEndpoint:
    if endpoint.healthy != healthy:
        logger.warning(
            "model endpoint %s is now %s%s",
            endpoint.name,
            "healthy" if healthy else "unhealthy",
            f": {error}" if error else "",
        )
    endpoint.healthy = healthy
    endpoint.health_error = error[:2000]
    endpoint.queue_waiting = queue_waiting
    endpoint.health_checked_at = timezone.now()
    endpoint.save(
        update_fields=[
            "healthy",
            "health_error",
            "queue_waiting",
            "health_checked_at",
            "updated_at",
        ]
    )
    metrics.HEALTHY.labels(endpoint.name).set(1 if healthy else 0)
    return endpoint


def endpoints_health_check() -> dict[str, bool]:
    """Probe every enabled endpoint and record the result (the Celery beat task calls this)."""
    results = {}
    for endpoint in ModelEndpoint.objects.filter(enabled=True):
        healthy, error, waiting = endpoint_probe(endpoint)
        endpoint_health_record(endpoint, healthy=healthy, error=error, queue_waiting=waiting)
        results[endpoint.name] = healthy
    return results


def prompt_config_save(config: PromptConfig, **fields: Any) -> PromptConfig:
    """Save a prompt as its next version (the history keeps every earlier one)."""
    for name, value in fields.items():
        setattr(config, name, value)
    config.full_clean()
    with transaction.atomic():
        if config.pk:
            current = PromptConfig.objects.select_for_update().get(pk=config.pk)
            config.version = current.version + 1
        config.save()
    return config
