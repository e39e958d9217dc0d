"""Claim races on the real PostgreSQL, assignment rules, capacity, transfers, hand back, close
and rating, and the grace period of an agent who disconnects."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import TestCase
from django.utils import timezone

from apps.agents import selectors, services
from apps.agents.models import AgentProfile, ConversationEvent, EventKind, Macro, Presence
from apps.conversations import services as conversation_services
from apps.conversations.models import Conversation, ConversationStatus, Role
from apps.conversations.tests.conftest import say
from apps.core.exceptions import NotFoundError, ServiceError


def handed_off(kb: Any, language: str = "zh", text: str = "转人工") -> Conversation:
    conversation = conversation_services.conversation_start(
        knowledge_base=kb, locale="zh-hans" if language == "zh" else "en"
    )
    say(conversation, text)
    # Handed off: waiting, or already given to a free agent by the automatic assignment.
    assert conversation.status in (ConversationStatus.WAITING_AGENT, ConversationStatus.AGENT)
    return conversation


@pytest.fixture
def no_auto_assign(settings: Any) -> None:
    settings.AGENTS = {**settings.AGENTS, "AUTO_ASSIGN": False}


def run_at_once(*calls: Any) -> list[Any]:
    """Run the calls in threads released together; each result or the exception it raised."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Any) -> None:
        barrier.wait()
        try:
            results[index] = call()
        except Exception as exc:
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.django_db(transaction=True)
def test_two_agents_claiming_at_once_exactly_one_wins(
    live_chat_kb: Any, make_agent: Any, no_auto_assign: None
) -> None:
    for _ in range(5):  # races are about timing: try a few times
        conversation = handed_off(live_chat_kb)
        ann, bob = make_agent(f"ann{_}"), make_agent(f"bob{_}")
        results = run_at_once(
            lambda c=conversation, a=ann: services.conversation_claim(c.pk, a),
            lambda c=conversation, b=bob: services.conversation_claim(c.pk, b),
        )
        winners = [r for r in results if isinstance(r, Conversation)]
        losers = [r for r in results if isinstance(r, ServiceError)]
        assert len(winners) == 1 and len(losers) == 1, results
        assert losers[0].code == "taken"
        conversation.refresh_from_db()
        assert conversation.status == ConversationStatus.AGENT
        assert conversation.assigned_agent_id == winners[0].assigned_agent_id
        assert (
            ConversationEvent.objects.filter(
                conversation=conversation, kind=EventKind.CLAIMED
            ).count()
            == 1
        )
        joined = conversation.messages.filter(role=Role.SYSTEM).order_by("-seq").first()
        assert joined is not None and "加入" in joined.text  # told in the customer's language


@pytest.mark.django_db(transaction=True)
def test_capacity_holds_when_one_agent_claims_two_at_once(
    live_chat_kb: Any, make_agent: Any, no_auto_assign: None
) -> None:
    first, second = handed_off(live_chat_kb), handed_off(live_chat_kb)
    ann = make_agent("ann", capacity=1)
    results = run_at_once(
        lambda: services.conversation_claim(first.pk, ann),
        lambda: services.conversation_claim(second.pk, ann),
    )
    codes = sorted(r.code if isinstance(r, ServiceError) else "ok" for r in results)
    assert codes == ["at_capacity", "ok"]
    assert Conversation.objects.filter(assigned_agent=ann).count() == 1


@pytest.mark.django_db
def test_only_agents_claim(chat_kb: Any, django_user_model: Any, no_auto_assign: None) -> None:
    conversation = handed_off(chat_kb)
    customer_staff = django_user_model.objects.create_user("clerk")
    with pytest.raises(ServiceError) as refused:
        services.conversation_claim(conversation, customer_staff)
    assert refused.value.code == "forbidden"


@pytest.mark.django_db
def test_automatic_assignment_picks_the_least_busy_online_agent_with_the_language(
    chat_kb: Any, make_agent: Any
) -> None:
    english_only = make_agent("eve", languages=["en"])
    make_agent("zoe", presence=Presence.AWAY)  # away: never assigned
    lin = make_agent("lin", languages=["zh"], capacity=1)
    wu = make_agent("wu", languages=["zh", "en"], capacity=2)

    first = handed_off(chat_kb, "zh")  # lin and wu both free: either; then the other
    second = handed_off(chat_kb, "zh")
    first.refresh_from_db()
    second.refresh_from_db()
    assert {first.assigned_agent_id, second.assigned_agent_id} == {lin.pk, wu.pk}
    assert first.status == second.status == ConversationStatus.AGENT

    third = handed_off(chat_kb, "zh")  # lin is full (capacity 1): wu
    third.refresh_from_db()
    assert third.assigned_agent_id == wu.pk
    fourth = handed_off(chat_kb, "zh")  # everyone who speaks Chinese is full: it waits
    fourth.refresh_from_db()
    assert fourth.status == ConversationStatus.WAITING_AGENT
    english = handed_off(chat_kb, "en", "I want to talk to a human")
    english.refresh_from_db()
    assert english.assigned_agent_id == english_only.pk
    assert ConversationEvent.objects.filter(kind=EventKind.ASSIGNED).count() == 4

    # lin closes theirs: the waiting one goes to lin.
    lins = Conversation.objects.get(assigned_agent=lin)
    with TestCase.captureOnCommitCallbacks(execute=True):
        services.conversation_close(lins, lin)
    fourth.refresh_from_db()
    assert fourth.assigned_agent_id == lin.pk


@pytest.mark.django_db
def test_an_agent_coming_online_gets_the_waiting_conversation(
    chat_kb: Any, make_agent: Any
) -> None:
    ann = make_agent("ann", presence=Presence.AWAY)
    conversation = handed_off(chat_kb)
    conversation.refresh_from_db()
    assert conversation.status == ConversationStatus.WAITING_AGENT
    with TestCase.captureOnCommitCallbacks(execute=True):
        services.agent_presence_set(ann, Presence.ONLINE)
    conversation.refresh_from_db()
    assert conversation.assigned_agent_id == ann.pk


@pytest.mark.django_db
def test_agent_replies_only_in_their_own_conversation(
    chat_kb: Any, make_agent: Any, no_auto_assign: None
) -> None:
    conversation = handed_off(chat_kb)
    ann, bob = make_agent("ann"), make_agent("bob")
    boss = make_agent("boss", supervisor=True)
    with pytest.raises(ServiceError) as early:
        services.agent_message_send(conversation, ann, "你好")
    assert early.value.code == "not_assigned"
    services.conversation_claim(conversation, ann)
    with pytest.raises(ServiceError) as other:
        services.agent_message_send(conversation, bob, "你好")
    assert other.value.code == "forbidden"

    message = services.agent_message_send(conversation, ann, "您好，我来帮您。", client_id="a1")
    again = services.agent_message_send(conversation, ann, "您好，我来帮您。", client_id="a1")
    assert again.pk == message.pk  # a retried send is stored once
    assert message.role == Role.AGENT and message.author_id == ann.pk
    assert services.agent_message_send(conversation, boss, "主管在此。").author_id == boss.pk
    conversation.refresh_from_db()
    assert conversation.first_agent_reply_at is not None
    # The bot stays quiet while a person has the conversation.
    replies = say(conversation, "我的订单到哪了")
    assert replies == []


@pytest.mark.django_db
def test_transfer_to_an_agent_and_back_to_the_queue_with_a_note(
    chat_kb: Any, make_agent: Any, no_auto_assign: None
) -> None:
    conversation = handed_off(chat_kb)
    ann, bob = make_agent("ann"), make_agent("bob")
    away = make_agent("cat", presence=Presence.AWAY)
    services.conversation_claim(conversation, ann)
    with pytest.raises(ServiceError) as offline:
        services.conversation_transfer(conversation, ann, to_agent=away)
    assert offline.value.code == "not_online"
    services.conversation_transfer(conversation, ann, to_agent=bob, note="billing question")
    conversation.refresh_from_db()
    assert conversation.assigned_agent_id == bob.pk
    with pytest.raises(ServiceError):
        services.conversation_transfer(conversation, ann)  # no longer ann's
    services.conversation_transfer(conversation, bob, note="needs a Chinese speaker")
    conversation.refresh_from_db()
    assert conversation.status == ConversationStatus.WAITING_AGENT
    assert conversation.assigned_agent_id is None
    kinds = [(e.kind, e.note) for e in selectors.conversation_events(conversation)]
    assert kinds == [
        (EventKind.CLAIMED, ""),
        (EventKind.TRANSFERRED, "billing question"),
        (EventKind.REQUEUED, "needs a Chinese speaker"),
    ]
    notes = list(conversation.messages.filter(role=Role.SYSTEM).values_list("text", flat=True))
    assert len(notes) == 4  # handoff, joined, transfer, back to the queue


@pytest.mark.django_db
def test_hand_back_to_the_bot(chat_kb: Any, make_agent: Any, no_auto_assign: None) -> None:
    conversation = handed_off(chat_kb)
    ann = make_agent("ann")
    services.conversation_claim(conversation, ann)
    services.conversation_return_to_bot(conversation, ann)
    conversation.refresh_from_db()
    assert conversation.status == ConversationStatus.BOT and conversation.assigned_agent is None
    reply = say(conversation, "运费怎么算")[0]
    assert reply.role == Role.BOT and "99" in reply.text


@pytest.mark.django_db
def test_close_with_a_resolution_then_the_customer_rates_once(
    chat_kb: Any, make_agent: Any, no_auto_assign: None
) -> None:
    conversation = handed_off(chat_kb)
    ann = make_agent("ann")
    services.conversation_claim(conversation, ann)
    with pytest.raises(ServiceError):
        services.conversation_rate(conversation, 5)  # not closed yet
    with pytest.raises(ServiceError):
        services.conversation_close(conversation, ann, resolution="made-up")
    services.conversation_close(conversation, ann, resolution="resolved")
    conversation.refresh_from_db()
    assert conversation.status == ConversationStatus.CLOSED
    assert conversation.resolution_code == "resolved" and conversation.closed_at
    last = conversation.messages.order_by("-seq").first()
    assert last is not None and "1" in last.text and "5" in last.text
    for bad in (0, 6, "5", 4.5, True):
        with pytest.raises(ServiceError):
            services.conversation_rate(conversation, bad)
    services.conversation_rate(conversation, 4)
    with pytest.raises(ServiceError) as twice:
        services.conversation_rate(conversation, 5)
    assert twice.value.code == "rated"
    conversation.refresh_from_db()
    assert conversation.csat == 4
    with pytest.raises(ServiceError):
        conversation_services.message_receive(conversation, "还有问题")  # closed


@pytest.mark.django_db
def test_an_agent_gone_past_the_grace_period_loses_conversations_to_the_queue(
    chat_kb: Any, make_agent: Any, no_auto_assign: None
) -> None:
    conversation = handed_off(chat_kb)
    ann, bob = make_agent("ann"), make_agent("bob")
    services.conversation_claim(conversation, ann)
    past = timezone.now() - timedelta(seconds=45)
    AgentProfile.objects.filter(user=ann).update(last_seen_at=past)
    assert services.agents_gone_release() == 0  # 45 s: within the 60 s grace (a reload)
    services.agent_seen(ann)  # the console is back and pings
    assert AgentProfile.objects.get(user=ann).last_seen_at > past

    AgentProfile.objects.filter(user=ann).update(
        last_seen_at=timezone.now() - timedelta(seconds=120)
    )
    assert services.agents_gone_release() == 1
    conversation.refresh_from_db()
    assert conversation.status == ConversationStatus.WAITING_AGENT
    note = conversation.messages.order_by("-seq").first()
    assert note is not None and note.role == Role.SYSTEM and "断开" in note.text
    assert AgentProfile.objects.get(user=ann).presence == Presence.OFFLINE
    assert AgentProfile.objects.get(user=bob).presence == Presence.ONLINE
    assert selectors.conversation_events(conversation)[-1].kind == EventKind.AGENT_LOST


@pytest.mark.django_db
def test_a_long_queue_with_nobody_free_costs_one_lookup_per_language(
    chat_kb: Any, make_agent: Any, django_assert_max_num_queries: Any
) -> None:
    ann = make_agent("ann", languages=["zh"], capacity=2, presence=Presence.AWAY)
    for _ in range(6):
        handed_off(chat_kb, "zh")
    for _ in range(4):
        handed_off(chat_kb, "en", "I want to talk to a human")
    # The queue, then one agent lookup for Chinese and one for English.
    with django_assert_max_num_queries(3):
        assert services.conversations_assign() == 0
    AgentProfile.objects.filter(user=ann).update(presence=Presence.ONLINE)
    assert services.conversations_assign() == 2  # her capacity; English still waits
    assigned = Conversation.objects.filter(status=ConversationStatus.AGENT)
    assert set(assigned.values_list("language", "assigned_agent")) == {("zh", ann.pk)}
    waiting = Conversation.objects.filter(status=ConversationStatus.WAITING_AGENT)
    assert waiting.filter(language="en").count() == 4
    assert waiting.filter(language="zh").count() == 4


@pytest.mark.django_db
def test_agents_not_seen_recently_get_no_new_conversations(chat_kb: Any, make_agent: Any) -> None:
    ann = make_agent("ann")
    AgentProfile.objects.filter(user=ann).update(
        last_seen_at=timezone.now() - timedelta(seconds=300)
    )
    conversation = handed_off(chat_kb)
    conversation.refresh_from_db()
    assert conversation.status == ConversationStatus.WAITING_AGENT
    with TestCase.captureOnCommitCallbacks(execute=True):
        services.agent_seen(ann)
        services.conversations_assign()
    conversation.refresh_from_db()
    assert conversation.assigned_agent_id == ann.pk


@pytest.mark.django_db
def test_agents_see_the_queue_and_their_own_supervisors_see_all(
    chat_kb: Any, make_agent: Any, django_user_model: Any, no_auto_assign: None
) -> None:
    ann, bob = make_agent("ann"), make_agent("bob")
    boss = make_agent("boss", supervisor=True)
    waiting, anns = handed_off(chat_kb), handed_off(chat_kb)
    services.conversation_claim(anns, ann)
    assert selectors.access_conversation(bob, waiting.public_id) == waiting
    with pytest.raises(NotFoundError):
        selectors.access_conversation(bob, anns.public_id)
    assert selectors.access_conversation(ann, anns.public_id) == anns
    assert selectors.access_conversation(boss, anns.public_id) == anns
    with pytest.raises(NotFoundError):
        selectors.access_conversation(boss, "not-a-uuid")
    with pytest.raises(ServiceError):
        selectors.access_conversation(django_user_model.objects.create_user("x"), waiting.pk)
    assert [item.id for item in selectors.queue(bob)] == [str(waiting.public_id)]
    assert list(selectors.agent_conversations(bob)) == []
    assert list(selectors.agent_conversations(boss)) == [anns]
    load = {row["name"]: row for row in selectors.agents_load(boss)}
    assert load["ann"]["open"] == 1 and load["bob"]["open"] == 0
    with pytest.raises(ServiceError):
        selectors.agents_load(ann)


@pytest.mark.django_db
def test_queue_flags_conversations_at_risk_of_missing_the_first_response_target(
    chat_kb: Any, make_agent: Any, settings: Any, no_auto_assign: None
) -> None:
    settings.AGENTS = {**settings.AGENTS, "SLA_FIRST_RESPONSE_SECONDS": 100}
    fresh, older, oldest = (handed_off(chat_kb) for _ in range(3))
    now = timezone.now()
    Conversation.objects.filter(pk=older.pk).update(handed_off_at=now - timedelta(seconds=80))
    Conversation.objects.filter(pk=oldest.pk).update(handed_off_at=now - timedelta(seconds=150))
    items = {item.id: item for item in selectors.queue(make_agent("ann"))}
    assert items[str(fresh.public_id)].sla == "ok"
    assert items[str(older.public_id)].sla == "at_risk"
    assert items[str(oldest.public_id)].sla == "breached"
    assert next(iter(items)) == str(oldest.public_id)  # longest wait first
    assert items[str(fresh.public_id)].handoff_reason == "customer_request"


@pytest.mark.django_db
def test_macros_are_found_by_shortcut_and_fill_their_placeholders(
    chat_kb: Any, make_agent: Any, no_auto_assign: None
) -> None:
    Macro.objects.create(
        shortcut="refund-eta",
        title="Refund timing",
        body_en="Hi, {agent_name} here. Order {order_number} is refunded in 3-7 days.",
        body_zh="您好，我是{agent_name}。订单 {order_number} 的退款 3-7 个工作日到账。",
    )
    Macro.objects.create(shortcut="bye", title="Goodbye", body_en="Bye!", enabled=True)
    Macro.objects.create(shortcut="old", title="Old", body_en="x", enabled=False)
    conversation = conversation_services.conversation_start(knowledge_base=chat_kb)
    say(conversation, "我的订单 LM2026112001 到哪了")
    conversation_services.conversation_hand_off(conversation, "customer_button")
    ann = make_agent("ann")
    assert [m.shortcut for m in selectors.macros_search("/ref")] == ["refund-eta"]
    assert [m.shortcut for m in selectors.macros_search("")] == ["bye", "refund-eta"]
    assert selectors.macros_search("old") == []
    text = selectors.macro_render(selectors.macros_search("refund")[0], conversation, ann)
    assert text == "您好，我是ann。订单 LM2026112001 的退款 3-7 个工作日到账。"


@pytest.mark.django_db
def test_the_queue_is_read_in_one_query(
    chat_kb: Any, make_agent: Any, django_assert_num_queries: Any, no_auto_assign: None
) -> None:
    for _ in range(4):
        handed_off(chat_kb)
    ann = make_agent("ann")
    with django_assert_num_queries(3):  # the permission checks (user's groups, perms) + queue
        items = selectors.queue(ann)
    assert len(items) == 4 and all(item.last_message == "转人工" for item in items)


@pytest.mark.django_db
def test_assist_suggests_help_centre_answers_and_a_generated_draft_with_sources(
    chat_kb: Any, make_agent: Any, no_auto_assign: None
) -> None:
    from apps.inference import selectors as inference_selectors
    from apps.inference import services as inference_services
    from apps.inference.fake_server import FakeLLMServer

    conversation = conversation_services.conversation_start(knowledge_base=chat_kb, locale="en")
    say(conversation, "How long does a refund take?")
    say(conversation, "I want to talk to a human")
    say_more = conversation_services.message_receive(conversation, "When is my money back?")[0]
    assert say_more.role == Role.CUSTOMER
    plain = selectors.assist_suggestions(conversation)
    assert plain and {s["kind"] for s in plain} == {"knowledge"}
    assert plain[0]["sources"][0]["title"] == "How long does a refund take?"
    assert "refunds reach Alipay" in plain[0]["text"]

    llm = FakeLLMServer().start()
    try:
        inference_services.endpoint_save(name="gpu", base_url=llm.base_url, model="fake-llm")
        inference_selectors.pool_reset()
        drafted = selectors.assist_suggestions(conversation)
    finally:
        llm.stop()
    assert drafted[0]["kind"] == "generated" and drafted[0]["text"].endswith("[1]")
    assert drafted[0]["sources"][0]["title"] == "How long does a refund take?"
    assert drafted[1:] == plain
