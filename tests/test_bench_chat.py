"""`manage.py bench chat` end to end against the live server: real sockets, and every message
accounted for (sent, stored, answered, classified by what the server recorded)."""

from __future__ import annotations

import io
import json
from typing import Any

from django.core.management import call_command


def test_bench_chat_counts_every_message_and_cleans_up(asgi_server: Any) -> None:
    from apps.conversations.models import Customer, Message
    from apps.conversations.tests.conftest import chat_fixtures

    kb = chat_fixtures()
    customers_before = Customer.objects.count()
    out = io.StringIO()
    call_command(
        "bench",
        "chat",
        "--url",
        asgi_server.url.replace("http", "ws", 1),
        "--kb",
        str(kb.pk),
        "--sessions",
        "4",
        "--messages",
        "3",
        "--think-ms",
        "0",
        "--seed",
        "3",
        stdout=out,
    )
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    assert result["messages_planned"] == 12
    assert result["sent"] + result["not_sent_after_handoff"] == 12
    assert result["lost"] == 0 and result["errors"] == 0
    assert result["sent"] == result["acked"] == result["stored"] == result["answered"] > 0
    classes = ("cached", "semantic", "uncached", "form", "handoff")
    assert sum(result[kind]["n"] for kind in classes) == result["answered"]
    assert result["answers_per_s"] > 0 and result["stored_p50_ms"] is not None
    # Its customers, conversations and messages are gone afterwards.
    assert Customer.objects.count() == customers_before
    assert not Message.objects.exists()
