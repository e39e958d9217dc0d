"""Reads: who a data subject is (every customer, conversation and archived record an identifier
leads to) and what text of theirs the answer caches may be keyed on."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q

from apps.compliance import identifiers, retention
from apps.compliance.models import IdentifierKind
from apps.conversations.models import Conversation, Customer, Message, Role
from apps.core import crypto
from apps.orders.models import ReturnRequest
from apps.orders.services import confirmed_orders
from apps.safety.pseudonyms import pseudonym_candidates

logger = logging.getLogger(__name__)


@dataclass
class Subject:
    """A data subject as found in the stores. The plaintext identifier and the texts live only
    in memory, for one run; `as_record()` is what may be stored (pseudonymous ids only)."""

    identifier_kind: str
    value: str
    channel: str = ""
    customer_pks: set[int] = field(default_factory=set)
    customer_ids: set[str] = field(default_factory=set)
    external_ids: set[str] = field(default_factory=set)
    conversation_pks: set[int] = field(default_factory=set)
    conversation_ids: set[str] = field(default_factory=set)
    archived_conversation_ids: set[str] = field(default_factory=set)
    message_pks: set[int] = field(default_factory=set)
    return_pks: set[int] = field(default_factory=set)
    # The numbers of the orders the subject's conversations (archived ones included) confirmed
    # by the last digits of their contact mobile number. Read when the subject is resolved and
    # kept in the request's record: the erasure removes the conversations (their state) before
    # the verification searches again, or a later run.
    order_numbers: set[str] = field(default_factory=set)
    # What the customers wrote (as stored and as written), for the answer caches' keys.
    texts: set[str] = field(default_factory=set)
    # (knowledge base id, language) pairs the answer caches may hold their questions under.
    cache_scopes: set[tuple[int, str]] = field(default_factory=set)
    # Encrypted originals that could not be decrypted while looking for the subject (a key
    # taken out of DATA_ENCRYPTION_KEY), each counted once however often it was read.
    unreadable_originals: set[str] = field(default_factory=set)

    @property
    def mentionable(self) -> bool:
        """Whether the identifier is something people write in text (e-mail, phone)."""
        return self.identifier_kind in (IdentifierKind.EMAIL, IdentifierKind.PHONE)

    def tokens(self) -> set[str]:
        """Strings that, found anywhere, point to this subject (ids and stored pseudonyms)."""
        found = self.customer_ids | self.conversation_ids | self.archived_conversation_ids
        return {t for t in found | self.external_ids if t}

    def mentioned_in(self, *texts: str) -> bool:
        return self.mentionable and identifiers.any_mentions(
            texts, self.identifier_kind, self.value
        )

    def as_record(self) -> dict[str, Any]:
        return {
            "customers": sorted(self.customer_ids),
            "external_ids": sorted(self.external_ids),
            "conversations": sorted(self.conversation_ids),
            "archived_conversations": sorted(self.archived_conversation_ids),
            "returns": sorted(self.return_pks),
            "orders": sorted(self.order_numbers),
        }


def decrypted(token: str, subject: Subject | None = None) -> str:
    if not token:
        return ""
    try:
        return crypto.decrypt(token)
    except crypto.DecryptionError:
        # A key taken out of DATA_ENCRYPTION_KEY: the original cannot be read by anyone any
        # more, so it cannot be searched either; the count goes into the results.
        if subject is not None:
            subject.unreadable_originals.add(hashlib.sha256(token.encode()).hexdigest())
        return ""


def unreadable(token: str) -> bool:
    """Whether an encrypted original can no longer be decrypted."""
    if not token:
        return False
    try:
        crypto.decrypt(token)
    except crypto.DecryptionError:
        return True
    return False


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _customer_q(subject: Subject) -> Q | None:
    kind, value = subject.identifier_kind, subject.value
    if kind == IdentifierKind.PSEUDONYM:
        as_uuid = _uuid(value)
        q = Q(external_id=value)
        if as_uuid is not None:
            q |= Q(public_id=as_uuid) | Q(conversations__public_id=as_uuid)
        return q
    if kind == IdentifierKind.CHANNEL_ID:
        q = Q(external_id__in=pseudonym_candidates(value))
        return q & Q(channel=subject.channel) if subject.channel else q
    return None


def _mentioning_conversations(subject: Subject) -> set[int]:
    """Conversations whose messages (originals decrypted), entities, form state or summary, or
    whose returns, mention the e-mail address or phone number. A full scan: this is a rare
    operation, and only a scan is sure to find text that is stored encrypted."""
    found: set[int] = set()
    messages = Message.objects.values_list(
        "conversation_id", "text", "original_encrypted", "entities"
    )
    for conversation_id, text, original, entities in messages.iterator(chunk_size=2000):
        if conversation_id in found:
            continue
        if subject.mentioned_in(
            text, decrypted(original, subject), json.dumps(entities, ensure_ascii=False)
        ):
            found.add(conversation_id)
    conversations = Conversation.objects.values_list("pk", "state", "summary")
    for pk, state, summary in conversations.iterator(chunk_size=2000):
        if pk not in found and subject.mentioned_in(summary, json.dumps(state, ensure_ascii=False)):
            found.add(pk)
    for pk, conversation_id, reason, photo in ReturnRequest.objects.values_list(
        "pk", "conversation_id", "reason", "photo_url"
    ).iterator(chunk_size=2000):
        if subject.mentioned_in(reason, photo):
            subject.return_pks.add(pk)
            if conversation_id is not None:
                found.add(conversation_id)
    return found


def record_texts(record: dict[str, Any], subject: Subject | None = None) -> list[str]:
    """Every free text of an archived conversation, encrypted originals decrypted."""
    texts = [
        record["conversation"].get("summary", ""),
        json.dumps(record["conversation"].get("state", {}), ensure_ascii=False),
    ]
    for message in record["messages"]:
        texts.append(message.get("text", ""))
        texts.append(decrypted(message.get("original_encrypted", ""), subject))
        texts.append(json.dumps(message.get("entities", []), ensure_ascii=False))
    for event in record["events"]:
        texts.append(event.get("note", ""))
    return texts


def record_matches(subject: Subject, record: dict[str, Any]) -> bool:
    """Whether an archived conversation belongs to the subject: by its ids and pseudonyms, or,
    for an e-mail or phone, by any of its texts mentioning it."""
    customer = record["customer"]
    if (
        customer["public_id"] in subject.customer_ids
        or (customer.get("external_id") and customer["external_id"] in subject.external_ids)
        or record["conversation"]["public_id"] in subject.conversation_ids
        or record["conversation"]["public_id"] in subject.archived_conversation_ids
    ):
        return True
    raw = json.dumps(record, ensure_ascii=False)
    if any(token in raw for token in subject.tokens()):
        return True
    return subject.mentioned_in(*record_texts(record, subject))


def _direct_archive_match(subject: Subject, record: dict[str, Any]) -> bool:
    kind, value = subject.identifier_kind, subject.value
    customer = record["customer"]
    if kind == IdentifierKind.PSEUDONYM:
        return value in (
            customer["public_id"],
            customer.get("external_id"),
            record["conversation"]["public_id"],
        )
    if kind == IdentifierKind.CHANNEL_ID:
        if subject.channel and customer.get("channel") != subject.channel:
            return False
        return customer.get("external_id") in pseudonym_candidates(value)
    return subject.mentioned_in(*record_texts(record, subject))


def subject_resolve(
    identifier_kind: str, value: str, *, channel: str = "", known: dict[str, Any] | None = None
) -> Subject:
    """Everything an identifier leads to, in the database and in the archive. `known` is what an
    earlier run of the same request recorded (its customers are included even if the
    identifier no longer leads to them, e.g. after a partial erasure)."""
    subject = Subject(identifier_kind, value, channel)
    known = known or {}
    customer_q = _customer_q(subject)
    customers = (
        Customer.objects.filter(customer_q) if customer_q is not None else Customer.objects.none()
    )
    customer_pks = set(customers.values_list("pk", flat=True))
    if subject.mentionable:
        customer_pks |= set(
            Conversation.objects.filter(pk__in=_mentioning_conversations(subject)).values_list(
                "customer_id", flat=True
            )
        )
    subject.customer_ids |= set(known.get("customers", []))
    subject.external_ids |= {e for e in known.get("external_ids", []) if e}

    # The archive, once (every batch file, leftovers no manifest refers to included): records
    # found directly, then (below) every record of their customers.
    archived = list(retention.stored_records())
    for _, record in archived:
        if _direct_archive_match(subject, record):
            subject.customer_ids.add(record["customer"]["public_id"])
            subject.archived_conversation_ids.add(record["conversation"]["public_id"])
            if record["customer"].get("external_id"):
                subject.external_ids.add(record["customer"]["external_id"])

    for pk, public_id, external_id in Customer.objects.filter(
        Q(pk__in=customer_pks) | Q(public_id__in=subject.customer_ids)
    ).values_list("pk", "public_id", "external_id"):
        subject.customer_pks.add(pk)
        subject.customer_ids.add(str(public_id))
        if external_id:
            subject.external_ids.add(external_id)

    conversations = Conversation.objects.filter(
        Q(customer_id__in=subject.customer_pks)
        | Q(public_id__in=[c for c in known.get("conversations", []) if _uuid(c)])
    )
    for pk, public_id, kb_id, language, state in conversations.values_list(
        "pk", "public_id", "knowledge_base_id", "language", "state"
    ):
        subject.conversation_pks.add(pk)
        subject.conversation_ids.add(str(public_id))
        subject.order_numbers.update(confirmed_orders(state))
        subject.cache_scopes |= {(kb_id, language), (kb_id, "en"), (kb_id, "zh")}
    subject.return_pks |= set(
        ReturnRequest.objects.filter(conversation_id__in=subject.conversation_pks).values_list(
            "pk", flat=True
        )
    )
    subject.return_pks |= {int(pk) for pk in known.get("returns", [])}
    # A run after a failed verification: the conversations that confirmed them may be gone.
    subject.order_numbers |= {n for n in known.get("orders", []) if isinstance(n, str) and n}
    for pk, role, text, original in Message.objects.filter(
        conversation_id__in=subject.conversation_pks
    ).values_list("pk", "role", "text", "original_encrypted"):
        subject.message_pks.add(pk)
        if role == Role.CUSTOMER:
            subject.texts.add(text)
            subject.texts.add(decrypted(original, subject))
    for _, record in archived:
        if record_matches(subject, record):
            subject.archived_conversation_ids.add(record["conversation"]["public_id"])
            subject.customer_ids.add(record["customer"]["public_id"])
            subject.order_numbers.update(confirmed_orders(record["conversation"].get("state")))
            # Archiving cut the returns' link to the conversation; the record names them.
            subject.return_pks |= set(
                ReturnRequest.objects.filter(number__in=record.get("returns") or []).values_list(
                    "pk", flat=True
                )
            )
            for message in record["messages"]:
                if message.get("role") == Role.CUSTOMER:
                    subject.texts.add(message.get("text", ""))
                    subject.texts.add(decrypted(message.get("original_encrypted", "")))
            kb_id = record["conversation"]["knowledge_base_id"]
            subject.cache_scopes |= {(kb_id, "en"), (kb_id, "zh")}
    subject.texts.discard("")
    return subject
