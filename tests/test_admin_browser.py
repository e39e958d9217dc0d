"""The article admin in a real browser: the Markdown preview follows the body as staff type it.
Run: `.venv/bin/pytest tests/test_admin_browser.py` (needs Debian's chromium).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def article_page(transactional_db: Any, django_user_model: Any) -> str:
    """An article's change page path and an editor who may open it (made before the browser:
    the ORM cannot be used while Playwright runs)."""
    from apps.knowledge import services
    from apps.knowledge.models import KnowledgeBase

    django_user_model.objects.create_superuser("editor", "editor@example.com", "pw-editor")
    kb = KnowledgeBase.objects.create(name="Help", languages=["en"])
    article = services.article_create(
        knowledge_base=kb,
        language="en",
        title="How fast is delivery?",
        body="Parcels arrive in two days.",
        queue=False,
    )
    return f"/admin/knowledge/article/{article.pk}/change/"


def test_the_preview_follows_the_body_as_it_is_typed(
    article_page: str, asgi_server: LiveServer, browser: Any
) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(locale="en-US")
    page.goto(f"{asgi_server.url}/admin/login/?next={article_page}")
    page.get_by_label("Username").fill("editor")
    page.get_by_label("Password").fill("pw-editor")
    page.get_by_role("button", name="Log in").click()
    preview = page.locator(".field-body_preview .readonly")
    expect(preview).to_contain_text("Parcels arrive in two days.")

    page.locator("#id_body").fill(
        "## Delivery times\n\nParcels arrive in **one** day.\n\n<img src=x onerror=alert(1)>"
    )
    expect(preview.locator("h2")).to_have_text("Delivery times")
    expect(preview.locator("strong")).to_have_text("one")
    expect(preview.locator("img")).to_have_count(0)
    # Nothing was saved: the preview is only a preview.
    page.reload()
    expect(preview).to_contain_text("Parcels arrive in two days.")
    expect(preview.locator("h2")).to_have_count(0)
