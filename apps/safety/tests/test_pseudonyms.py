"""Customers' channel ids are stored only as keyed pseudonyms, recognised again, and the key
rotates without losing anyone."""

from __future__ import annotations

from typing import Any

import pytest

from apps.conversations import services
from apps.conversations.models import Customer
from apps.safety.pseudonyms import pseudonym, pseudonym_candidates


def test_pseudonyms_are_keyed_stable_and_normalised(settings: Any) -> None:
    settings.PSEUDONYM_KEY = "key-one-" + "x" * 30
    first = pseudonym("user-42@example.com")
    assert first == pseudonym(" USER-42@example.com ") == pseudonym("ｕｓｅｒ-42@example.com")
    assert "user-42" not in first and first != pseudonym("user-43@example.com")
    settings.PSEUDONYM_KEY = "key-two-" + "y" * 30
    assert pseudonym("user-42@example.com") != first  # another key, another pseudonym


@pytest.mark.django_db
def test_the_same_app_user_is_the_same_customer_and_the_id_is_never_stored(
    chat_kb: Any, settings: Any
) -> None:
    settings.PSEUDONYM_KEY = "old-key-" + "a" * 30
    first = services.conversation_start(
        knowledge_base=chat_kb, channel="api", external_id="app-user-7"
    )
    again = services.conversation_start(
        knowledge_base=chat_kb, channel="api", external_id="app-user-7"
    )
    other = services.conversation_start(
        knowledge_base=chat_kb, channel="api", external_id="app-user-8"
    )
    assert first.customer_id == again.customer_id != other.customer_id
    assert not Customer.objects.filter(external_id__contains="app-user").exists()

    # Rotation: a new key first, the old one still listed. Known customers are still found;
    # new ones get the new key's pseudonym.
    settings.PSEUDONYM_KEY = f"new-key-{'b' * 30},old-key-{'a' * 30}"
    assert len(pseudonym_candidates("app-user-7")) == 2
    rotated = services.conversation_start(
        knowledge_base=chat_kb, channel="api", external_id="app-user-7"
    )
    assert rotated.customer_id == first.customer_id
    newcomer = services.conversation_start(
        knowledge_base=chat_kb, channel="api", external_id="app-user-9"
    )
    assert newcomer.customer.external_id == pseudonym("app-user-9")
    assert newcomer.customer.external_id.split(":")[0] != first.customer.external_id.split(":")[0]
    # The same id on another channel is another customer.
    web = services.conversation_start(
        knowledge_base=chat_kb, channel="web", external_id="app-user-7"
    )
    assert web.customer_id != first.customer_id
