"""The demo store page: a web page that embeds the chat widget, as a customer's site would."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.knowledge import selectors as knowledge_selectors


def demo_page(request: HttpRequest) -> HttpResponse:
    """Lumen Mall's home page with the widget on the demo knowledge base; when that is not
    loaded yet the page says how to load it instead of embedding a widget that cannot answer."""
    demo_kb = knowledge_selectors.demo_knowledge_base_get()
    return render(request, "demo/index.html", {"demo_kb_id": demo_kb.pk if demo_kb else None})
