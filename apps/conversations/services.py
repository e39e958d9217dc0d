"""Every write on conversations: start, receive (persist first), process, rate, hand off.

The socket consumer, the REST API, the admin and the Celery tasks all call these, so a message
is handled the same way whichever door it came through.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.conversations import engine, events
from apps.conversations.models import (
    Channel,
    Conversation,
    ConversationStatus,
    Customer,
    Decision,
    Message,
    Rating,
    Role,
)
from apps.conversations.serializers import message_frame
from apps.core import crypto
from apps.core.exceptions import NotFoundError, ServiceError
from apps.core.text import normalize
from apps.inference import selectors as inference_selectors
from apps.inference.generation import Generated, summary_generate
from apps.knowledge.models import KnowledgeBase
from apps.safety import pii
from apps.safety.pseudonyms import pseudonym, pseudonym_candidates

logger = logging.getLogger(__name__)

TOKEN_SALT = "conversations.token"  # noqa: S105 (a signing namespace, not a secret)
# Conversations longer than this get a summary, refreshed every SUMMARY_EVERY messages.
SUMMARY_AFTER = 20
SUMMARY_EVERY = 10


def conversation_start(
    *,
    knowledge_base: KnowledgeBase | int,
    channel: str = Channel.WEB,
    locale: str = "en",
    customer: Customer | None = None,
    external_id: str = "",
    api_key: Any = None,
) -> Conversation:
    """A new conversation, for the customer whose channel id is `external_id` (found again, or
    made) or a new anonymous one. `api_key`: the API key an app opened it with, which vouches
    for `external_id` (its signed-in user)."""
    if not isinstance(knowledge_base, KnowledgeBase):
        from apps.knowledge.selectors import knowledge_base_get

        knowledge_base = knowledge_base_get(knowledge_base)
    locale = locale if locale in ("en", "zh-hans") else "en"
    with transaction.atomic():
        if customer is None and external_id:
            # The channel's id for the customer is kept only as a keyed pseudonym; the same id
            # again is the same customer (their earlier conversations show in the console).
            customer = Customer.objects.filter(
                channel=channel, external_id__in=pseudonym_candidates(external_id)
            ).first() or Customer.objects.create(
                channel=channel, locale=locale, external_id=pseudonym(external_id)
            )
        elif customer is None:
            customer = Customer.objects.create(channel=channel, locale=locale)
        return Conversation.objects.create(
            customer=customer,
            knowledge_base=knowledge_base,
            channel=channel,
            language="zh" if locale == "zh-hans" else "en",
            api_key=api_key,
        )


def conversation_token(conversation: Conversation) -> str:
    """A signed token that proves the holder started this conversation (kept by the widget
    in local storage, by apps wherever they like)."""
    return signing.dumps({"c": str(conversation.public_id)}, salt=TOKEN_SALT, compress=True)


def conversation_from_token(token: Any) -> Conversation:
    if not isinstance(token, str) or not token:
        raise ServiceError(_("The conversation token is missing."), code="bad_token")
    try:
        payload = signing.loads(
            token, salt=TOKEN_SALT, max_age=settings.CHAT["TOKEN_MAX_AGE_SECONDS"]
        )
    except signing.BadSignature:
        raise ServiceError(
            _("The conversation token is not valid or has expired."), code="bad_token"
        ) from None
    conversation = (
        Conversation.objects.select_related("knowledge_base", "customer")
        .filter(public_id=payload.get("c"))
        .first()
    )
    if conversation is None:
        raise NotFoundError(_("This conversation no longer exists."), code="not_found")
    return conversation


def validate_text(text: Any) -> str:
    if not isinstance(text, str):
        raise ServiceError(_("The message must be text."), code="bad_frame")
    # Stored as typed (trimmed): NFKC would turn the customer's "？" into "?".
    text = text.strip()
    if not normalize(text):
        raise ServiceError(_("The message is empty."), code="empty")
    limit = settings.CHAT["MAX_MESSAGE_CHARS"]
    if len(text) > limit:
        raise ServiceError(
            _("The message is too long (%(n)d characters; at most %(max)d).")
            % {"n": len(text), "max": limit},
            code="too_long",
        )
    return text


# Saved with every write that appends messages (see message_append).
SEQUENCE_FIELDS = ["last_seq", "last_message_at", "updated_at"]
HANDOFF_FIELDS = ["status", "handoff_reason", "handed_off_at", "state", "summary"]


def message_append(conversation: Conversation, **fields: Any) -> Message:
    """A new message with the conversation's next sequence number, published to its sockets
    after the commit. The caller holds the conversation row locked (select_for_update) and
    saves SEQUENCE_FIELDS once it is done (the agent console's services use this too)."""
    conversation.last_seq += 1
    conversation.last_message_at = timezone.now()
    message = Message.objects.create(conversation=conversation, seq=conversation.last_seq, **fields)
    events.publish(conversation.public_id, {"type": "message", "message": message_frame(message)})
    return message


def message_receive(
    conversation: Conversation, text: Any, *, client_id: str = ""
) -> tuple[Message, bool]:
    """Store a customer's message; returns it and whether it is new. This runs before anything
    else looks at the message, so once it returns the message cannot be lost. The same
    client_id twice returns the stored message (a client retrying after a dropped socket)."""
    text = validate_text(text)
    client_id = str(client_id or "")[:64]
    try:
        with transaction.atomic():
            locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
            if locked.status == ConversationStatus.CLOSED:
                if client_id and (stored := _message_of_client(conversation, client_id)):
                    return stored, False
                raise ServiceError(_("This conversation is closed."), code="closed")
            message = message_append(
                locked, role=Role.CUSTOMER, client_id=client_id, **_stored_text(text)
            )
            locked.save(update_fields=SEQUENCE_FIELDS)
    except IntegrityError:
        # The unique (conversation, client_id): a retry of a message stored before, or the same
        # one raced in from another socket. Cheaper than looking first for every message.
        if client_id and (stored := _message_of_client(conversation, client_id)):
            return stored, False
        raise
    conversation.last_seq = locked.last_seq
    # `message.conversation` is the row as locked: its status and state are current.
    return message, True


def _message_of_client(conversation: Conversation, client_id: str) -> Message | None:
    return (
        Message.objects.select_related("conversation")
        .filter(conversation=conversation, client_id=client_id)
        .first()
    )


def _stored_text(text: str) -> dict[str, str]:
    """What a customer's message stores: the text with its personal data redacted, and the
    original only encrypted, and only when it differs."""
    redacted, spans = pii.redact(text)
    if not spans:
        return {"text": text}
    return {"text": redacted, "original_encrypted": crypto.encrypt(text)}


def _stored_entities(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entities as stored on the message: values that are personal data (a phone number, an
    e-mail address) are redacted like the text they came from."""
    stored = []
    for entity in entities:
        text, in_text = pii.redact(str(entity.get("text", "")))
        value, in_value = pii.redact(str(entity.get("value", "")))
        stored.append({**entity, "text": text, "value": value} if in_text or in_value else entity)
    return stored


def messages_originals_purge(*, now: datetime | None = None) -> int:
    """Empty the encrypted originals older than the retention period; returns how many."""
    days = settings.PII["ORIGINAL_RETENTION_DAYS"]
    cutoff = (now or timezone.now()) - timedelta(days=days)
    return (
        Message.objects.filter(created_at__lt=cutoff)
        .exclude(original_encrypted="")
        .update(original_encrypted="")
    )


def message_process(
    message: Message | int, *, cancel: threading.Event | None = None
) -> list[Message]:
    """Decide and store the bot's reply to a customer message. Idempotent: a message already
    processed returns the replies it got, so a crash between storing the message and replying
    is repaired by calling this again. `cancel`, when set (the customer's socket closed), stops
    a generated answer early; the extractive answer is stored for when they come back."""
    message_id = message.pk if isinstance(message, Message) else message
    started = time.perf_counter()
    message = Message.objects.select_related(
        "conversation__knowledge_base", "conversation__customer"
    ).get(pk=message_id)
    if message.processed_at is not None:
        return list(message.replies.order_by("seq"))
    conversation = message.conversation
    public_id, reply_to = conversation.public_id, message.public_id
    outcome = engine.decide(
        conversation,
        message.original_text,
        engine.Generation(
            before_seq=message.seq,
            stream_factory=lambda: events.ReplyStream(public_id, reply_to),
            cancel=cancel,
        ),
    )

    with transaction.atomic():
        message = Message.objects.select_for_update().get(pk=message_id)
        if message.processed_at is not None:  # another worker got there first
            return list(message.replies.order_by("seq"))
        conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
        replies = []
        for reply in outcome.replies:
            replies.append(
                message_append(
                    conversation,
                    role=Role.BOT,
                    text=reply.text,
                    reply_to=message,
                    language=outcome.language,
                    decision=reply.decision,
                    sources=reply.sources,
                    choices=reply.choices,
                    confidence=reply.confidence,
                    cache_hit=reply.cache_hit,
                    **_generation_fields(reply.generated),
                )
            )
        conversation.language = outcome.language
        conversation.state = outcome.state
        if outcome.intent:
            conversation.intent = outcome.intent
        fields = ["language", "state", "intent", *SEQUENCE_FIELDS]
        if outcome.decision == Decision.HANDOFF:
            replies.extend(
                _hand_off(conversation, outcome.handoff_reason, language=outcome.language)
            )
            fields += HANDOFF_FIELDS
        conversation.save(update_fields=list(dict.fromkeys(fields)))
        message.processed_at = timezone.now()
        message.language = outcome.language
        message.decision = outcome.decision
        message.intent = outcome.intent
        message.intent_confidence = outcome.intent_confidence
        message.entities = _stored_entities(outcome.entities)
        message.handoff_reason = outcome.handoff_reason
        first = outcome.replies[0] if outcome.replies else None
        if first is not None:
            message.sources = first.sources
            message.confidence = first.confidence
            message.cache_hit = first.cache_hit
        message.latency_ms = (time.perf_counter() - started) * 1000
        message.save(
            update_fields=[
                "processed_at",
                "language",
                "decision",
                "intent",
                "intent_confidence",
                "entities",
                "handoff_reason",
                "sources",
                "confidence",
                "cache_hit",
                "latency_ms",
            ]
        )
        if outcome.security:
            # Only pseudonymous ids go into the audit log, never the message's text.
            audit_record(
                AuditEvent.Kind.SECURITY,
                detail={
                    **outcome.security,
                    "conversation": str(conversation.public_id),
                    "message": str(message.public_id),
                },
            )
        summarized = int(conversation.state.get("summary_seq", 0))
        if conversation.last_seq >= SUMMARY_AFTER and (
            conversation.last_seq - summarized >= SUMMARY_EVERY
        ):
            _queue_summary(conversation.pk)
    return replies


def _generation_fields(generated: Generated | None) -> dict[str, Any]:
    if generated is None:
        return {}
    return {
        "generation_status": generated.status,
        "endpoint": generated.endpoint,
        "input_tokens": generated.input_tokens,
        "output_tokens": generated.output_tokens,
        "ttft_ms": generated.ttft_ms,
        "generation_ms": generated.generation_ms,
        "grounding_score": generated.grounding_score,
        "grounding_unsupported": generated.unsupported,
        "generation": generated.details,
    }


def _queue_summary(conversation_id: int) -> None:
    from apps.conversations.tasks import conversation_summarize_task

    transaction.on_commit(lambda: conversation_summarize_task.delay(conversation_id))


# What each hand-off reason code means, for people (codes stay in the data).
HANDOFF_REASONS = {
    "customer_request": gettext_lazy("the customer asked for a person"),
    "customer_button": gettext_lazy("the customer pressed “talk to a human”"),
    "anger": gettext_lazy("the customer is upset"),
    "low_confidence": gettext_lazy("the bot was unsure twice in a row"),
    "out_of_scope": gettext_lazy("outside what the bot handles"),
    "form_failed": gettext_lazy("a form could not be completed"),
    "return_window": gettext_lazy("the return window has passed"),
    "order_unconfirmed": gettext_lazy("the order could not be confirmed as the customer's"),
}


def handoff_reason_label(code: str) -> str:
    """A hand-off reason code in words, in the active language ("intent:x" names the intent
    whose policy is to hand off); an unknown code as it is."""
    if code.startswith("intent:"):
        return _("the intent %(intent)s goes to a person") % {"intent": code[len("intent:") :]}
    label = HANDOFF_REASONS.get(code)
    return str(label) if label is not None else code


def _hand_off(conversation: Conversation, reason: str, *, language: str) -> list[Message]:
    """Move a locked conversation to waiting_agent and tell the customer. The caller saves
    HANDOFF_FIELDS and SEQUENCE_FIELDS."""
    conversation.status = ConversationStatus.WAITING_AGENT
    conversation.handoff_reason = reason
    conversation.handed_off_at = timezone.now()
    conversation.state = {k: v for k, v in (conversation.state or {}).items() if k != "form"}
    conversation.summary = conversation_summary(conversation)
    with translation.override(engine.django_language(language)):
        if reason == "customer_request":
            text = _("I'm passing you to a human agent now. Please stay in this chat.")
        elif reason == "anger":
            text = _("I'm sorry about this. I'm passing you to a human agent who can sort it out.")
        else:
            text = _(
                "I'd better pass this to a human agent. Please stay in this chat; someone will "
                "be with you shortly."
            )
    notice = message_append(
        conversation, role=Role.SYSTEM, text=text, language=language, handoff_reason=reason
    )
    events.publish(
        conversation.public_id,
        {"type": "status", "status": conversation.status, "reason": reason},
    )
    if inference_selectors.pool().has_endpoints("chat"):
        _queue_summary(conversation.pk)  # the agent gets the pool's summary when it is ready
    from apps.agents.services import conversation_handed_off

    conversation_handed_off(conversation)  # into the agents' queue
    return [notice]


def conversation_hand_off(conversation: Conversation, reason: str) -> list[Message]:
    """Hand a conversation to the agents' queue (the customer's button, or staff). Does nothing
    when a person already has it."""
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        if locked.status != ConversationStatus.BOT:
            return []
        notices = _hand_off(locked, reason, language=locked.language)
        locked.save(update_fields=[*HANDOFF_FIELDS, *SEQUENCE_FIELDS])
    conversation.status = locked.status
    return notices


def message_rate(conversation: Conversation, message_id: Any, value: Any) -> Message:
    if value not in Rating.values:
        raise ServiceError(_('A rating is "up" or "down".'), code="bad_frame")
    message = conversation_message(conversation, message_id)
    if message is None:
        raise NotFoundError(_("There is no such message in this conversation."), code="not_found")
    if not message.rateable:
        raise ServiceError(_("Only the bot's answers can be rated."), code="bad_frame")
    message.rating = value
    message.rated_at = timezone.now()
    message.save(update_fields=["rating", "rated_at"])
    events.publish(
        conversation.public_id,
        {"type": "rated", "message_id": str(message.public_id), "value": value},
    )
    return message


def conversation_message(
    conversation: Conversation, message_id: Any, **filters: Any
) -> Message | None:
    """The conversation's message with this public id (as a client sent it: any value), or
    None when there is none or the id is not one."""
    try:
        public_id = uuid.UUID(str(message_id))
    except ValueError:
        return None
    return Message.objects.filter(conversation=conversation, public_id=public_id, **filters).first()


def conversation_summary(conversation: Conversation, *, recent: int = 4) -> str:
    """An extractive summary for the agent who takes over: what the customer first asked,
    the intents seen, the form in progress, the last few customer messages, and why the bot
    handed off.

    Labels are in the conversation's language: the summary is stored text, built while a
    message is processed (socket, API or Celery task: no console user's language is known
    then), it is also the model's context, and the pool's summary that replaces it is written
    in the conversation's language too."""
    customer_messages = list(
        conversation.messages.filter(role=Role.CUSTOMER)
        .order_by("seq")
        .values_list("text", "intent")
    )
    if not customer_messages:
        return ""
    intents = sorted({intent for _text, intent in customer_messages if intent})
    form = (conversation.state or {}).get("form")
    tail = customer_messages[1:][-recent:]
    with translation.override(engine.django_language(conversation.language)):
        lines = [
            _("First question: %(text)s") % {"text": customer_messages[0][0][:200]},
        ]
        if intents:
            lines.append(_("Intents: %(intents)s") % {"intents": ", ".join(intents)})
        if form:
            lines.append(
                _("Open form: %(intent)s %(slots)s")
                % {"intent": form["intent"], "slots": form.get("slots", {})}
            )
        if tail:
            lines.append(
                _("Latest: %(messages)s")
                % {"messages": " | ".join(text[:120] for text, _intent in tail)}
            )
        if conversation.handoff_reason:
            lines.append(
                _("Handoff reason: %(reason)s")
                % {"reason": handoff_reason_label(conversation.handoff_reason)}
            )
    return "\n".join(lines)


def conversation_summarize(conversation_id: int) -> str:
    """Refresh the summary the agents see: written by the model pool when one is configured
    (the extractive summary otherwise, or when the pool fails). The pool is asked outside the
    row lock; the summary is saved only if no newer one was saved meanwhile."""
    conversation = Conversation.objects.get(pk=conversation_id)
    seq = conversation.last_seq
    summary = conversation_summary(conversation)
    pool = inference_selectors.pool()
    if summary and pool.has_endpoints("chat"):
        transcript = list(
            conversation.messages.exclude(role=Role.SYSTEM)
            .order_by("seq")
            .values_list("role", "text")
        )
        generated = summary_generate(
            transcript,
            language=conversation.language,
            pool=pool,
            deadline_seconds=settings.INFERENCE["SUMMARY_DEADLINE_SECONDS"],
        )
        summary = generated or summary
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
        if int((conversation.state or {}).get("summary_seq", 0)) > seq:
            return conversation.summary
        conversation.summary = summary
        conversation.state = {**(conversation.state or {}), "summary_seq": seq}
        conversation.save(update_fields=["summary", "state", "updated_at"])
    return conversation.summary


def messages_unprocessed_process(older_than_seconds: float = 30) -> int:
    """Reply to customer messages whose processing died (a crashed worker or server).
    Called periodically by Celery beat and when a customer's socket resumes."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    pending = Message.objects.filter(
        role=Role.CUSTOMER, processed_at__isnull=True, created_at__lt=cutoff
    ).values_list("pk", flat=True)[:500]
    done = 0
    for message_id in pending:
        try:
            message_process(message_id)
            done += 1
        except ServiceError as exc:
            logger.warning("message %s not processed: %s", message_id, exc)
    return done
