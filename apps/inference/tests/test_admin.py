"""Staff pages of the model pool, the encrypted API key, and the /metrics endpoint."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.test import Client
from django.urls import reverse

from apps.core import crypto
from apps.inference.models import ModelEndpoint, PromptConfig

pytestmark = pytest.mark.django_db


def test_endpoint_api_key_is_write_only_and_encrypted(admin_client: Client) -> None:
    add = reverse("admin:inference_modelendpoint_add")
    form = {
        "name": "vllm-0",
        "kind": "chat",
        "base_url": "http://vllm-0:8000/v1",
        "model": "qwen",
        "weight": 2,
        "max_concurrency": 16,
        "connect_timeout": 2,
        "request_timeout": 60,
        "enabled": "on",
        "api_key": "sk-very-secret",
    }
    response = admin_client.post(add, form)
    assert response.status_code == 302, response.content[:2000]
    endpoint = ModelEndpoint.objects.get()
    assert endpoint.api_key == "sk-very-secret"
    assert "sk-very-secret" not in endpoint.api_key_encrypted
    change = reverse("admin:inference_modelendpoint_change", args=[endpoint.pk])
    page = admin_client.get(change).content.decode()
    assert "sk-very-secret" not in page and endpoint.api_key_encrypted not in page

    # Saving without a key keeps it; "remove" drops it.
    admin_client.post(change, {**form, "api_key": "", "weight": 3})
    endpoint.refresh_from_db()
    assert endpoint.weight == 3 and endpoint.api_key == "sk-very-secret"
    admin_client.post(change, {**form, "api_key": "", "remove_api_key": "on"})
    endpoint.refresh_from_db()
    assert endpoint.api_key_encrypted == "" and endpoint.api_key == ""

    bad = admin_client.post(add, {**form, "name": "x", "base_url": "ftp://nope"})
    assert bad.status_code == 200 and "http://" in bad.content.decode()
    assert admin_client.get(reverse("admin:inference_modelendpoint_changelist")).status_code == 200


def test_prompt_edits_are_versioned_with_history(admin_client: Client) -> None:
    add = reverse("admin:inference_promptconfig_add")
    form = {
        "generation_enabled": "on",
        "system_prompt": "",
        "instructions": "Be brief.",
        "grounding_threshold": 0.6,
        "max_output_tokens": 400,
        "temperature": 0.2,
        "first_token_deadline": 6,
    }
    assert admin_client.post(add, form).status_code == 302
    config = PromptConfig.objects.get()
    change = reverse("admin:inference_promptconfig_change", args=[config.pk])
    assert admin_client.post(change, {**form, "instructions": "Be kind."}).status_code == 302
    config.refresh_from_db()
    assert config.version == 2 and config.history.count() == 2
    history = reverse("admin:inference_promptconfig_history", args=[config.pk])
    assert "Be kind." in admin_client.get(history).content.decode() or (
        admin_client.get(history).status_code == 200
    )


def test_key_rotation_keeps_old_values_readable(settings: Any) -> None:
    old = Fernet.generate_key().decode()
    settings.DATA_ENCRYPTION_KEY = old
    token = crypto.encrypt("sk-1")
    settings.DATA_ENCRYPTION_KEY = f"a new long passphrase for the next key,{old}"
    assert crypto.decrypt(token) == "sk-1"
    settings.DATA_ENCRYPTION_KEY = "an unrelated key"
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(token)


def test_metrics_are_served_to_the_private_network_only(client: Client) -> None:
    response = client.get("/metrics", REMOTE_ADDR="10.1.2.3")
    assert response.status_code == 200
    body = response.content.decode()
    assert "inference_breaker_state" in body and "inference_fallbacks_total" in body
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403
