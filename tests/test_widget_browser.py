"""The chat widget in a real browser against the real server: Debian's Chromium (Playwright)
on the demo page, talking to the chat consumer over a websocket.

Run: `.venv/bin/pytest -m browser` (needs Debian's chromium; `make test` installs it).
"""

from __future__ import annotations

from typing import Any

import pytest

from apps.knowledge import services
from apps.nlu import services as nlu_services
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Every websocket the page opens is kept in window.__sockets, so the test can drop one.
RECORD_SOCKETS = """
window.__sockets = [];
window.WebSocket = class extends window.WebSocket {
  constructor(...args) { super(...args); window.__sockets.push(this); }
};
"""

TRANSCRIPT_JS = """nodes => nodes.map(node => ({
  seq: Number(node.dataset.seq),
  role: node.dataset.role,
  text: node.querySelector('.bubble').textContent,
  sources: [...node.querySelectorAll('.sources a')].map(a => a.href),
  rating: (node.querySelector('.rate [aria-pressed="true"]') || {dataset: {}}).dataset.value
    || null,
}))"""


def transcript(page: Any) -> list[dict[str, Any]]:
    """The stored messages the widget shows, in screen order."""
    return page.locator(".log .msg[data-seq]").evaluate_all(TRANSCRIPT_JS)


def ask(page: Any, question: str, answers_before: int) -> dict[str, Any]:
    """Type a question, press Enter, wait for the bot's answer; return the answer as shown."""
    from playwright.sync_api import expect

    textbox = page.get_by_role("textbox", name="Your message")
    textbox.fill(question)
    textbox.press("Enter")
    expect(page.locator(".msg.bot")).to_have_count(answers_before + 1, timeout=30_000)
    return transcript(page)[-1]


@pytest.fixture
def demo_help_centre(transactional_db: Any) -> dict[str, int]:
    """The demo site's knowledge base (about half a minute: 94 articles embedded) and intents,
    and the ids of the articles the questions below should cite. Loaded before the browser
    starts, since the ORM cannot be used while Playwright runs (see the `browser` fixture)."""
    kb, _ = services.demo_knowledge_base_load()
    nlu_services.demo_intents_load()  # as on the demo site: some questions start a form
    return {
        key: kb.articles.get(external_id=external_id, language=language).pk
        for key, (external_id, language) in {
            "refund_zh": ("refund-timing", "zh"),
            "refund_en": ("refund-timing", "en"),
            "shipping_zh": ("shipping-fees", "zh"),
        }.items()
    }


def test_customer_asks_rates_loses_connection_and_comes_back(
    demo_help_centre: dict[str, int], asgi_server: LiveServer, browser: Any
) -> None:
    from playwright.sync_api import expect

    def article_url(key: str) -> str:
        return f"{asgi_server.url}/help/articles/{demo_help_centre[key]}/"

    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.add_init_script(RECORD_SOCKETS)
    page.goto(f"{asgi_server.url}/")
    expect(page.get_by_role("heading", name="Try the support assistant")).to_be_visible()

    page.get_by_role("button", name="Open chat").click()
    expect(page.get_by_role("dialog", name="Lumen Mall support")).to_be_visible()
    expect(page.get_by_role("textbox", name="Your message")).to_be_focused()

    # A Chinese question and an English one, each answered from its own article, with a link.
    answer_zh = ask(page, "退款多久能到账？", answers_before=0)
    assert article_url("refund_zh") in answer_zh["sources"]
    answer_en = ask(page, "How long does a refund take?", answers_before=1)
    assert article_url("refund_en") in answer_en["sources"]

    # The cited article opens in a new tab.
    source_link = page.locator(".msg.bot").nth(1).get_by_role("link").first
    with context.expect_page() as article_tab:
        source_link.click()
    expect(article_tab.value.get_by_role("heading", level=1)).to_have_text(
        "How long does a refund take to arrive?"
    )
    article_tab.value.close()

    # Thumbs up: shown as pressed once the server has stored it.
    english_answer = page.locator(f'.msg.bot[data-seq="{answer_en["seq"]}"]')
    english_answer.get_by_role("button", name="Helpful", exact=True).click()
    expect(english_answer.get_by_role("button", name="Helpful", exact=True)).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(english_answer.get_by_role("button", name="Not helpful")).to_have_attribute(
        "aria-pressed", "false"
    )

    # The network goes and the socket drops; a question typed meanwhile waits, and goes out
    # when the widget has reconnected.
    context.set_offline(True)
    page.evaluate("window.__sockets.at(-1).close()")
    expect(page.get_by_text("Connection lost. Reconnecting…")).to_be_visible()
    textbox = page.get_by_role("textbox", name="Your message")
    textbox.fill("运费怎么收？")
    textbox.press("Enter")
    expect(page.locator(".msg.pending")).to_contain_text("Will be sent when the connection is back")
    context.set_offline(False)
    expect(page.locator(".msg.bot")).to_have_count(3, timeout=30_000)
    expect(page.get_by_text("Connection lost. Reconnecting…")).to_be_hidden()
    assert page.evaluate("window.__sockets.at(-1).readyState") == 1  # the new one, open
    before_reload = transcript(page)
    assert article_url("shipping_zh") in before_reload[-1]["sources"]
    customer_texts = [m["text"] for m in before_reload if m["role"] == "customer"]
    assert customer_texts == ["退款多久能到账？", "How long does a refund take?", "运费怎么收？"]
    assert [m["seq"] for m in before_reload] == sorted({m["seq"] for m in before_reload})

    # Reload: the stored token brings the whole conversation back, rating included.
    page.reload()
    page.get_by_role("button", name="Open chat").click()
    expect(page.locator(".msg.bot")).to_have_count(3)
    expect(page.locator(".log .msg[data-seq]")).to_have_count(len(before_reload))
    assert transcript(page) == before_reload
    assert [m["rating"] for m in transcript(page) if m["seq"] == answer_en["seq"]] == ["up"]

    # A question about returns the help centre is not sure of: the nearest articles and the
    # return form's own choice, as buttons; the form starts with the tap.
    offer = ask(page, "can opened makeup be returned", answers_before=3)
    assert "Start a return" in offer["text"]
    choices = page.locator(".choices button")
    expect(choices.last).to_have_text("Start a return")
    expect(choices.first).to_have_text("Which items cannot be returned without a reason?")
    choices.last.click()
    expect(page.locator(".msg.bot")).to_have_count(5, timeout=30_000)
    assert transcript(page)[-2]["text"] == "Start a return"
    assert transcript(page)[-1]["text"].startswith("Which order is it?")
    expect(page.locator(".choices button")).to_have_count(0)
    context.close()


@pytest.fixture
def empty_demo_help_centre(transactional_db: Any) -> None:
    """A demo knowledge base without articles: enough for the layout and one round trip."""
    services.knowledge_base_create(name=services.DEMO_KB_NAME, languages=["zh", "en"])


def test_on_a_phone_the_chat_fills_the_screen_in_the_page_language(
    empty_demo_help_centre: None, asgi_server: LiveServer, browser: Any
) -> None:
    from playwright.sync_api import expect

    phone = {"width": 390, "height": 844}
    context = browser.new_context(locale="zh-CN", viewport=phone, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(f"{asgi_server.url}/")
    assert page.locator("html").get_attribute("lang") == "zh-hans"

    page.get_by_role("button", name="打开客服对话").tap()
    panel = page.get_by_role("dialog")
    expect(panel).to_be_visible()
    box = panel.bounding_box()
    assert box == {"x": 0, "y": 0, **phone}
    textbox = page.get_by_role("textbox", name="输入消息")
    field = textbox.bounding_box()
    assert field["y"] + field["height"] <= phone["height"]
    assert field["x"] >= 0 and field["x"] + field["width"] <= phone["width"]

    textbox.fill("你好")
    page.get_by_role("button", name="发送").tap()
    expect(page.locator(".msg.customer:not(.pending) .bubble")).to_have_text("你好")

    page.get_by_role("button", name="关闭对话").tap()
    expect(panel).to_be_hidden()
    expect(page.get_by_role("button", name="打开客服对话")).to_be_focused()
    context.close()


@pytest.fixture
def generating_help_centre(transactional_db: Any) -> Any:
    """A small help centre as the demo site's, answered by a (fake) model endpoint that writes
    slowly enough for the draft to be seen growing."""
    from apps.conversations.tests.conftest import chat_fixtures
    from apps.inference import services as inference_services
    from apps.inference.fake_server import FakeLLMServer
    from apps.knowledge.models import KnowledgeBase

    kb = chat_fixtures()
    KnowledgeBase.objects.filter(pk=kb.pk).update(name=services.DEMO_KB_NAME)
    llm = FakeLLMServer().start()
    llm.configure(first_token_delay=0.2, token_delay=0.12)
    inference_services.endpoint_save(name="gpu-0", base_url=llm.base_url, model="fake-llm")
    refund = kb.articles.get(external_id="refund-time", language="en")
    yield {"refund": refund.pk}
    llm.stop()


def test_generated_answer_streams_in_and_cites_its_source(
    generating_help_centre: dict[str, int], asgi_server: LiveServer, browser: Any
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(locale="en-US")
    page = context.new_page()
    page.goto(f"{asgi_server.url}/")
    page.get_by_role("button", name="Open chat").click()
    textbox = page.get_by_role("textbox", name="Your message")
    textbox.fill("How long does a refund take?")
    textbox.press("Enter")

    # The draft shows while the answer is being written, then the stored answer replaces it.
    draft = page.locator(".msg.draft .bubble")
    expect(draft).to_contain_text("Once approved")
    partial = draft.text_content() or ""
    answer = page.locator(".msg.bot[data-seq]")
    expect(answer).to_have_count(1, timeout=30_000)
    expect(page.locator(".msg.draft")).to_have_count(0)
    final = answer.locator(".bubble").text_content() or ""
    assert len(partial) < len(final) and final.startswith(partial.rstrip())
    citation = answer.locator("a.cite")
    expect(citation).to_have_text("[1]")
    article = f"{asgi_server.url}/help/articles/{generating_help_centre['refund']}/"
    expect(citation).to_have_attribute("href", article)
    context.close()
