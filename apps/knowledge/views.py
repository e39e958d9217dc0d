"""Public pages of the knowledge base: the help article that a bot answer cites as its source."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _

from apps.knowledge import selectors
from apps.knowledge.admin import render_markdown


def article_page(request: HttpRequest, pk: int) -> HttpResponse:
    """A published article inside its validity window; anything else is a 404, so a customer
    never reads a draft, an archived answer or one that has expired."""
    article = selectors.article_visible_get(pk)
    if article is None:
        raise Http404(_("No such help article."))
    # render_markdown escapes raw HTML through bleach's allow-list (the admin preview uses it).
    body = mark_safe(render_markdown(article.body or ""))  # noqa: S308 (bleach-cleaned)
    # The article keeps its own language tag (BCP 47), whatever the page's UI language is.
    article_lang = "zh-Hans" if article.language == "zh" else article.language
    return render(
        request,
        "knowledge/article_page.html",
        {"article": article, "body": body, "article_lang": article_lang},
    )
