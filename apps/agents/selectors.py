"""Reads of the agent console. `access_conversation` is the one permission check for a
conversation: agents see the queue and their own conversations, supervisors everything."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.agents.models import AgentProfile, ConversationEvent, Macro
from apps.agents.services import display_name, is_agent, is_supervisor
from apps.conversations.models import Conversation, ConversationStatus, Message
from apps.core.exceptions import NotFoundError, ServiceError
from apps.nlu.sentiment import is_angry


def access_conversation(user: Any, conversation_id: Any) -> Conversation:
    """The conversation if `user` may see it, else NotFoundError (an agent cannot even learn
    that another agent's conversation exists)."""
    if not is_agent(user):
        raise ServiceError(_("Only agents can do this."), code="forbidden")
    visible = Conversation.objects.select_related("customer", "assigned_agent", "knowledge_base")
    if not is_supervisor(user):
        visible = visible.filter(
            Q(status=ConversationStatus.WAITING_AGENT) | Q(assigned_agent=user)
        )
    try:
        public_id = uuid.UUID(str(conversation_id))
    except ValueError:
        raise NotFoundError(_("There is no such conversation."), code="not_found") from None
    conversation = visible.filter(public_id=public_id).first()
    if conversation is None:
        raise NotFoundError(_("There is no such conversation."), code="not_found")
    return conversation


@dataclass
class QueueItem:
    id: str
    language: str
    intent: str
    handoff_reason: str
    summary: str
    waited_seconds: float
    sentiment: str
    sla: str  # "ok", "at_risk", "breached"
    last_message: str


def _sla(waited: float) -> str:
    target = settings.AGENTS["SLA_FIRST_RESPONSE_SECONDS"]
    if waited >= target:
        return "breached"
    if waited >= target * settings.AGENTS["SLA_AT_RISK_SHARE"]:
        return "at_risk"
    return "ok"


def queue(user: Any) -> list[QueueItem]:
    """Conversations waiting for a person, longest wait first (every agent sees the same)."""
    if not is_agent(user):
        raise ServiceError(_("Only agents can do this."), code="forbidden")
    return waiting_conversations()


def waiting_conversations() -> list[QueueItem]:
    """The queue, without the viewer's permission check (the console checked it once)."""
    now = timezone.now()
    last_customer_text = (
        Message.objects.filter(conversation=OuterRef("pk"), role="customer")
        .order_by("-seq")
        .values("text")[:1]
    )
    waiting = (
        Conversation.objects.filter(status=ConversationStatus.WAITING_AGENT)
        .annotate(last_text=Subquery(last_customer_text))
        .order_by("handed_off_at", "pk")
    )
    items = []
    for conversation in waiting[:500]:
        since = conversation.handed_off_at or conversation.updated_at
        waited = (now - since).total_seconds()
        items.append(
            QueueItem(
                id=str(conversation.public_id),
                language=conversation.language,
                intent=conversation.intent,
                handoff_reason=conversation.handoff_reason,
                summary=conversation.summary,
                waited_seconds=round(waited, 1),
                sentiment="negative"
                if conversation.handoff_reason == "anger" or is_angry(conversation.last_text or "")
                else "neutral",
                sla=_sla(waited),
                last_message=(conversation.last_text or "")[:200],
            )
        )
    return items


def agent_conversations(user: Any) -> QuerySet[Conversation]:
    """The conversations the agent has now (a supervisor: every one with an agent)."""
    mine = Conversation.objects.filter(status=ConversationStatus.AGENT).select_related(
        "assigned_agent"
    )
    if not is_supervisor(user):
        mine = mine.filter(assigned_agent=user)
    return mine.order_by("assigned_at")


def agents_load(user: Any) -> list[dict[str, Any]]:
    """Every agent's presence and load, for supervisors."""
    if not is_supervisor(user):
        raise ServiceError(_("Only supervisors can see every agent."), code="forbidden")
    profiles = (
        AgentProfile.objects.select_related("user")
        .annotate(
            open=Count(
                "user__assigned_conversations",
                filter=Q(user__assigned_conversations__status=ConversationStatus.AGENT),
            )
        )
        .order_by("user__username")
    )
    return [
        {
            "id": p.user_id,
            "name": display_name(p.user),
            "presence": p.presence,
            "open": p.open,
            "capacity": p.capacity,
            "languages": p.languages,
            "last_seen": p.last_seen_at.isoformat() if p.last_seen_at else None,
        }
        for p in profiles
    ]


def conversation_history(conversation: Conversation) -> list[Message]:
    """Every message with what the bot decided (intent, sources, confidence, grounding)."""
    return list(conversation.messages.select_related("author").order_by("seq"))


def customer_other_conversations(conversation: Conversation) -> list[Conversation]:
    return list(
        Conversation.objects.filter(customer_id=conversation.customer_id)
        .exclude(pk=conversation.pk)
        .order_by("-created_at")[:20]
    )


def conversation_events(conversation: Conversation) -> list[ConversationEvent]:
    return list(conversation.agent_events.select_related("actor", "agent"))


def macros_search(query: str, limit: int = 10) -> list[Macro]:
    """Canned replies whose shortcut starts with, or whose title contains, `query`."""
    query = query.strip().lstrip("/")
    macros = Macro.objects.filter(enabled=True)
    if query:
        macros = macros.filter(Q(shortcut__istartswith=query) | Q(title__icontains=query))
    return list(macros.order_by("shortcut")[:limit])


def macro_render(macro: Macro, conversation: Conversation, agent: Any) -> str:
    """The macro's text in the conversation's language, placeholders filled: {agent_name},
    {order_number} (the last one the customer gave), {conversation_id}. An unknown or unfilled
    placeholder is left as written for the agent to complete."""
    body = (macro.body_zh if conversation.language == "zh" else macro.body_en) or (
        macro.body_en or macro.body_zh
    )
    values = {
        "agent_name": display_name(agent),
        "conversation_id": str(conversation.public_id)[:8],
        "order_number": _last_order_number(conversation),
    }
    for name, value in values.items():
        if value:
            body = body.replace("{" + name + "}", value)
    return body


def _last_order_number(conversation: Conversation) -> str:
    for entities in (
        conversation.messages.filter(role="customer")
        .exclude(entities=[])
        .order_by("-seq")
        .values_list("entities", flat=True)[:20]
    ):
        for entity in entities or []:
            if isinstance(entity, dict) and entity.get("kind") == "order_number":
                return str(entity.get("value", ""))
    return ""


ASSIST_SOURCES = 3


def assist_suggestions(conversation: Conversation) -> list[dict[str, Any]]:
    """Replies the agent may insert and edit for the customer's last message: one written by
    the model pool from the best sources (when the pool is there and the draft is grounded),
    then the best articles' own text, each with its sources."""
    from apps.conversations.engine import extract_answer, source_dict
    from apps.inference import selectors as inference_selectors
    from apps.inference.generation import GenerationRequest, SourceText, answer_generate
    from apps.knowledge import selectors as knowledge_selectors

    last = (
        conversation.messages.filter(role="customer").order_by("-seq").values_list("text").first()
    )
    if last is None:
        return []
    result = knowledge_selectors.search(
        conversation.knowledge_base, last[0][:2000], language=conversation.language or None
    )
    sources = [s for s in result.sources[:ASSIST_SOURCES] if s.fused_score > 0]
    suggestions = [
        {"text": extract_answer(s), "kind": "knowledge", "sources": [source_dict(s)]}
        for s in sources
    ]
    pool = inference_selectors.pool()
    if sources and pool.has_endpoints("chat"):
        config = inference_selectors.prompt_config_for(conversation.knowledge_base_id)
        history = list(
            conversation.messages.exclude(role="system")
            .order_by("-seq")
            .values_list("role", "text")[:6]
        )[::-1]
        request = GenerationRequest(
            question=last[0],
            language=conversation.language or "en",
            sources=[SourceText(n, s.title, extract_answer(s)) for n, s in enumerate(sources, 1)],
            config=config,
            history=history[:-1],
            summary=conversation.summary,
        )
        generated = answer_generate(request, pool=pool)
        if generated.ok:
            cited = [sources[n - 1] for n in generated.cited] or sources[:1]
            suggestions.insert(
                0,
                {
                    "text": generated.text,
                    "kind": "generated",
                    "sources": [source_dict(s) for s in cited],
                },
            )
    return suggestions
