from __future__ import annotations

import json

import pytest
from django.test import override_settings
from django.utils import timezone, translation

from apps.knowledge import selectors, services
from apps.knowledge.importing import ImportFileError, parse_files
from apps.knowledge.models import Article, Chunk
from tests.support.translations import write_catalog

pytestmark = pytest.mark.django_db

GOOD_CSV = (
    "external_id,language,kind,category,title,body,questions,tags,status,valid_from,valid_until\n"
    "gift-card,en,faq,Payment / Gift cards,Can I pay with a gift card?,"
    "Yes: enter the card number at checkout.,Do you take gift cards? | gift card payment,"
    "payment,published,,\n"
    "礼品卡,zh,faq,支付 / 礼品卡,可以用礼品卡付款吗？,可以，结算时输入卡号即可。,礼品卡能用吗,支付,"
    "published,2026-01-01,\n"
)


def do_import(kb, run_on_commit, files, **kwargs):
    return run_on_commit(services.articles_import, kb, parse_files(files), **kwargs)


def test_csv_import_creates_embedded_articles_with_categories(kb, run_on_commit):
    report = do_import(kb, run_on_commit, [("kb.csv", GOOD_CSV.encode())])
    assert (report.created, report.updated) == (2, 0)
    english = kb.articles.get(external_id="gift-card")
    assert english.questions == ["Do you take gift cards?", "gift card payment"]
    assert str(english.category) == "Payment / Gift cards"
    assert english.embedding_status == "ready"
    chinese = kb.articles.get(language="zh")
    assert timezone.localtime(chinese.valid_from).date().isoformat() == "2026-01-01"
    assert selectors.search(kb, "礼品卡付款").top.article_id == chinese.pk


def test_importing_the_same_file_twice_changes_nothing(kb, run_on_commit):
    do_import(kb, run_on_commit, [("kb.csv", GOOD_CSV.encode())])
    report = do_import(kb, run_on_commit, [("kb.csv", GOOD_CSV.encode())])
    assert (report.created, report.updated, report.unchanged) == (0, 0, 2)
    assert kb.articles.count() == 2
    assert kb.articles.get(external_id="gift-card").version == 1


def test_changed_row_updates_the_article_and_its_version(kb, run_on_commit):
    do_import(kb, run_on_commit, [("kb.csv", GOOD_CSV.encode())])
    changed = GOOD_CSV.replace("enter the card number at checkout", "use it in the app only")
    report = do_import(kb, run_on_commit, [("kb.csv", changed.encode())])
    assert (report.created, report.updated, report.unchanged) == (0, 1, 1)
    article = kb.articles.get(external_id="gift-card")
    assert article.version == 2 and "in the app only" in article.body


def test_bad_rows_are_all_reported_and_nothing_is_imported(kb, run_on_commit):
    lines = [
        json.dumps({"external_id": "a", "language": "en", "title": "Fine row", "body": "ok"}),
        json.dumps({"external_id": "b", "language": "fr", "title": "French?"}),
        json.dumps({"external_id": "c", "language": "en", "title": ""}),
        "{not json",
        json.dumps(
            {"external_id": "d", "language": "en", "title": "Dates", "valid_from": "2026-13-45"}
        ),
        json.dumps(
            {
                "external_id": "e",
                "language": "en",
                "title": "Backwards",
                "valid_from": "2026-05-01",
                "valid_until": "2026-04-01",
            }
        ),
        json.dumps({"external_id": "a", "language": "en", "title": "Duplicate of line 1"}),
        json.dumps(["a", "list"]),
    ]
    with pytest.raises(services.ImportFailed) as info:
        do_import(kb, run_on_commit, [("kb.jsonl", "\n".join(lines).encode())])
    problems = {e.line: e.message for e in info.value.errors}
    assert set(problems) == {2, 3, 4, 5, 6, 7, 8}
    assert "unknown language 'fr'" in problems[2]
    assert "title is empty" in problems[3]
    assert "not valid JSON" in problems[4]
    assert "not a date" in problems[5]
    assert "after valid_from" in problems[6]
    assert "repeats line 1" in problems[7]
    assert "JSON object" in problems[8]
    assert not Article.objects.filter(knowledge_base=kb).exists()


def test_markdown_files_with_front_matter_and_heading_titles(kb, run_on_commit):
    with_front = (
        b"---\ntitle: Returns guide\nlanguage: en\nstatus: published\ncategory: Returns\n---\n"
        b"## Before you start\nKeep the original box.\n\n## Steps\n1. Open My orders.\n"
    )
    with_heading = "# 退货指南\n\n## 步骤\n打开我的订单，点击申请退货。".encode()
    report = do_import(
        kb,
        run_on_commit,
        [("returns.md", with_front), ("退货.md", with_heading)],
        default_status="published",
    )
    assert report.created == 2
    guide = kb.articles.get(external_id="returns")
    assert guide.kind == "guide" and guide.title == "Returns guide"
    assert str(guide.category) == "Returns"
    zh = kb.articles.get(title="退货指南")
    assert zh.language == "zh" and zh.status == "published"
    headings = list(zh.chunks.filter(kind="body").values_list("heading", flat=True))
    assert headings == ["退货指南 > 步骤"]


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("notes.txt", b"hello", "unsupported file type"),
        ("kb.csv", "title\n".encode("utf-16"), "not UTF-8"),
        ("kb.csv", b"name,body\nx,y\n", "'title'"),
    ],
)
def test_wrong_files_get_a_clear_error(name, data, message):
    with pytest.raises(ImportFileError, match=message):
        parse_files([(name, data)])


def test_empty_file_is_refused(kb, run_on_commit):
    with pytest.raises(services.ImportFailed) as info:
        do_import(kb, run_on_commit, [("kb.jsonl", b"\n\n")])
    assert "no articles" in info.value.errors[0].message


def test_demo_knowledge_base_loads_once_and_answers_both_languages(
    db, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        kb, first = services.demo_knowledge_base_load()
    assert first.created >= 72
    assert set(kb.articles.values_list("language", flat=True)) == {"zh", "en"}
    assert not kb.articles.exclude(embedding_status="ready").exists()
    # A guide cut by older chunking code (its list items ran together) is cut again by a
    # second load; the others are left alone.
    guide = kb.articles.get(external_id="membership-tiers", language="zh")
    old = guide.chunks.get(text__startswith="银卡会员")
    Chunk.objects.filter(pk=old.pk).update(text=old.text.replace("\n", ""))
    assert services.articles_rechunk_needed(kb) == [guide]
    with django_capture_on_commit_callbacks(execute=True):
        _, second = services.demo_knowledge_base_load()
    assert (second.created, second.updated) == (0, 0)
    assert guide.chunks.filter(text__startswith="银卡会员\n每单1.2倍积分").exists()
    assert services.articles_rechunk_needed(kb) == []
    cases = {
        "退款到银行卡要多久": "refund-timing",
        "我忘了登录密码": "reset-password",
        "how long does a refund take to reach my bank card": "refund-timing",
        "I forgot my password": "reset-password",
    }
    for query, key in cases.items():
        assert selectors.search(kb, query).top.article.external_id == key, query
    # The spring sale ran to 31 March 2026 (its last day, in the site's time zone, through
    # midnight): it must never answer.
    spring = kb.articles.filter(external_id="promo-spring-sale-2026")
    assert spring.count() == 2
    assert {timezone.localtime(a.valid_until).isoformat() for a in spring} == {
        "2026-04-01T00:00:00+08:00"
    }
    result = selectors.search(kb, "spring sale discount", top_k=20)
    assert not set(spring.values_list("id", flat=True)) & {s.article_id for s in result.sources}


def test_reimporting_an_export_of_admin_made_articles_updates_them(kb, run_on_commit):
    made = run_on_commit(
        services.article_create,
        knowledge_base=kb,
        language="en",
        title="Where is my parcel?",
        body="Track it under My orders.",
    )
    line = json.dumps(
        {
            "external_id": f"article-{made.pk}",
            "language": "en",
            "title": "Where is my parcel?",
            "body": "Track it in the app.",
        }
    )
    report = do_import(kb, run_on_commit, [("export.jsonl", line.encode())])
    assert (report.created, report.updated) == (0, 1)
    made.refresh_from_db()
    assert made.body == "Track it in the app." and made.external_id == f"article-{made.pk}"
    assert kb.articles.count() == 1


def test_row_errors_name_the_file_they_come_from(kb, run_on_commit):
    good = json.dumps({"title": "Fine", "language": "en"})
    bad = json.dumps({"title": "", "language": "en"})
    with pytest.raises(services.ImportFailed) as info:
        do_import(kb, run_on_commit, [("a.jsonl", good.encode()), ("b.jsonl", bad.encode())])
    assert [(e.source, e.line) for e in info.value.errors] == [("b.jsonl", 1)]


def test_import_errors_are_in_the_language_of_the_user(kb, run_on_commit, tmp_path):
    write_catalog(
        tmp_path,
        "zh_Hans",
        {
            "%(file)s: unsupported file type (use .csv, .jsonl or .md)": (
                "%(file)s：不支持的文件类型（请用 .csv、.jsonl 或 .md）"
            ),
            "title is empty": "标题为空",
            "unknown language %(language)s (use zh or en)": (
                "未知语言 %(language)s（请用 zh 或 en）"
            ),
            "not valid JSON: %(reason)s": "不是有效的 JSON：%(reason)s",
            "%(n)d rows have errors; nothing was imported.": "%(n)d 行有错误，未导入任何内容。",
        },
    )
    lines = [
        json.dumps({"language": "en", "title": ""}),
        json.dumps({"language": "fr", "title": "Où est ma commande ?"}),
        "{not json",
    ]
    with override_settings(LOCALE_PATHS=[tmp_path]), translation.override("zh-hans"):
        with pytest.raises(ImportFileError, match=r"notes\.txt：不支持的文件类型"):
            parse_files([("notes.txt", b"hello")])
        with pytest.raises(services.ImportFailed) as info:
            do_import(kb, run_on_commit, [("kb.jsonl", "\n".join(lines).encode())])
    assert info.value.message == "3 行有错误，未导入任何内容。"
    assert [e.message for e in info.value.errors] == [
        "标题为空",
        "未知语言 'fr'（请用 zh 或 en）",
        "不是有效的 JSON：Expecting property name enclosed in double quotes",
    ]


def test_a_date_alone_as_the_end_of_validity_means_through_that_day(kb, run_on_commit):
    rows = [
        {"external_id": "one-day", "language": "en", "title": "Flash sale", "body": "Today only.",
         "valid_from": "2026-11-11", "valid_until": "2026-11-11"},
        {"external_id": "timed", "language": "en", "title": "Evening sale", "body": "Tonight.",
         "valid_from": "2026-11-11T18:00:00+08:00", "valid_until": "2026-11-11T22:00:00+08:00"},
    ]  # fmt: skip
    files = [("kb.jsonl", "\n".join(json.dumps(r) for r in rows).encode())]
    report = do_import(kb, run_on_commit, files)
    assert report.created == 2
    one_day = kb.articles.get(external_id="one-day")
    assert timezone.localtime(one_day.valid_from).isoformat() == "2026-11-11T00:00:00+08:00"
    assert timezone.localtime(one_day.valid_until).isoformat() == "2026-11-12T00:00:00+08:00"
    timed = kb.articles.get(external_id="timed")
    assert timezone.localtime(timed.valid_until).isoformat() == "2026-11-11T22:00:00+08:00"
    # Moving the end is an update the report counts, though the text did not change.
    rows[0]["valid_until"] = "2026-11-12"
    files = [("kb.jsonl", "\n".join(json.dumps(r) for r in rows).encode())]
    again = do_import(kb, run_on_commit, files)
    assert (again.created, again.updated, again.unchanged) == (0, 1, 1)
    one_day.refresh_from_db()
    assert timezone.localtime(one_day.valid_until).isoformat() == "2026-11-13T00:00:00+08:00"
