"""Every write of the agent console: presence, claim, assignment, replies, transfer, hand back,
close, the customer's rating, and returning the conversations of an agent who went away.

Each change of hands locks the conversation row (and, for capacity, the agent's profile row), so
two agents clicking "claim" at once get one winner; every change is recorded as a
ConversationEvent, tells the customer with a system message, and is pushed to the console and
the chat sockets after the commit.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from apps.agents import events
from apps.agents.models import AgentProfile, ConversationEvent, EventKind, Presence, Resolution
from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.conversations import services as conversation_services
from apps.conversations.events import publish as publish_to_chat
from apps.conversations.models import Conversation, ConversationStatus, Message, Role
from apps.core.exceptions import NotFoundError, ServiceError

logger = logging.getLogger(__name__)


def is_supervisor(user: Any) -> bool:
    return bool(user.is_active and user.has_perm("agents.supervise"))


def is_agent(user: Any) -> bool:
    return bool(user.is_active and (user.has_perm("agents.use_console") or is_supervisor(user)))


def agent_profile(user: Any) -> AgentProfile:
    profile, _created = AgentProfile.objects.get_or_create(user=user)
    return profile


def display_name(user: Any) -> str:
    """How agents are shown to customers and to each other: first name, else username."""
    return (user.get_short_name() or user.get_username()) if user is not None else ""


def _require_agent(user: Any) -> None:
    if not is_agent(user):
        raise ServiceError(_("Only agents can do this."), code="forbidden")


def _open_count(user: Any) -> int:
    return Conversation.objects.filter(assigned_agent=user, status=ConversationStatus.AGENT).count()


def _locked(conversation: Conversation | int) -> Conversation:
    pk = conversation.pk if isinstance(conversation, Conversation) else conversation
    return Conversation.objects.select_for_update().get(pk=pk)


# Saved with every change of hands (with the system message it appends).
ASSIGNMENT_FIELDS = [
    "status",
    "assigned_agent",
    "assigned_at",
    *conversation_services.SEQUENCE_FIELDS,
]


def _unassign(conversation: Conversation, status: str) -> None:
    """Take a locked conversation from its agent (the caller saves ASSIGNMENT_FIELDS)."""
    conversation.status = status
    conversation.assigned_agent = None
    conversation.assigned_at = None


def _tell_customer(conversation: Conversation, text: str) -> Message:
    """A system message in the conversation (the caller saves SEQUENCE_FIELDS)."""
    return conversation_services.message_append(
        conversation, role=Role.SYSTEM, text=text, language=conversation.language
    )


def _in_language(conversation: Conversation) -> Any:
    return translation.override("zh-hans" if conversation.language == "zh" else "en")


def _record(
    conversation: Conversation,
    kind: str,
    actor: Any = None,
    agent: Any = None,
    note: str = "",
) -> ConversationEvent:
    return ConversationEvent.objects.create(
        conversation=conversation, kind=kind, actor=actor, agent=agent, note=note[:2000]
    )


def _status_changed(conversation: Conversation, agent: Any = None) -> None:
    frame: dict[str, Any] = {"type": "status", "status": conversation.status}
    if agent is not None:
        frame["agent"] = display_name(agent)
    publish_to_chat(conversation.public_id, frame)
    events.conversation_changed(conversation)


# Presence --------------------------------------------------------------------------------------


def agent_presence_set(user: Any, presence: str) -> AgentProfile:
    _require_agent(user)
    if presence not in Presence.values:
        raise ServiceError(_("Unknown presence: %(value)s") % {"value": presence}, code="bad_frame")
    profile = agent_profile(user)
    profile.presence = presence
    profile.save(update_fields=["presence", "updated_at"])
    events.agents_changed()
    if presence == Presence.ONLINE:
        transaction.on_commit(_queue_assignment)
    return profile


def agent_seen(user: Any) -> None:
    """A console of the agent is open (it connected, or pinged). Written at most every few
    seconds per agent."""
    now = timezone.now()
    recent = now - timedelta(seconds=settings.AGENTS["SEEN_WRITE_SECONDS"])
    AgentProfile.objects.filter(user=user).filter(
        Q(last_seen_at__isnull=True) | Q(last_seen_at__lt=recent)
    ).update(last_seen_at=now)


def _seen_since() -> Any:
    return timezone.now() - timedelta(seconds=settings.AGENTS["GRACE_SECONDS"])


# Claim and assignment -------------------------------------------------------------------------


def conversation_claim(
    conversation: Conversation | int, agent: Any, *, assigned_by: Any = None
) -> Conversation:
    """Give a waiting conversation to `agent`: the agent clicked "claim", or the assignment
    (`assigned_by` None and called from `conversations_assign`) or a supervisor picked them.
    Exactly one of two simultaneous claims wins; the other gets code "taken"."""
    _require_agent(agent)
    with transaction.atomic():
        locked = _locked(conversation)
        if locked.status != ConversationStatus.WAITING_AGENT:
            if locked.assigned_agent_id and locked.assigned_agent_id != agent.pk:
                raise ServiceError(
                    _("Another agent has already taken this conversation."), code="taken"
                )
            raise ServiceError(_("This conversation is not waiting for an agent."), code="taken")
        # Locking the agent's profile serialises their claims, so capacity holds under races.
        profile = AgentProfile.objects.select_for_update().filter(user=agent).first()
        profile = profile or AgentProfile.objects.create(user=agent)
        if _open_count(agent) >= profile.capacity:
            raise ServiceError(
                _("You already have %(n)d open conversations, your capacity.")
                % {"n": profile.capacity},
                code="at_capacity",
            )
        locked.status = ConversationStatus.AGENT
        locked.assigned_agent = agent
        locked.assigned_at = timezone.now()
        with _in_language(locked):
            _tell_customer(
                locked, _("%(name)s has joined the conversation.") % {"name": display_name(agent)}
            )
        locked.save(update_fields=ASSIGNMENT_FIELDS)
        kind = EventKind.CLAIMED if assigned_by is None else EventKind.ASSIGNED
        _record(locked, kind, actor=assigned_by or agent, agent=agent)
        _status_changed(locked, agent)
    return locked


def _console_users() -> Any:
    """Ids of the users `is_agent` accepts (superusers, or the console permissions through a
    group or directly), as a subquery: assignment picks among them in one query."""
    granted = Permission.objects.filter(
        content_type__app_label="agents", codename__in=["use_console", "supervise"]
    )
    return (
        get_user_model()
        .objects.filter(
            Q(is_superuser=True)
            | Q(groups__permissions__in=granted)
            | Q(user_permissions__in=granted)
        )
        .values("pk")
    )


def _least_busy_agent(language: str) -> Any:
    """The online, connected agent for this language with the most free capacity (ties: the
    one who got a conversation longest ago)."""
    profile = (
        AgentProfile.objects.filter(
            presence=Presence.ONLINE,
            last_seen_at__gte=_seen_since(),
            user__is_active=True,
            user__in=_console_users(),
        )
        .filter(Q(languages__len=0) | Q(languages__contains=[language]))
        .annotate(
            open=Count(
                "user__assigned_conversations",
                filter=Q(user__assigned_conversations__status=ConversationStatus.AGENT),
            )
        )
        .filter(open__lt=F("capacity"))
        .select_related("user")
        .order_by("open", "updated_at")
        .first()
    )
    return profile.user if profile is not None else None


def conversations_assign() -> int:
    """Assign waiting conversations, oldest first, to free online agents. Called after a
    handoff, when an agent comes online or frees capacity, and periodically. Returns how many
    were assigned."""
    if not settings.AGENTS["AUTO_ASSIGN"]:
        return 0
    assigned = 0
    # A language nobody free speaks stays so for the rest of the pass (assigning only uses
    # capacity up), so its other waiting conversations cost no query: a long queue with no agent
    # online is one lookup per language, not one per conversation.
    no_agent: set[str] = set()
    waiting = Conversation.objects.filter(status=ConversationStatus.WAITING_AGENT).order_by(
        "handed_off_at", "pk"
    )
    for pk, language in waiting.values_list("pk", "language")[:200]:
        language = language or "en"
        if language in no_agent:
            continue
        agent = _least_busy_agent(language)
        if agent is None:
            no_agent.add(language)
            continue
        try:
            conversation_claim(pk, agent, assigned_by=agent)
            assigned += 1
        except ServiceError as exc:  # claimed meanwhile, or the agent filled up: next one
            logger.info("assignment of %s skipped: %s", pk, exc)
    return assigned


def _queue_assignment() -> None:
    from apps.agents.tasks import conversations_assign_task

    conversations_assign_task.delay()


def conversation_handed_off(conversation: Conversation) -> None:
    """The bot (or the customer) put a conversation in the queue: show it to the agents and
    try to assign it, after the commit."""
    events.conversation_changed(conversation)
    transaction.on_commit(_queue_assignment)


# Working a conversation ------------------------------------------------------------------------


def _require_holder(conversation: Conversation, user: Any) -> None:
    """The conversation is with a person, and `user` is that person or a supervisor."""
    if conversation.status != ConversationStatus.AGENT:
        raise ServiceError(_("This conversation is not with an agent."), code="not_assigned")
    if conversation.assigned_agent_id != user.pk and not is_supervisor(user):
        raise ServiceError(_("This conversation is assigned to another agent."), code="forbidden")


def message_original_reveal(conversation: Conversation, user: Any, message_id: Any) -> str:
    """The text a customer wrote before its personal data was redacted, for the agent handling
    the conversation (or a supervisor). Every reveal is recorded in the audit log (ids only)."""
    if conversation.assigned_agent_id != user.pk and not is_supervisor(user):
        raise ServiceError(
            _("Only the agent handling this conversation can see what was redacted."),
            code="forbidden",
        )
    message = conversation_services.conversation_message(
        conversation, message_id, role=Role.CUSTOMER
    )
    if message is None:
        raise NotFoundError(_("There is no such message."), code="not_found")
    if not message.redacted:
        raise ServiceError(
            _("Nothing of this message is kept beyond what is shown."), code="not_redacted"
        )
    audit_record(
        AuditEvent.Kind.SECURITY,
        actor=user,
        detail={
            "reason": "pii_revealed",
            "conversation": str(conversation.public_id),
            "message": str(message.public_id),
        },
    )
    return message.original_text


def agent_message_send(
    conversation: Conversation | int, agent: Any, text: Any, *, client_id: str = ""
) -> Message:
    _require_agent(agent)
    text = conversation_services.validate_text(text)
    client_id = str(client_id or "")[:64]
    with transaction.atomic():
        locked = _locked(conversation)
        if client_id:
            existing = Message.objects.filter(conversation=locked, client_id=client_id).first()
            if existing is not None:
                return existing
        _require_holder(locked, agent)
        message = conversation_services.message_append(
            locked,
            role=Role.AGENT,
            text=text,
            author=agent,
            client_id=client_id,
            language=locked.language,
        )
        fields = list(conversation_services.SEQUENCE_FIELDS)
        if locked.first_agent_reply_at is None:
            locked.first_agent_reply_at = timezone.now()
            fields.append("first_agent_reply_at")
        locked.save(update_fields=fields)
        if "first_agent_reply_at" in fields:
            events.conversation_changed(locked)
    return message


def conversation_transfer(
    conversation: Conversation | int, actor: Any, *, to_agent: Any = None, note: str = ""
) -> Conversation:
    """Pass a conversation to another agent, or back to the queue (`to_agent` None)."""
    _require_agent(actor)
    with transaction.atomic():
        locked = _locked(conversation)
        _require_holder(locked, actor)
        if to_agent is not None:
            _require_agent(to_agent)
            if to_agent.pk == locked.assigned_agent_id:
                raise ServiceError(_("The conversation is already theirs."), code="bad_frame")
            profile = agent_profile(to_agent)
            if profile.presence != Presence.ONLINE:
                raise ServiceError(_("That agent is not online."), code="not_online")
            if _open_count(to_agent) >= profile.capacity:
                raise ServiceError(_("That agent has no free capacity."), code="at_capacity")
            locked.assigned_agent = to_agent
            locked.assigned_at = timezone.now()
            with _in_language(locked):
                _tell_customer(
                    locked,
                    _("%(name)s will continue helping you.") % {"name": display_name(to_agent)},
                )
            kind = EventKind.TRANSFERRED
        else:
            _unassign(locked, ConversationStatus.WAITING_AGENT)
            with _in_language(locked):
                _tell_customer(
                    locked, _("We are passing you to another agent. Please stay in this chat.")
                )
            kind = EventKind.REQUEUED
            transaction.on_commit(_queue_assignment)
        locked.save(update_fields=ASSIGNMENT_FIELDS)
        _record(locked, kind, actor=actor, agent=to_agent, note=note)
        _status_changed(locked, to_agent)
    return locked


def conversation_return_to_bot(conversation: Conversation | int, actor: Any) -> Conversation:
    _require_agent(actor)
    with transaction.atomic():
        locked = _locked(conversation)
        _require_holder(locked, actor)
        _unassign(locked, ConversationStatus.BOT)
        locked.state = {**(locked.state or {}), "low_confidence_streak": 0}
        with _in_language(locked):
            _tell_customer(locked, _("You are back with the assistant. Ask me anything."))
        locked.save(update_fields=[*ASSIGNMENT_FIELDS, "state"])
        _record(locked, EventKind.TO_BOT, actor=actor)
        _status_changed(locked)
    transaction.on_commit(_queue_assignment)  # the agent has room for another one
    return locked


def conversation_close(
    conversation: Conversation | int, actor: Any, *, resolution: str = Resolution.RESOLVED
) -> Conversation:
    """Close with a resolution code; the customer is asked to rate the help (1-5)."""
    _require_agent(actor)
    if resolution not in Resolution.values:
        raise ServiceError(_("Unknown resolution code."), code="bad_frame")
    with transaction.atomic():
        locked = _locked(conversation)
        if locked.status == ConversationStatus.CLOSED:
            raise ServiceError(_("This conversation is already closed."), code="closed")
        if locked.status == ConversationStatus.AGENT:
            _require_holder(locked, actor)
        elif not is_supervisor(actor):
            raise ServiceError(
                _("Only a supervisor can close this conversation."), code="forbidden"
            )
        locked.status = ConversationStatus.CLOSED
        locked.closed_at = timezone.now()
        locked.resolution_code = resolution
        with _in_language(locked):
            _tell_customer(
                locked,
                _("This conversation is closed. How would you rate the help you got, from 1 to 5?"),
            )
        locked.save(
            update_fields=[
                "status",
                "closed_at",
                "resolution_code",
                *conversation_services.SEQUENCE_FIELDS,
            ]
        )
        _record(locked, EventKind.CLOSED, actor=actor, note=resolution)
        publish_to_chat(locked.public_id, {"type": "csat_request", "scale": [1, 2, 3, 4, 5]})
        _status_changed(locked)
    transaction.on_commit(_queue_assignment)
    return locked


def conversation_rate(conversation: Conversation | int, score: Any) -> Conversation:
    """The customer's rating of a closed conversation (CSAT, 1-5), once."""
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        raise ServiceError(_("A rating is a whole number from 1 to 5."), code="bad_frame")
    with transaction.atomic():
        locked = _locked(conversation)
        if locked.status != ConversationStatus.CLOSED:
            raise ServiceError(_("Only a closed conversation can be rated."), code="not_closed")
        if locked.csat is not None:
            raise ServiceError(_("This conversation has already been rated."), code="rated")
        locked.csat = score
        locked.csat_at = timezone.now()
        locked.save(update_fields=["csat", "csat_at", "updated_at"])
        _record(locked, EventKind.RATED, note=str(score))
        publish_to_chat(locked.public_id, {"type": "csat_done", "score": score})
        events.conversation_changed(locked)
    return locked


# Agents who went away --------------------------------------------------------------------------


def agents_gone_release() -> int:
    """Conversations of agents whose console has not been seen for the grace period (closed,
    crashed, offline) go back to the queue, with a system note the customer sees; those agents
    are set offline. A reload or a short network loss stays within the grace. Returns how many
    conversations went back."""
    cutoff = _seen_since()
    released = 0
    gone = AgentProfile.objects.filter(
        Q(last_seen_at__lt=cutoff) | Q(last_seen_at__isnull=True),
        user__assigned_conversations__status=ConversationStatus.AGENT,
    ).distinct()
    for profile in gone.select_related("user"):
        held = Conversation.objects.filter(
            assigned_agent=profile.user, status=ConversationStatus.AGENT
        ).values_list("pk", flat=True)
        for conversation_id in held:
            with transaction.atomic():
                locked = _locked(conversation_id)
                if (
                    locked.status != ConversationStatus.AGENT
                    or locked.assigned_agent_id != profile.user_id
                ):
                    continue
                _unassign(locked, ConversationStatus.WAITING_AGENT)
                with _in_language(locked):
                    _tell_customer(
                        locked,
                        _(
                            "Your agent has been disconnected. We are finding another agent; "
                            "please stay in this chat."
                        ),
                    )
                locked.save(update_fields=ASSIGNMENT_FIELDS)
                _record(locked, EventKind.AGENT_LOST, agent=profile.user)
                _status_changed(locked)
                released += 1
        AgentProfile.objects.filter(pk=profile.pk).update(presence=Presence.OFFLINE)
        events.agents_changed()
    if released:
        transaction.on_commit(_queue_assignment)
    return released
