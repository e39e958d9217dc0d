"""The Simplified Chinese catalog: translations are served, placeholders survive, and the catalog
is complete (no untranslated or fuzzy entries, none missing for strings in the source)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import translation

LOCALE_DIR = Path(settings.BASE_DIR) / "locale"
PO_PATH = LOCALE_DIR / "zh_Hans" / "LC_MESSAGES" / "django.po"
MO_PATH = PO_PATH.with_suffix(".mo")

# %(name)s / %(n)d / %s / %d (and %%), and {name} / {} for str.format strings.
PLACEHOLDER = re.compile(r"%(?:\([^)]+\))?[-#0 +]*\d*(?:\.\d+)?[sdifrxXeEgGc%]|\{[^{}]*\}")
MAKEMESSAGES_IGNORES = ["--ignore=.venv", "--ignore=var", "--ignore=tests"]
ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


@dataclass
class Entry:
    msgid: str = ""
    msgid_plural: str | None = None
    msgctxt: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    line: int = 0


def _unquote(text: str) -> str:
    text = text.strip()
    assert text.startswith('"') and text.endswith('"'), text
    return re.sub(r"\\(.)", lambda m: ESCAPES.get(m.group(1), m.group(0)), text[1:-1])


def parse_po(path: Path) -> list[Entry]:
    """A small .po reader (polib is not a dependency): entries with their flags and msgstrs.
    Obsolete (#~) entries are skipped; the header (msgid "") is included."""
    entries: list[Entry] = []
    current: Entry | None = None
    target: tuple[str, int] | None = None  # which field a continuation line extends
    after_msgstr = False

    def start(lineno: int) -> Entry:
        nonlocal current, after_msgstr
        if current is not None:
            entries.append(current)
        current = Entry(line=lineno)
        after_msgstr = False
        return current

    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#~"):
            continue
        if line.startswith("#"):
            entry = start(lineno) if current is None or after_msgstr else current
            if line.startswith("#,"):
                entry.flags |= {f.strip() for f in line[2:].split(",") if f.strip()}
            continue
        if line.startswith('"'):
            assert current is not None and target is not None, f"{path}:{lineno}: stray string"
            name, index = target
            if name == "msgstr":
                current.msgstr[index] += _unquote(line)
            else:
                setattr(current, name, getattr(current, name) + _unquote(line))
            continue
        keyword, _, value = line.partition(" ")
        if keyword in ("msgctxt", "msgid") and (current is None or after_msgstr):
            start(lineno)
        assert current is not None
        if keyword.startswith("msgstr"):
            index = int(keyword[7:-1]) if keyword.startswith("msgstr[") else 0
            current.msgstr[index] = _unquote(value)
            target, after_msgstr = ("msgstr", index), True
        elif keyword in ("msgid", "msgid_plural", "msgctxt"):
            setattr(current, keyword, _unquote(value))
            target = (keyword, 0)
        else:
            raise AssertionError(f"{path}:{lineno}: unexpected line {raw!r}")
    if current is not None:
        entries.append(current)
    return entries


def catalog_problems(path: Path) -> list[str]:
    """Every untranslated or fuzzy entry of a catalog, one line each."""
    problems = []
    for entry in parse_po(path):
        if entry.msgid == "":
            if "fuzzy" in entry.flags:
                problems.append(f"{path.name}:{entry.line}: the header is marked fuzzy")
            continue
        if "fuzzy" in entry.flags:
            problems.append(f"{path.name}:{entry.line}: fuzzy: {entry.msgid!r}")
        if not entry.msgstr or any(not s for s in entry.msgstr.values()):
            problems.append(f"{path.name}:{entry.line}: untranslated: {entry.msgid!r}")
    return problems


def _messages() -> list[Entry]:
    return [e for e in parse_po(PO_PATH) if e.msgid]


# --- Translations are served -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("msgid", "expected"),
    [
        ("Hit test", "命中测试"),
        ("knowledge base", "知识库"),
        ("The query is empty.", "查询为空。"),
        ("Publish selected articles", "发布所选文章"),
        ("synonym group", "同义词组"),
        ("answer threshold", "回答阈值"),
    ],
)
def test_gettext_returns_chinese(msgid, expected):
    with translation.override("zh-hans"):
        assert translation.gettext(msgid) == expected
    with translation.override("en"):
        assert translation.gettext(msgid) == msgid


def test_placeholders_are_kept_and_filled():
    with translation.override("zh-hans"):
        rows = translation.gettext("%(n)d rows have errors; nothing was imported.")
        too_long = translation.gettext("The query is too long (%(n)d characters; at most %(max)d).")
    assert "%(n)d" in rows
    assert rows % {"n": 3} == "3 行有错误，未导入任何内容。"
    assert too_long % {"n": 2500, "max": 2000} == "查询过长（2500 个字符；最多 2000 个）。"


def test_every_message_has_the_same_placeholders_in_chinese():
    """A dropped or mistyped placeholder breaks `%` formatting at run time (KeyError)."""
    wrong = []
    for entry in _messages():
        expected = sorted(PLACEHOLDER.findall(entry.msgid))
        for msgstr in entry.msgstr.values():
            if sorted(PLACEHOLDER.findall(msgstr)) != expected:
                wrong.append(f"{entry.msgid!r} -> {msgstr!r}")
    assert not wrong, "placeholders differ:\n" + "\n".join(wrong)


def test_compiled_catalog_matches_the_po():
    """The .mo must be recompiled after editing the .po (compilemessages): every msgid in the
    .po is served with its msgstr."""
    assert MO_PATH.exists(), f"{MO_PATH} is missing: run manage.py compilemessages -l zh_Hans"
    stale = []
    with translation.override("zh-hans"):
        for entry in _messages():
            if entry.msgid_plural is not None:
                got = (
                    translation.npgettext(entry.msgctxt, entry.msgid, entry.msgid_plural, 1)
                    if entry.msgctxt
                    else translation.ngettext(entry.msgid, entry.msgid_plural, 1)
                )
            elif entry.msgctxt:
                got = translation.pgettext(entry.msgctxt, entry.msgid)
            else:
                got = translation.gettext(entry.msgid)
            if got != entry.msgstr.get(0):
                stale.append(f"{entry.msgid!r}: served {got!r}, .po has {entry.msgstr.get(0)!r}")
    assert not stale, "django.mo is stale; run compilemessages:\n" + "\n".join(stale)


# --- The catalog is complete -----------------------------------------------------------------


def test_header_is_filled():
    header = next(e for e in parse_po(PO_PATH) if e.msgid == "").msgstr[0]
    assert "Language: zh_Hans\n" in header
    assert "charset=UTF-8" in header
    assert "Plural-Forms: nplurals=1; plural=0;\n" in header


def test_plural_entries_have_one_form():
    for entry in _messages():
        if entry.msgid_plural is not None:
            assert list(entry.msgstr) == [0], entry.msgid


def test_no_untranslated_or_fuzzy_entries():
    assert _messages(), f"{PO_PATH} has no messages"
    problems = catalog_problems(PO_PATH)
    assert not problems, "\n".join(problems)


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="GNU gettext (msgfmt) not installed")
def test_msgfmt_statistics_report_everything_translated():
    result = subprocess.run(
        ["msgfmt", "--check", "--statistics", "-o", os.devnull, str(PO_PATH)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "LC_ALL": "C"},
    )
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"\d+ translated messages\.", result.stderr.strip()), result.stderr


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("xgettext") is None, reason="GNU gettext (xgettext) not installed")
def test_catalog_covers_every_string_in_the_source(tmp_path):
    """Re-run makemessages on a copy of the project: a string added to the code or templates
    without being translated shows up here as untranslated (or fuzzy)."""
    root = Path(settings.BASE_DIR)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("apps", "cs_platform", "templates", "locale"):
        shutil.copytree(root / name, tmp_path / name, ignore=ignore)
    shutil.copy2(root / "manage.py", tmp_path / "manage.py")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "cs_platform.settings.test",
        # Settings are imported but no database is used: keep the embedded one from starting.
        "DATABASE_URL": "postgres://unused@localhost:1/unused",
        "CS_VAR_DIR": str(tmp_path / "var"),
        "PYTHONPATH": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "makemessages", "-l", "zh_Hans", *MAKEMESSAGES_IGNORES],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    problems = catalog_problems(tmp_path / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po")
    assert not problems, (
        "strings in the source are missing from locale/zh_Hans (run makemessages -l zh_Hans, "
        "translate, compilemessages):\n" + "\n".join(problems)
    )


# --- Pages ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_login_page_in_chinese(client):
    response = client.get(reverse("admin:login"), HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert response.status_code == 200
    assert response.headers["Content-Language"] == "zh-hans"
    html = response.content.decode()
    assert 'lang="zh-hans"' in html
    assert "用户名" in html  # Username
    assert "密码" in html  # Password
    assert "登录" in html  # Log in


@pytest.mark.django_db
def test_admin_login_page_in_english_by_default(client):
    html = client.get(reverse("admin:login"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Username" in html
    assert "用户名" not in html


@pytest.mark.django_db
def test_hit_test_page_uses_project_translations(admin_client):
    response = admin_client.get(reverse("admin:knowledge_hit_test"), HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert response.status_code == 200
    html = response.content.decode()
    assert "命中测试" in html  # Hit test (breadcrumb and title)
    assert "知识库" in html  # Knowledge base(s)
    assert 'value="搜索"' in html  # Search button
