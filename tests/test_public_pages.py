"""The public pages: the demo store that embeds the widget, and the help article a bot answer
cites as its source."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from apps.knowledge import services
from apps.knowledge.models import Article, KnowledgeBase

pytestmark = pytest.mark.django_db


@pytest.fixture
def help_centre() -> KnowledgeBase:
    return services.knowledge_base_create(name="Help centre", languages=["zh", "en"])


def make_article(kb: KnowledgeBase, **fields: Any) -> Article:
    values: dict[str, Any] = {
        "title": "退货运费谁承担？",
        "language": "zh",
        "body": "**质量问题**由流明商城承担运费。\n\n<script>alert('x')</script>",
        "status": "published",
        **fields,
    }
    # No embedding job: the page shows the article, search does not matter here.
    return services.article_create(knowledge_base=kb, queue=False, **values)


def test_published_article_is_shown_with_markdown_rendered_and_html_escaped(
    client: Client, help_centre: KnowledgeBase
) -> None:
    article = make_article(help_centre)

    response = client.get(f"/help/articles/{article.pk}/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "<h1>退货运费谁承担？</h1>" in html
    assert "<strong>质量问题</strong>由流明商城承担运费" in html
    assert "<script>alert" not in html
    assert 'lang="zh-Hans"' in html


@pytest.mark.parametrize(
    "fields",
    [
        {"status": "draft"},
        {"status": "archived"},
        {"valid_until": timezone.now() - timedelta(days=1)},
        {"valid_from": timezone.now() + timedelta(days=1)},
    ],
    ids=["draft", "archived", "expired", "not-yet-valid"],
)
def test_article_not_visible_to_customers_is_404(
    client: Client, help_centre: KnowledgeBase, fields: dict[str, Any]
) -> None:
    article = make_article(help_centre, **fields)

    assert client.get(f"/help/articles/{article.pk}/").status_code == 404


def test_unknown_article_is_404(client: Client) -> None:
    assert client.get("/help/articles/987654/").status_code == 404


def test_demo_page_embeds_the_widget_on_the_demo_knowledge_base(client: Client) -> None:
    services.knowledge_base_create(name="Another help centre", languages=["en"])
    demo = services.knowledge_base_create(name=services.DEMO_KB_NAME, languages=["zh", "en"])

    response = client.get("/")

    assert response.status_code == 200
    html = response.content.decode()
    assert f'<script src="/static/widget.js" data-kb="{demo.pk}"' in html
    assert "How do I return an item?" in html
    assert 'href="/admin/"' in html
    assert "load_demo" not in html


def test_demo_page_without_the_demo_knowledge_base_says_how_to_load_it(client: Client) -> None:
    response = client.get("/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "python manage.py load_demo" in html
    assert "widget.js" not in html


def test_demo_page_follows_the_chosen_language(client: Client) -> None:
    response = client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/"})
    assert response.status_code == 302

    html = client.get("/").content.decode()

    assert '<html lang="zh-hans">' in html
    assert 'value="zh-hans" lang="zh-hans" aria-current="true"' in html
