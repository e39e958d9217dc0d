"""Reads of the model pool: the process-wide pool, endpoint snapshots, the prompt in force."""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.conf import settings
from django.db.models import Q

from apps.core.crypto import DecryptionError
from apps.inference.models import ModelEndpoint, PromptConfig
from apps.inference.pool import EndpointConfig, Pool

logger = logging.getLogger(__name__)


def endpoint_configs() -> list[EndpointConfig]:
    """Enabled endpoints as the pool sees them (unhealthy ones included, marked)."""
    configs = []
    for endpoint in ModelEndpoint.objects.filter(enabled=True):
        try:
            api_key = endpoint.api_key
        except DecryptionError as exc:
            logger.error("endpoint %s left out: %s", endpoint.name, exc)
            continue
        configs.append(
            EndpointConfig(
                id=endpoint.pk,
                name=endpoint.name,
                kind=endpoint.kind,
                base_url=endpoint.base_url,
                model=endpoint.model,
                weight=endpoint.weight,
                max_concurrency=endpoint.max_concurrency,
                connect_timeout=endpoint.connect_timeout,
                request_timeout=endpoint.request_timeout,
                api_key=api_key,
                healthy=endpoint.healthy,
                queue_waiting=endpoint.queue_waiting or 0,
            )
        )
    return configs


_pool: Pool | None = None
_pool_lock = threading.Lock()


def pool() -> Pool:
    """This process's pool over the endpoints in the database."""
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                conf = settings.INFERENCE
                _pool = Pool(
                    endpoint_configs,
                    refresh_seconds=conf["REFRESH_SECONDS"],
                    breaker_failures=conf["BREAKER_FAILURES"],
                    breaker_cooldown=conf["BREAKER_COOLDOWN_SECONDS"],
                )
    return _pool


def pool_reset() -> None:
    """Forget the pool's state (tests; endpoints changed in this process)."""
    global _pool
    with _pool_lock:
        _pool = None


def prompt_config_for(knowledge_base: Any) -> PromptConfig:
    """The knowledge base's own prompt, else the default one, else the built-in defaults."""
    kb_id = getattr(knowledge_base, "pk", knowledge_base)
    configs = {
        c.knowledge_base_id: c
        for c in PromptConfig.objects.filter(Q(knowledge_base_id=kb_id) | Q(knowledge_base=None))
    }
    return configs.get(kb_id) or configs.get(None) or PromptConfig()
