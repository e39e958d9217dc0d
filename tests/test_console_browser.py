"""The agent console and the chat widget in one real browser against the real server: a customer
asks for a human on the demo page, an agent takes the conversation in /console/, they talk live,
the agent closes it and the customer rates it.

Run: `.venv/bin/pytest tests/test_console_browser.py` (needs Debian's chromium).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core.cache import cache

from apps.agents.tests.conftest import make_agent  # noqa: F401 (fixture)
from apps.knowledge import services as knowledge_services
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

AGENT_PASSWORD = "pw-alice"  # make_agent's password: "pw-" + username

# Every websocket the page opens is kept in window.__sockets, so the test can drop one.
RECORD_SOCKETS = """
window.__sockets = [];
window.WebSocket = class extends window.WebSocket {
  constructor(...args) { super(...args); window.__sockets.push(this); }
};
"""

TRANSCRIPT_JS = """nodes => nodes.map(node => ({
  id: node.dataset.id,
  seq: Number(node.dataset.seq),
  role: node.dataset.role,
  text: node.querySelector('.bubble').textContent,
}))"""


def console_transcript(page: Any) -> list[dict[str, Any]]:
    """The stored messages the console shows, in screen order."""
    return page.locator("#transcript .msg[data-seq]").evaluate_all(TRANSCRIPT_JS)


@pytest.fixture
def help_desk(transactional_db: Any, settings: Any, make_agent: Any) -> dict[str, Any]:  # noqa: F811
    """The demo site's help centre (the small fixture one under the demo name) and an online
    agent who can sign in. Created before the browser starts: the ORM cannot be used while
    Playwright runs (see the `browser` fixture).

    Automatic assignment is off, so the agent takes the conversation with "Claim" from the
    live queue."""
    from apps.conversations.tests.conftest import chat_fixtures
    from apps.knowledge.models import KnowledgeBase

    settings.AGENTS = {**settings.AGENTS, "AUTO_ASSIGN": False}
    cache.clear()
    kb = chat_fixtures()
    KnowledgeBase.objects.filter(pk=kb.pk).update(name=knowledge_services.DEMO_KB_NAME)
    agent = make_agent("alice")
    # An agent, not admin staff: the console has its own login page.
    type(agent).objects.filter(pk=agent.pk).update(first_name="Alice")
    refund = kb.articles.get(external_id="refund-time", language="en")
    return {"refund_url": f"/help/articles/{refund.pk}/"}


def test_customer_hands_off_agent_claims_chats_closes_and_customer_rates(
    help_desk: dict[str, Any], asgi_server: LiveServer, browser: Any
) -> None:
    from playwright.sync_api import expect

    # The agent signs in on the console's login page and lands on the console.
    agent_context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 800})
    agent = agent_context.new_page()
    agent.add_init_script(RECORD_SOCKETS)
    agent.goto(f"{asgi_server.url}/console/")
    assert agent.url == f"{asgi_server.url}/console/login/?next=/console/"
    agent.get_by_label("Username").fill("alice")
    agent.get_by_label("Password").fill(AGENT_PASSWORD)
    agent.get_by_role("button", name="Log in").click()
    expect(agent.get_by_role("heading", name="Agent console")).to_be_visible()
    assert agent.url == f"{asgi_server.url}/console/"
    expect(agent.get_by_label("Presence")).to_have_value("online")
    expect(agent.get_by_label("Presence")).to_be_enabled()  # the socket said hello
    expect(agent.get_by_text("Nobody is waiting.")).to_be_visible()

    # The customer asks the bot first, then asks for a person.
    customer_context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 800})
    customer = customer_context.new_page()
    customer.goto(f"{asgi_server.url}/")
    customer.get_by_role("button", name="Open chat").click()
    textbox = customer.get_by_role("textbox", name="Your message")
    textbox.fill("How long does a refund take?")
    textbox.press("Enter")
    expect(customer.locator(".msg.bot[data-seq]")).to_have_count(1, timeout=30_000)
    customer.get_by_role("button", name="Talk to a human").click()
    expect(customer.get_by_text("Waiting for an agent…")).to_be_visible()

    # It shows up in the agent's queue without a reload, its waiting time ticking.
    queue = agent.locator("#queue-list .queue-item")
    expect(queue).to_have_count(1)
    expect(agent.get_by_text("Nobody is waiting.")).to_be_hidden()
    item = queue.first
    expect(item.locator(".badge.lang")).to_have_text("en")
    expect(item).to_contain_text("How long does a refund take?")
    timer = item.locator(".timer")
    expect(timer).to_have_text(re.compile(r"^\d+:\d\d$"))
    first_reading = timer.text_content()
    expect(timer).not_to_have_text(first_reading or "", timeout=5_000)
    expect(agent).to_have_title("(1) Agent console")

    # Claim: the conversation moves to "My conversations" and opens with its history and
    # what the bot decided.
    item.get_by_role("button", name="Claim").click()
    expect(agent.get_by_text("Conversation claimed.")).to_be_visible()
    expect(queue).to_have_count(0)
    expect(agent.locator("#mine-list .mine-item")).to_have_count(1)
    expect(agent.locator("#conversation-meta")).to_contain_text("With an agent")
    transcript = agent.locator("#transcript")
    expect(transcript.locator(".msg.customer").first.locator(".bubble")).to_have_text(
        "How long does a refund take?"
    )
    bot_answer = transcript.locator(".msg.bot").first
    expect(bot_answer.locator(".decision")).to_contain_text("Confidence:")
    expect(bot_answer.locator(".decision a").first).to_have_attribute(
        "href", f"{asgi_server.url}{help_desk['refund_url']}"
    )
    expect(transcript.locator(".msg.system").last).to_have_text(
        "Alice has joined the conversation."
    )
    expect(agent.locator("#events-list")).to_contain_text("Claimed")
    # Suggestions are asked for as the conversation opens.
    expect(agent.locator("#suggestions .suggestion").first).to_be_visible()

    # The customer is told who joined.
    expect(customer.get_by_text("Alice has joined the conversation.")).to_be_visible()
    expect(customer.get_by_role("button", name="Talk to a human")).to_be_hidden()

    # The agent types (the customer sees it) and sends with Enter.
    composer = agent.get_by_role("textbox", name="Reply to the customer")
    composer.press_sequentially("Hello, I am Alice.")
    expect(customer.get_by_text("The agent is typing…")).to_be_visible()
    composer.press("Enter")
    expect(composer).to_have_value("")
    agent_reply = customer.locator(".msg.agent .bubble")
    expect(agent_reply).to_have_text("Hello, I am Alice.")
    expect(transcript.locator(".msg.agent:not(.pending)")).to_have_count(1)
    expect(transcript.locator(".msg.pending")).to_have_count(0)

    # The customer answers; the agent sees the typing, then the message, live.
    textbox.fill("Thanks! My refund is late.")
    expect(agent.get_by_text("The customer is typing…")).to_be_visible()
    textbox.press("Enter")
    expect(transcript.locator(".msg.customer .bubble").last).to_have_text(
        "Thanks! My refund is late."
    )
    expect(agent.get_by_text("The customer is typing…")).to_be_hidden()

    # The console's socket drops: it reconnects, opens the conversation again, and shows
    # every message once.
    before = console_transcript(agent)
    agent.evaluate("window.__sockets.at(-1).close()")
    expect(agent.get_by_text("Connection lost. Reconnecting…")).to_be_visible()
    expect(agent.get_by_text("Connection lost. Reconnecting…")).to_be_hidden(timeout=20_000)
    assert agent.evaluate("window.__sockets.length") == 2
    expect(agent.locator("#conversation-meta")).to_contain_text("With an agent")
    after = console_transcript(agent)
    assert after == before
    assert len({m["id"] for m in after}) == len(after)
    assert [m["seq"] for m in after] == sorted({m["seq"] for m in after})
    assert [m["role"] for m in after if m["role"] != "system"] == [
        "customer",
        "bot",
        "agent",
        "customer",
    ]

    # Close as resolved: the customer is asked for a rating and gives 4 of 5.
    agent.get_by_label("Resolution").select_option("resolved")
    agent.get_by_role("button", name="Close conversation").click()
    expect(agent.get_by_text("Conversation closed.")).to_be_visible()
    expect(agent.locator("#conversation-meta")).to_contain_text("Closed")
    expect(agent.locator("#conversation-meta")).to_contain_text("Resolution: Resolved")
    expect(composer).to_be_disabled()
    expect(agent.locator("#mine-list .mine-item")).to_have_count(0)

    rating = customer.get_by_role("group", name="How would you rate the help you got?")
    expect(rating.get_by_role("button")).to_have_count(5)
    rating.get_by_role("button", name="Rate 4 of 5").click()
    expect(customer.get_by_text("Thank you for your rating.")).to_be_visible()
    expect(agent.locator("#conversation-meta")).to_contain_text("Rating: 4 / 5")

    customer_context.close()
    agent_context.close()


@pytest.fixture
def waiting_customer(transactional_db: Any, settings: Any, make_agent: Any) -> dict[str, Any]:  # noqa: F811
    """An upset customer waiting in the queue, a supervisor who can sign in, another online
    agent, and a canned reply. Created before the browser starts."""
    from django.test import TestCase

    from apps.agents.models import Macro
    from apps.conversations import services as conversation_services
    from apps.conversations.tests.conftest import chat_fixtures, say

    settings.AGENTS = {**settings.AGENTS, "AUTO_ASSIGN": False}
    cache.clear()
    kb = chat_fixtures()
    conversation = conversation_services.conversation_start(knowledge_base=kb, locale="en")
    say(conversation, "How long does a refund take? Call me on 13812345678")
    with TestCase.captureOnCommitCallbacks(execute=True):
        conversation_services.conversation_hand_off(conversation, "anger")
    supervisor = make_agent("sue", supervisor=True)
    type(supervisor).objects.filter(pk=supervisor.pk).update(first_name="Sue")
    bob = make_agent("bob", capacity=3)
    type(bob).objects.filter(pk=bob.pk).update(first_name="Bob")
    Macro.objects.create(
        shortcut="hello",
        title="Greeting",
        body_en="Hello, I am {agent_name}. How can I help?",
        body_zh="您好，我是{agent_name}，请问有什么可以帮您？",
    )
    return {"bob": bob.pk}


def test_supervisor_previews_claims_uses_suggestions_and_macros_then_reassigns(
    waiting_customer: dict[str, Any], asgi_server: LiveServer, browser: Any
) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(f"{asgi_server.url}/console/")
    page.get_by_label("Username").fill("sue")
    page.get_by_label("Password").fill("pw-sue")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Agent console")).to_be_visible()

    # The agents' load, for supervisors.
    bob_row = page.locator(f'#agents-body tr[data-id="{waiting_customer["bob"]}"]')
    expect(bob_row).to_contain_text("Bob")
    expect(bob_row).to_contain_text("Online")
    expect(bob_row).to_contain_text("0 / 3")

    # The waiting customer is upset; the supervisor looks before taking it.
    item = page.locator("#queue-list .queue-item")
    expect(item).to_have_count(1)
    expect(item.locator(".mood-negative")).to_have_text("Upset")
    # The reason in the server's words (handoff_reason_label), its code in the title.
    expect(item.locator(".badge.reason")).to_have_text("the customer is upset")
    expect(item.locator(".badge.reason")).to_have_attribute("title", "anger")
    item.get_by_role("button", name="View").click()
    expect(page.locator("#conversation-meta")).to_contain_text("Waiting for an agent")
    expect(page.locator("#conversation-meta")).to_contain_text("Handoff: the customer is upset")
    composer = page.get_by_role("textbox", name="Reply to the customer")
    expect(composer).to_be_disabled()
    # Suggestions come with the opening, for the customer's last message.
    suggestion = page.locator("#suggestions .suggestion").first
    expect(suggestion).to_contain_text("refund")
    page.get_by_role("button", name="Claim this conversation").click()
    expect(page.locator("#conversation-meta")).to_contain_text("With an agent")
    expect(composer).to_be_enabled()
    expect(page.get_by_role("button", name="Claim this conversation")).to_be_hidden()

    # The phone number is stored redacted; the agent handling it may see it (audited).
    asked = page.locator('#transcript .msg.customer[data-seq="1"]')
    expect(asked.locator(".bubble")).to_have_text("How long does a refund take? Call me on [PHONE]")
    asked.get_by_role("button", name="Show what was redacted").click()
    expect(asked.locator(".bubble")).to_have_text(
        "How long does a refund take? Call me on 13812345678"
    )
    expect(asked).to_contain_text("the viewing is recorded in the audit log")

    # "Insert" puts a suggestion in the composer, for editing; nothing is sent.
    page.get_by_role("button", name="Insert suggestion 1 into the reply").click()
    expect(composer).to_have_value(suggestion.locator(".text").text_content() or "")
    expect(page.locator("#transcript .msg.agent")).to_have_count(0)

    # "/" and letters find a canned reply; Enter takes it, with its placeholders filled.
    composer.fill("")
    composer.press_sequentially("/hel")
    macros = page.get_by_role("listbox", name="Canned replies")
    expect(macros.get_by_role("option")).to_have_count(1)
    expect(macros.get_by_role("option")).to_contain_text("/hello")
    composer.press("Enter")
    expect(composer).to_have_value("Hello, I am Sue. How can I help?")
    expect(macros).to_be_hidden()
    composer.press("Enter")
    sent = page.locator("#transcript .msg.agent:not(.pending)")
    expect(sent.locator(".bubble")).to_have_text("Hello, I am Sue. How can I help?")
    expect(sent.locator(".who")).to_have_text("Sue")

    # Reassign to Bob with a note: Bob's load goes up and the event is recorded.
    page.get_by_role("button", name="Transfer", exact=True).click()
    page.get_by_label("Transfer to").select_option(str(waiting_customer["bob"]))
    page.get_by_label("Note for the next agent").fill("VIP customer")
    page.get_by_role("button", name="Confirm transfer").click()
    expect(page.get_by_text("Conversation transferred.")).to_be_visible()
    expect(page.locator("#conversation-meta")).to_contain_text("Agent: Bob")
    expect(bob_row).to_contain_text("1 / 3")
    expect(page.locator("#mine-list .mine-item")).to_contain_text("Agent: Bob")
    expect(page.locator("#events-list")).to_contain_text("Transferred to an agent")
    expect(page.locator("#events-list")).to_contain_text("VIP customer")
    context.close()
