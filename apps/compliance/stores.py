"""Every place a customer's data is held, one class per store: how to find the subject's data
there (`find`, run again after the erasure as the verification), erase it (`erase`) and export
it (`export`, for access requests). The erasure report lists these stores in this order.

Database stores are erased together in one transaction (`DATABASE_ERASE_ORDER`); the others
(caches, Redis, Celery results, cold storage, export files) before it, so that a failure there
leaves the database as it was and the request can simply run again.

Everything an erasure removes is in the access export: each store exports what it holds, except
where another store's export already carries it (`exported_with`: a conversation's export holds
its messages with their originals decrypted, ratings, form state and agent events).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import redis
from django.conf import settings
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.cache import cache
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.db.models import Count, Q, TextField
from django.db.models.functions import Cast
from django.utils.functional import Promise
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from apps.agents.models import ConversationEvent
from apps.audit.models import AuditEvent
from apps.compliance import retention
from apps.compliance.models import DataSubjectRequest, IdentifierKind
from apps.compliance.selectors import Subject, decrypted, record_matches, unreadable
from apps.conversations.caches import AnswerCache, cache_question, question_digest
from apps.conversations.models import (
    Channel,
    Conversation,
    Customer,
    Message,
    SemanticCacheEntry,
)
from apps.knowledge.models import KnowledgeBase
from apps.orders.models import Order, ReturnRequest
from apps.safety.models import ModerationFlag
from apps.safety.pseudonyms import pseudonym_candidates

logger = logging.getLogger(__name__)


@dataclass
class Found:
    """What a store holds of the subject. `searchable` is False where the store cannot be
    searched at all (then nothing can be claimed about it)."""

    count: int
    details: dict[str, Any] = field(default_factory=dict)
    searchable: bool = True


class StoreFailure(Exception):
    """A store could not be searched, erased, verified or exported (`step`); the store's own
    error is the cause (`__cause__`)."""

    def __init__(self, store: Store, step: str) -> None:
        super().__init__(f"{store.key} ({step})")
        self.store = store
        self.step = step


class Store:
    key: ClassVar[str]
    label: ClassVar[Promise]
    # Kept by design (the audit log): found, never erased; verified for plaintext instead.
    kept: ClassVar[bool] = False
    # The store whose export holds this one's data (then `export` returns None).
    exported_with: ClassVar[str] = ""

    def find(self, subject: Subject) -> Found:
        raise NotImplementedError

    def erase(self, subject: Subject) -> int:
        raise NotImplementedError

    def verify(self, subject: Subject) -> Found:
        return self.find(subject)

    def export(self, subject: Subject) -> Any:
        return None

    def note(self, details: dict[str, Any]) -> str:
        """A line for the report about how this store was handled, or ""."""
        return ""


# --- Database ---------------------------------------------------------------------------------


def _conversations(subject: Subject) -> Any:
    return Conversation.objects.filter(
        Q(pk__in=subject.conversation_pks)
        | Q(public_id__in=subject.conversation_ids)
        | Q(customer__public_id__in=subject.customer_ids)
    )


def _notes(lines: dict[str, str], details: dict[str, Any]) -> str:
    """The notes (`lines`, each with a count `%(n)d`) whose count in `details` is not zero."""
    return " ".join(line % {"n": details[key]} for key, line in lines.items() if details.get(key))


def _messages(subject: Subject) -> Any:
    return Message.objects.filter(
        Q(pk__in=subject.message_pks) | Q(conversation__in=_conversations(subject))
    )


class CustomersStore(Store):
    key = "customers"
    label = _("Customers")

    def _rows(self, subject: Subject) -> Any:
        return Customer.objects.filter(
            Q(pk__in=subject.customer_pks)
            | Q(public_id__in=subject.customer_ids)
            | Q(external_id__in=subject.external_ids - {""})
        )

    def find(self, subject: Subject) -> Found:
        return Found(self._rows(subject).count())

    def erase(self, subject: Subject) -> int:
        deleted = self._rows(subject).delete()[1]
        return deleted.get(Customer._meta.label, 0)

    def export(self, subject: Subject) -> Any:
        return [retention.model_fields(c) for c in self._rows(subject).order_by("pk")]


class ConversationsStore(Store):
    key = "conversations"
    label = _("Conversations (summaries included)")

    def find(self, subject: Subject) -> Found:
        return Found(_conversations(subject).count())

    def erase(self, subject: Subject) -> int:
        deleted = _conversations(subject).delete()[1]
        return deleted.get(Conversation._meta.label, 0)

    def export(self, subject: Subject) -> Any:
        conversations = list(_conversations(subject).select_related("customer").order_by("pk"))
        return [_readable(record) for record in retention.conversation_records(conversations)]


def _readable(record: dict[str, Any]) -> dict[str, Any]:
    """An archive-style record with each message's original decrypted, for the data subject."""
    for message in record["messages"]:
        message["original"] = decrypted(message.get("original_encrypted", ""))
        message.pop("original_encrypted", None)
    return record


class MessagesStore(Store):
    key = "messages"
    label = _("Messages (text, entities, sources, generation details)")
    exported_with = "conversations"

    def find(self, subject: Subject) -> Found:
        return Found(_messages(subject).count())

    def erase(self, subject: Subject) -> int:
        deleted = _messages(subject).delete()[1]
        return deleted.get(Message._meta.label, 0)


class OriginalsStore(Store):
    key = "originals"
    label = _("Encrypted originals of messages")
    exported_with = "conversations"  # decrypted, as "original"

    def find(self, subject: Subject) -> Found:
        tokens = _messages(subject).exclude(original_encrypted="")
        tokens = tokens.values_list("original_encrypted", flat=True)
        count, unreadable_count = 0, 0
        for token in tokens.iterator(chunk_size=2000):
            count += 1
            unreadable_count += unreadable(token)
        details: dict[str, Any] = {}
        if unreadable_count:
            details["unreadable"] = unreadable_count  # the subject's own, still erased
        if subject.mentionable and subject.unreadable_originals:
            # Anyone's originals the search for the e-mail address or phone number could not
            # read: a mention in one of them cannot be ruled out.
            details["not_searched"] = len(subject.unreadable_originals)
        return Found(count, details)

    def note(self, details: dict[str, Any]) -> str:
        lines = {
            "unreadable": gettext(
                "%(n)d of the subject's originals could not be decrypted (their key was "
                "retired); they were emptied all the same."
            ),
            "not_searched": gettext(
                "%(n)d encrypted originals in the database could not be decrypted, so they "
                "could not be searched for the e-mail address or phone number."
            ),
        }
        return _notes(lines, details)

    def erase(self, subject: Subject) -> int:
        return _messages(subject).exclude(original_encrypted="").update(original_encrypted="")


class FeedbackStore(Store):
    key = "feedback"
    label = _("Feedback (answer ratings, conversation ratings)")
    exported_with = "conversations"  # messages' "rating", the conversation's "csat"

    def find(self, subject: Subject) -> Found:
        ratings = _messages(subject).exclude(rating="").count()
        csat = _conversations(subject).filter(csat__isnull=False).count()
        return Found(ratings + csat, {"answer_ratings": ratings, "conversation_ratings": csat})

    def erase(self, subject: Subject) -> int:
        ratings = _messages(subject).exclude(rating="").update(rating="", rated_at=None)
        csat = _conversations(subject).filter(csat__isnull=False).update(csat=None, csat_at=None)
        return ratings + csat


class FormsStore(Store):
    key = "forms"
    label = _("Forms (dialogue state and slots)")
    exported_with = "conversations"  # the conversation's "state"

    def find(self, subject: Subject) -> Found:
        return Found(_conversations(subject).exclude(state={}).count())

    def erase(self, subject: Subject) -> int:
        return _conversations(subject).exclude(state={}).update(state={})


def _returns(subject: Subject) -> Any:
    """The subject's return requests: found when the subject was resolved, or opened in one of
    the subject's conversations."""
    return ReturnRequest.objects.filter(
        Q(pk__in=subject.return_pks) | Q(conversation__in=_conversations(subject))
    )


class OrdersStore(Store):
    """Return requests opened in the subject's conversations hold free text (the reason) and a
    photo link: both are emptied and the link to the conversation cut. The return and its order
    stay (the store's own records); the orders' contact mobile numbers are the next store's."""

    key = "orders"
    label = _("Orders and returns (personal fields)")

    def _holding(self, subject: Subject) -> Any:
        """The subject's returns that still hold a reason, a photo or the conversation link."""
        return _returns(subject).exclude(reason="", photo_url="", conversation__isnull=True)

    def find(self, subject: Subject) -> Found:
        returns = _returns(subject)
        holding = self._holding(subject)
        count = holding.count()
        if subject.mentionable:
            # A return whose reason mentions the e-mail or phone, wherever it came from.
            for reason, photo in ReturnRequest.objects.exclude(pk__in=holding).values_list(
                "reason", "photo_url"
            ):
                count += subject.mentioned_in(reason, photo)
        orders = returns.values("order_id").distinct().count()
        return Found(count, {"returns": returns.count(), "orders_linked": orders})

    def note(self, details: dict[str, Any]) -> str:
        if not details.get("returns"):
            return ""
        return gettext(
            "%(orders)d linked orders kept (the store's records); the returns' reason and "
            "photo were emptied."
        ) % {"orders": details.get("orders_linked", 0)}

    def erase(self, subject: Subject) -> int:
        return self._holding(subject).update(reason="", photo_url="", conversation=None)

    def export(self, subject: Subject) -> Any:
        return [
            {
                "number": r.number,
                "order": r.order.number,
                "item": r.order.item,
                "status": r.status,
                "reason": r.reason,
                "photo_url": r.photo_url,
                "created_at": retention.jsonable(r.created_at),
            }
            for r in _returns(subject).select_related("order").order_by("pk")
        ]


class OrderContactsStore(Store):
    """The mobile number an order is delivered to (`Order.contact_phone`) and the store account
    that placed it (`Order.customer_ref`). The subject's orders are those whose number is the
    subject's phone number (a phone request), those of the subject's returns, those the
    subject's conversations confirmed in a chat by the number's last digits
    (`Subject.order_numbers`), and those placed by the subject's store account (an app user:
    `_by_account`). The number is emptied, and the account of the orders the subject placed;
    the order stays (the store's record): a chat can then no longer confirm it and leaves it
    to a person."""

    key = "order_contacts"
    label = _("Orders' contact mobile numbers and store accounts")

    def _by_phone(self, subject: Subject) -> list[int]:
        """Orders whose contact number is the subject's phone number: narrowed in the database
        to numbers holding its last 4 digits, separators between them allowed ("138 0013 80
        00"), then matched as a phone number (separators, country codes)."""
        if subject.identifier_kind != IdentifierKind.PHONE or not subject.value:
            return []
        tail = r"\D*".join(subject.value[-4:])
        candidates = Order.objects.filter(contact_phone__regex=tail)
        return [
            pk
            for pk, phone in candidates.values_list("pk", "contact_phone")
            if subject.mentioned_in(phone)
        ]

    def _account_pseudonyms(self, subject: Subject) -> set[str]:
        """The stored pseudonyms of the subject's store accounts: the external ids of its
        customers of the conversation API (an app's user ids; a WeChat openid is no store
        account), and a channel id asked about for the API or any channel. Once the customers
        are erased (the verification, a run again) their channels are no longer known, and every
        external id of the subject counts: a wider search, never a narrower one."""
        external = subject.external_ids - {""}
        channels = Customer.objects.filter(external_id__in=external).values_list(
            "external_id", "channel"
        )
        elsewhere = {e for e, channel in channels if channel != Channel.API}
        api = {e for e, channel in channels if channel == Channel.API}
        accounts = external - (elsewhere - api)
        if (
            subject.identifier_kind == IdentifierKind.CHANNEL_ID
            and subject.channel in ("", Channel.API)
            and subject.value
        ):
            accounts.update(pseudonym_candidates(subject.value))
        return accounts

    def _by_account(self, subject: Subject) -> set[str]:
        """The store accounts, as orders name them, that are the subject's. Orders keep the
        store's own id and customers only its pseudonym, so every account the orders name is
        pseudonymised (under each configured key) and compared: a scan, as for the mentions of
        an e-mail address; data-subject requests are rare."""
        accounts = self._account_pseudonyms(subject)
        if not accounts:
            return set()
        refs = (
            Order.objects.exclude(customer_ref="")
            .order_by("customer_ref")
            .values_list("customer_ref", flat=True)
            .distinct()
        )
        return {
            ref
            for ref in refs.iterator(chunk_size=2000)
            if accounts.intersection(pseudonym_candidates(ref))
        }

    def _holding(
        self, subject: Subject, by_phone: list[int] | None = None, refs: set[str] | None = None
    ) -> Any:
        """The subject's orders that still hold a contact number or the subject's store account
        (`by_phone`, `refs`: `_by_phone`'s and `_by_account`'s answers, when the caller has
        them already)."""
        if by_phone is None:
            by_phone = self._by_phone(subject)
        if refs is None:
            refs = self._by_account(subject)
        linked = (
            Q(pk__in=by_phone)
            | Q(pk__in=_returns(subject).values("order_id"))
            | Q(number__in=sorted(subject.order_numbers))
            | Q(customer_ref__in=sorted(refs))
        )
        return Order.objects.filter(linked).filter(
            ~Q(contact_phone="") | Q(customer_ref__in=sorted(refs))
        )

    def find(self, subject: Subject) -> Found:
        refs = self._by_account(subject)
        counts = self._holding(subject, refs=refs).aggregate(
            found=Count("pk"),
            orders=Count("pk", filter=~Q(contact_phone="")),
            accounts=Count("pk", filter=Q(customer_ref__in=sorted(refs))),
        )
        return Found(counts["found"], {"orders": counts["orders"], "accounts": counts["accounts"]})

    def note(self, details: dict[str, Any]) -> str:
        lines = {
            "orders": gettext(
                "%(n)d orders kept (the store's records) with their contact mobile number "
                "emptied: a chat can no longer confirm them, so a person helps with them."
            ),
            "accounts": gettext(
                "%(n)d orders kept with the subject's store account emptied: an app's chat no "
                "longer shows them to that account without the mobile digits."
            ),
        }
        return _notes(lines, details)

    def erase(self, subject: Subject) -> int:
        refs = self._by_account(subject)
        pks = list(self._holding(subject, refs=refs).values_list("pk", flat=True))
        Order.objects.filter(pk__in=pks).exclude(contact_phone="").update(contact_phone="")
        Order.objects.filter(pk__in=pks, customer_ref__in=sorted(refs)).update(customer_ref="")
        return len(pks)

    def export(self, subject: Subject) -> Any:
        """Each order with its number in full where it is the subject's own phone number, else
        only its last 4 digits: confirming an order in a chat shows that the subject knew those,
        not that the number is theirs (it may be a relative's). The store account is given for
        the orders the subject placed (another order's may be someone else's)."""
        own, refs = self._by_phone(subject), self._by_account(subject)
        return [
            {
                "number": number,
                "item": item,
                "contact_phone": phone if pk in own else _masked(phone),
                "customer_ref": ref if ref in refs else "",
            }
            for pk, number, item, phone, ref in self._holding(subject, own, refs)
            .order_by("number")
            .values_list("pk", "number", "item", "contact_phone", "customer_ref")
        ]


# A digit with at least 4 more digits after it.
_MASKED_DIGIT_RE = re.compile(r"\d(?=(?:\D*\d){4})")


def _masked(phone: str) -> str:
    """`phone` with every digit but the last 4 as "*"."""
    return _MASKED_DIGIT_RE.sub("*", phone)


class AgentEventsStore(Store):
    key = "agent_events"
    label = _("Agent events (claims, transfers, notes)")
    exported_with = "conversations"  # the conversation's "events"

    def find(self, subject: Subject) -> Found:
        return Found(
            ConversationEvent.objects.filter(conversation__in=_conversations(subject)).count()
        )

    def erase(self, subject: Subject) -> int:
        events = ConversationEvent.objects.filter(conversation__in=_conversations(subject))
        return events.delete()[0]


class ModerationFlagsStore(Store):
    """Flags for staff on the subject's blocked or flagged messages: ids, scores, categories
    (the words stay in the message, exported with its conversation)."""

    key = "moderation_flags"
    label = _("Moderation flags (blocked or flagged messages)")

    def _rows(self, subject: Subject) -> Any:
        return ModerationFlag.objects.filter(
            Q(conversation__in=_conversations(subject)) | Q(message__in=_messages(subject))
        )

    def find(self, subject: Subject) -> Found:
        return Found(self._rows(subject).count())

    def erase(self, subject: Subject) -> int:
        return self._rows(subject).delete()[0]

    def export(self, subject: Subject) -> Any:
        flags = self._rows(subject).select_related("conversation", "message").order_by("pk")
        return [
            {
                "conversation": str(f.conversation.public_id),
                "message": str(f.message.public_id) if f.message else None,
                "message_seq": f.message.seq if f.message else None,
                "direction": f.direction,
                "source": f.source,
                "blocked": f.blocked,
                "score": f.score,
                "categories": f.categories,
                "created_at": retention.jsonable(f.created_at),
                "reviewed_at": retention.jsonable(f.reviewed_at),
            }
            for f in flags
        ]


class AdminHistoryStore(Store):
    """Django admin's change history names changed objects (a message's text starts its name)."""

    key = "admin_history"
    label = _("Admin change history")

    def _rows(self, subject: Subject) -> Any:
        q = Q(pk__in=[])
        for model, pks in (
            (Customer, subject.customer_pks),
            (Conversation, subject.conversation_pks),
            (Message, subject.message_pks),
        ):
            if pks:
                content_type = ContentType.objects.get_for_model(model)
                q |= Q(content_type=content_type, object_id__in=[str(pk) for pk in pks])
        return LogEntry.objects.filter(q)

    def find(self, subject: Subject) -> Found:
        return Found(self._rows(subject).count())

    def erase(self, subject: Subject) -> int:
        return self._rows(subject).delete()[0]

    def export(self, subject: Subject) -> Any:
        # Which staff member made the change is theirs, not the subject's: left out.
        entries = self._rows(subject).select_related("content_type").order_by("action_time", "pk")
        return [
            {
                "action_time": retention.jsonable(e.action_time),
                "action": {ADDITION: "added", CHANGE: "changed", DELETION: "deleted"}.get(
                    e.action_flag, str(e.action_flag)
                ),
                "object_type": e.content_type.model if e.content_type else "",
                "object": e.object_repr,
                "change": e.get_change_message(),
            }
            for e in entries
        ]


class SemanticCacheStore(Store):
    key = "semantic_cache"
    label = _("Semantic answer cache (questions and their vectors)")

    def _pks(self, subject: Subject) -> set[int]:
        questions = {cache_question(t) for t in subject.texts}
        pks = set(
            SemanticCacheEntry.objects.filter(question__in=questions).values_list("pk", flat=True)
        )
        if subject.mentionable:
            for pk, question in SemanticCacheEntry.objects.values_list("pk", "question").iterator():
                if pk not in pks and subject.mentioned_in(question):
                    pks.add(pk)
        return pks

    def find(self, subject: Subject) -> Found:
        return Found(len(self._pks(subject)))

    def erase(self, subject: Subject) -> int:
        return SemanticCacheEntry.objects.filter(pk__in=self._pks(subject)).delete()[0]

    def export(self, subject: Subject) -> Any:
        entries = SemanticCacheEntry.objects.filter(pk__in=self._pks(subject)).order_by("pk")
        return [
            {"question": e.question, "created_at": retention.jsonable(e.created_at)}
            for e in entries
        ]


# --- Caches and Redis ------------------------------------------------------------------------


def _cache_is_redis() -> bool:
    return settings.CACHES.get("default", {}).get("BACKEND", "").endswith("RedisCache")


def _redis_urls() -> list[str]:
    """Every Redis the platform writes to: the Django cache, the Channels layer, REDIS_URL."""
    urls = [settings.REDIS_URL] if getattr(settings, "REDIS_URL", "") else []
    if _cache_is_redis():
        location = settings.CACHES["default"].get("LOCATION")
        urls += location if isinstance(location, list) else [location]
    layer: dict[str, Any] = settings.CHANNEL_LAYERS.get("default", {})
    if "channels_redis" in layer.get("BACKEND", ""):
        for host in layer.get("CONFIG", {}).get("hosts", []):
            address = host.get("address") if isinstance(host, dict) else host
            if isinstance(address, str):
                urls.append(address)
    return list(dict.fromkeys(u for u in urls if u))


def _redis_keys(match: str = "*") -> Iterator[tuple[redis.Redis, bytes]]:
    for url in _redis_urls():
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(match=match, count=1000):
            yield client, key


def _exact_keys(subject: Subject) -> dict[str, tuple[int, str, str]]:
    """The current generation's exact-cache keys of the subject's texts: key -> (knowledge base
    id, language, text)."""
    keys: dict[str, tuple[int, str, str]] = {}
    existing = set(
        KnowledgeBase.objects.filter(pk__in={s[0] for s in subject.cache_scopes}).values_list(
            "pk", flat=True
        )
    )
    for kb_id, language in subject.cache_scopes:
        if kb_id not in existing:
            continue
        answers = AnswerCache(kb_id, language)
        for text in subject.texts:
            keys[answers.exact_key(text)] = (kb_id, language, text)
    return keys


class ExactCacheStore(Store):
    """The exact answer cache is keyed by a hash of the question. In Redis every generation's
    keys are found by that hash; in a local-memory cache only the current generation's."""

    key = "exact_cache"
    label = _("Exact answer cache")

    def _digests(self, subject: Subject) -> set[str]:
        # The same in every knowledge base and generation: Redis keys are matched on it.
        return {question_digest(text) for text in subject.texts}

    def _redis_matches(self, subject: Subject) -> list[tuple[redis.Redis, bytes]]:
        digests = self._digests(subject)
        if not digests:
            return []
        return [
            (client, key)
            for client, key in _redis_keys("*chat:answer:*")
            if key.decode(errors="replace").rsplit(":", 1)[-1] in digests
        ]

    def find(self, subject: Subject) -> Found:
        if _cache_is_redis():
            return Found(len(self._redis_matches(subject)), {"backend": "redis"})
        keys = _exact_keys(subject)
        return Found(len(cache.get_many(list(keys))) if keys else 0, {"backend": "local memory"})

    def note(self, details: dict[str, Any]) -> str:
        if details.get("backend") == "redis":
            return gettext("Redis: every index generation searched.")
        return gettext("Local-memory cache: the current index generation searched.")

    def erase(self, subject: Subject) -> int:
        if _cache_is_redis():
            return sum(client.delete(key) for client, key in self._redis_matches(subject))
        keys = list(_exact_keys(subject))
        present = len(cache.get_many(keys)) if keys else 0
        cache.delete_many(keys)
        return present

    def export(self, subject: Subject) -> Any:
        """The questions (as cached: without personal data) the subject's messages are cached
        under, per knowledge base and language; the answers are the knowledge base's."""
        entries: set[tuple[str, int, str]] = set()
        if _cache_is_redis():
            questions = {question_digest(t): cache_question(t) for t in subject.texts}
            for _client, key in self._redis_matches(subject):
                # "[prefix:version:]chat:answer:<kb>:<generation>:<language>:<digest>"
                rest = key.decode(errors="replace").split("chat:answer:", 1)[1]
                kb_id = rest.partition(":")[0]
                language, digest = rest.rsplit(":", 2)[1:]
                kb = int(kb_id) if kb_id.isdigit() else 0
                entries.add((questions.get(digest, ""), kb, language))
        else:
            keys = _exact_keys(subject)
            for key in cache.get_many(list(keys)) if keys else {}:
                kb, language, text = keys[key]
                entries.add((cache_question(text), kb, language))
        return [
            {"question": question, "knowledge_base": kb, "language": language}
            for question, kb, language in sorted(entries)
        ]


class RedisStateStore(Store):
    """Hot state in Redis: the Channels groups of the subject's conversations
    ("asgi:group:chat.<id>"), and any other key naming one of the subject's ids."""

    key = "redis"
    label = _("Hot session state in Redis")

    def _matches(self, subject: Subject) -> list[tuple[redis.Redis, bytes]]:
        tokens = subject.tokens()
        if not tokens:
            return []
        matches = []
        for client, key in _redis_keys():
            name = key.decode(errors="replace")
            # Answer-cache keys and task results are the next two stores' (counted there).
            if "chat:answer:" in name or name.startswith("celery-task-meta-"):
                continue
            if any(token in name for token in tokens):
                matches.append((client, key))
        return matches

    def find(self, subject: Subject) -> Found:
        if not _redis_urls():
            return Found(0, {"configured": False})
        return Found(len(self._matches(subject)), {"configured": True})

    def note(self, details: dict[str, Any]) -> str:
        if not details.get("configured"):
            return gettext("No Redis configured: no hot state outside the processes' memory.")
        return ""

    def erase(self, subject: Subject) -> int:
        return sum(client.delete(key) for client, key in self._matches(subject))

    def export(self, subject: Subject) -> Any:
        """The keys' names (a Channels group holds only the names of the sockets in it)."""
        names = {key.decode(errors="replace") for _client, key in self._matches(subject)}
        return [{"key": name} for name in sorted(names)]


class CeleryResultsStore(Store):
    """Task results. With no result backend (the platform's setting) nothing is stored; with a
    Redis backend every stored result is read and those naming the subject deleted; any other
    backend cannot be searched, and the verification says so."""

    key = "celery_results"
    label = _("Celery task results")

    def _backend(self) -> str:
        return str(getattr(settings, "CELERY_RESULT_BACKEND", None) or "")

    def _backend_is_redis(self) -> bool:
        return self._backend().startswith(("redis://", "rediss://"))

    def _matches(self, subject: Subject) -> list[tuple[redis.Redis, bytes, str]]:
        """The results naming the subject: (client, key, the stored result)."""
        tokens = subject.tokens() | ({subject.value} if subject.value else set())
        client = redis.Redis.from_url(self._backend())
        matches = []
        for key in client.scan_iter(match="celery-task-meta-*", count=1000):
            stored = client.get(key) or b""
            value = stored.decode(errors="replace") if isinstance(stored, bytes) else str(stored)
            if any(token in value for token in tokens) or subject.mentioned_in(value):
                matches.append((client, key, value))
        return matches

    def find(self, subject: Subject) -> Found:
        backend = self._backend()
        if not backend:
            return Found(0, {"configured": False})
        if not self._backend_is_redis():
            return Found(0, {"configured": True, "backend": backend.split(":", 1)[0]}, False)
        return Found(len(self._matches(subject)), {"configured": True, "backend": "redis"})

    def note(self, details: dict[str, Any]) -> str:
        if not details.get("configured"):
            return gettext("No result backend is configured: no task results are stored.")
        if details.get("backend") != "redis":
            return gettext("This result backend cannot be searched; check it by hand.")
        return ""

    def erase(self, subject: Subject) -> int:
        if not self._backend_is_redis():
            return 0
        return sum(client.delete(key) for client, key, _value in self._matches(subject))

    def export(self, subject: Subject) -> Any:
        if not self._backend_is_redis():
            return []
        results = [
            {"key": key.decode(errors="replace"), "value": value}
            for _client, key, value in self._matches(subject)
        ]
        return sorted(results, key=lambda r: r["key"])


# --- Files -----------------------------------------------------------------------------------


class ArchiveStore(Store):
    """Every batch file is searched: the manifests' (verified) and any leftover no manifest
    refers to (an old revision whose deletion failed). A leftover holding the subject is found,
    deleted by the erasure, and searched for again by the verification."""

    key = "archives"
    label = _("Cold-storage archive (conversations)")

    def find(self, subject: Subject) -> Found:
        storage = retention.archive_storage()
        listed = retention.manifests(storage)  # read once, for the batches and the leftovers
        batches: set[str] = set()
        count = 0
        for manifest, record in retention.archive_records(storage, listed):
            if record_matches(subject, record):
                count += 1
                batches.add(manifest.batch)
        details: dict[str, Any] = {"batches": len(batches)}
        leftovers, unreadable_files = 0, 0
        for name in retention.unreferenced_files(storage, listed):
            try:
                records = retention.file_records(storage, name)
            except retention.ArchiveVerificationError:
                unreadable_files += 1
                continue
            matched = sum(record_matches(subject, record) for record in records)
            if matched:
                count += matched
                leftovers += 1
        if leftovers:
            details["leftover_files"] = leftovers
        if unreadable_files:
            details["unreadable_files"] = unreadable_files
        return Found(count, details, searchable=not unreadable_files)

    def note(self, details: dict[str, Any]) -> str:
        lines = {
            "leftover_files": gettext(
                "%(n)d archive files that no manifest refers to (left behind by an earlier "
                "rewrite) held the data subject's records."
            ),
            "unreadable_files": gettext(
                "%(n)d archive files that no manifest refers to could not be read, so they "
                "could not be searched."
            ),
        }
        return _notes(lines, details)

    def erase(self, subject: Subject) -> int:
        storage = retention.archive_storage()
        removed = 0
        for manifest in retention.manifests(storage):
            removed += retention.batch_rewrite(
                manifest, lambda r: record_matches(subject, r), storage
            )
        # An old revision that could not be deleted (now or in an earlier run) still holds the
        # subject's records. One that cannot be deleted now either is found by the
        # verification, which then fails; the next run deletes it.
        leftovers = retention.leftovers_delete(
            storage, matches=lambda r: record_matches(subject, r)
        )
        return removed + leftovers.matching

    def export(self, subject: Subject) -> Any:
        # A leftover may hold a conversation a batch holds too: each conversation once.
        seen: set[str] = set()
        records = []
        for _file, record in retention.stored_records():
            conversation_id = record["conversation"]["public_id"]
            if conversation_id not in seen and record_matches(subject, record):
                seen.add(conversation_id)
                records.append(_readable(record))
        return records


def files_storage() -> Storage:
    """Where erasure reports and access exports are kept (private: exports are personal data)."""
    alias = settings.COMPLIANCE["FILES_STORAGE"]
    if alias:
        return storages[alias]
    return FileSystemStorage(location=settings.COMPLIANCE["FILES_DIR"])


def export_files_delete(request: DataSubjectRequest, storage: Storage) -> int:
    """Delete a request's access-export files and forget their names; returns how many files
    were deleted (an erasure of its customers, or the export's days being over)."""
    removed = 0
    for name in (request.export_json_file, request.export_pdf_file):
        if name and storage.exists(name):
            storage.delete(name)
            removed += 1
    DataSubjectRequest.objects.filter(pk=request.pk).update(export_json_file="", export_pdf_file="")
    return removed


class ExportFilesStore(Store):
    """Access exports made earlier for the same customers are copies of their data."""

    key = "exports"
    label = _("Earlier access exports")

    def _requests(self, subject: Subject) -> list[DataSubjectRequest]:
        """Requests with export files whose recorded customers include one of the subject's."""
        customers = Q(pk__in=[])
        for customer_id in subject.customer_ids:
            customers |= Q(subject__customers__contains=[customer_id])
        with_exports = DataSubjectRequest.objects.exclude(export_json_file="", export_pdf_file="")
        return list(with_exports.filter(customers))

    def find(self, subject: Subject) -> Found:
        return Found(
            sum(
                bool(name)
                for r in self._requests(subject)
                for name in (r.export_json_file, r.export_pdf_file)
            )
        )

    def erase(self, subject: Subject) -> int:
        storage = files_storage()
        return sum(export_files_delete(request, storage) for request in self._requests(subject))

    def export(self, subject: Subject) -> Any:
        return [
            {
                "request": str(r.public_id),
                "finished_at": retention.jsonable(r.finished_at),
                "files": [n for n in (r.export_json_file, r.export_pdf_file) if n],
            }
            for r in sorted(self._requests(subject), key=lambda r: r.pk)
        ]


class AuditLogStore(Store):
    """The audit log is append-only and kept: its rows name customers only by pseudonymous
    ids. The verification checks that no row holds the identifier itself."""

    key = "audit_log"
    label = _("Audit log (kept: pseudonymous ids only)")
    kept = True

    def _text_rows(self) -> Any:
        return AuditEvent.objects.annotate(detail_text=Cast("detail", TextField()))

    def _naming(self, subject: Subject) -> Any:
        """Rows whose endpoint or detail holds one of the subject's ids (none without ids)."""
        q = Q(pk__in=[])
        for token in sorted(subject.tokens()):
            q |= Q(endpoint__contains=token) | Q(detail_text__contains=token)
        return self._text_rows().filter(q)

    def find(self, subject: Subject) -> Found:
        return Found(self._naming(subject).count())

    def erase(self, subject: Subject) -> int:
        return 0

    def verify(self, subject: Subject) -> Found:
        """Rows holding the plaintext identifier (never the ids, which are allowed)."""
        kind, value = subject.identifier_kind, subject.value
        if kind == IdentifierKind.PSEUDONYM or not value:
            return Found(0)
        if kind == IdentifierKind.PHONE:
            # Narrow by the last digits, then match as a phone number (separators, codes).
            tail = value[-4:]
            rows = self._text_rows().filter(
                Q(endpoint__contains=tail) | Q(detail_text__contains=tail)
            )
            count = sum(
                subject.mentioned_in(endpoint, detail)
                for endpoint, detail in rows.values_list("endpoint", "detail_text")
            )
            return Found(count)
        rows = self._text_rows().filter(
            Q(endpoint__icontains=value) | Q(detail_text__icontains=value)
        )
        return Found(rows.count())

    def export(self, subject: Subject) -> Any:
        return [
            {
                "id": e.pk,
                "created_at": retention.jsonable(e.created_at),
                "kind": e.kind,
                "method": e.method,
                "endpoint": e.endpoint,
                "status": e.status,
            }
            for e in self._naming(subject).order_by("pk")[:1000]
        ]


# In the order the report lists them.
STORES: list[Store] = [
    CustomersStore(),
    ConversationsStore(),
    MessagesStore(),
    OriginalsStore(),
    FeedbackStore(),
    FormsStore(),
    OrdersStore(),
    OrderContactsStore(),
    AgentEventsStore(),
    ModerationFlagsStore(),
    SemanticCacheStore(),
    ExactCacheStore(),
    RedisStateStore(),
    CeleryResultsStore(),
    ArchiveStore(),
    ExportFilesStore(),
    AdminHistoryStore(),
    AuditLogStore(),
]
BY_KEY = {store.key: store for store in STORES}

# Outside the database first (a failure there leaves the database untouched), then the
# database in one transaction, from the leaves (fields emptied) to the customer rows.
EXTERNAL_ERASE_ORDER = ["exact_cache", "redis", "celery_results", "archives", "exports"]
DATABASE_ERASE_ORDER = [
    "originals",
    "feedback",
    # Before "orders", which cuts the links from the returns to the conversations (this store
    # finds the subject's orders through them too).
    "order_contacts",
    "forms",
    "orders",
    "agent_events",
    "moderation_flags",
    "admin_history",
    "semantic_cache",
    "messages",
    "conversations",
    "customers",
]
