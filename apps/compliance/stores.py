"""Every place a customer's data is held, one class per store: how to find the subject's data
there (`find`, run again after the erasure as the verification), erase it (`erase`) and export
it (`export`, for access requests). The erasure report lists these stores in this order.

Database stores are erased together in one transaction (`DATABASE_ERASE_ORDER`); the others
(caches, Redis, Celery results, cold storage, export files) before it, so that a failure there
leaves the database as it was and the request can simply run again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import redis
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.cache import cache
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.db.models import Q, TextField
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
from apps.conversations.models import Conversation, Customer, Message, SemanticCacheEntry
from apps.knowledge.models import KnowledgeBase
from apps.orders.models import ReturnRequest

logger = logging.getLogger(__name__)


@dataclass
class Found:
    """What a store holds of the subject. `searchable` is False where the store cannot be
    searched at all (then nothing can be claimed about it)."""

    count: int
    details: dict[str, Any] = field(default_factory=dict)
    searchable: bool = True


class Store:
    key: ClassVar[str]
    label: ClassVar[Promise]
    # Kept by design (the audit log): found, never erased; verified for plaintext instead.
    kept: ClassVar[bool] = False

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

    def find(self, subject: Subject) -> Found:
        return Found(_messages(subject).count())

    def erase(self, subject: Subject) -> int:
        deleted = _messages(subject).delete()[1]
        return deleted.get(Message._meta.label, 0)


class OriginalsStore(Store):
    key = "originals"
    label = _("Encrypted originals of messages")

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
        return " ".join(
            line % {"n": details[key]} for key, line in lines.items() if details.get(key)
        )

    def erase(self, subject: Subject) -> int:
        return _messages(subject).exclude(original_encrypted="").update(original_encrypted="")


class FeedbackStore(Store):
    key = "feedback"
    label = _("Feedback (answer ratings, conversation ratings)")

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

    def find(self, subject: Subject) -> Found:
        return Found(_conversations(subject).exclude(state={}).count())

    def erase(self, subject: Subject) -> int:
        return _conversations(subject).exclude(state={}).update(state={})


class OrdersStore(Store):
    """Return requests opened in the subject's conversations hold free text (the reason) and a
    photo link: both are emptied and the link to the conversation cut. The return and its order
    stay (the store's own records); the Order model holds no personal fields."""

    key = "orders"
    label = _("Orders and returns (personal fields)")

    def _returns(self, subject: Subject) -> Any:
        return ReturnRequest.objects.filter(
            Q(pk__in=subject.return_pks) | Q(conversation__in=_conversations(subject))
        )

    def _holding(self, subject: Subject) -> Any:
        """The subject's returns that still hold a reason, a photo or the conversation link."""
        return self._returns(subject).exclude(reason="", photo_url="", conversation__isnull=True)

    def find(self, subject: Subject) -> Found:
        returns = self._returns(subject)
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
            "%(orders)d linked orders kept: orders hold no personal fields; the returns' "
            "reason and photo were emptied."
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
            for r in self._returns(subject).select_related("order").order_by("pk")
        ]


class AgentEventsStore(Store):
    key = "agent_events"
    label = _("Agent events (claims, transfers, notes)")

    def find(self, subject: Subject) -> Found:
        return Found(
            ConversationEvent.objects.filter(conversation__in=_conversations(subject)).count()
        )

    def erase(self, subject: Subject) -> int:
        events = ConversationEvent.objects.filter(conversation__in=_conversations(subject))
        return events.delete()[0]


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


def _exact_keys(subject: Subject) -> set[str]:
    keys: set[str] = set()
    existing = set(
        KnowledgeBase.objects.filter(pk__in={s[0] for s in subject.cache_scopes}).values_list(
            "pk", flat=True
        )
    )
    for kb_id, language in subject.cache_scopes:
        if kb_id not in existing:
            continue
        answers = AnswerCache(kb_id, language)
        keys |= {answers.exact_key(text) for text in subject.texts}
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

    def _matches(self, subject: Subject) -> list[tuple[redis.Redis, bytes]]:
        tokens = subject.tokens() | ({subject.value} if subject.value else set())
        client = redis.Redis.from_url(self._backend())
        matches = []
        for key in client.scan_iter(match="celery-task-meta-*", count=1000):
            stored = client.get(key) or b""
            value = stored.decode(errors="replace") if isinstance(stored, bytes) else stored
            if any(token in value for token in tokens) or subject.mentioned_in(value):
                matches.append((client, key))
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
        return sum(client.delete(key) for client, key in self._matches(subject))


# --- Files -----------------------------------------------------------------------------------


class ArchiveStore(Store):
    key = "archives"
    label = _("Cold-storage archive (conversations)")

    def find(self, subject: Subject) -> Found:
        batches: set[str] = set()
        count = 0
        for manifest, record in retention.archive_records():
            if record_matches(subject, record):
                count += 1
                batches.add(manifest.batch)
        return Found(count, {"batches": len(batches)})

    def erase(self, subject: Subject) -> int:
        removed = 0
        for manifest in retention.manifests():
            removed += retention.batch_rewrite(manifest, lambda r: record_matches(subject, r))
        return removed

    def export(self, subject: Subject) -> Any:
        return [
            _readable(record)
            for _, record in retention.archive_records()
            if record_matches(subject, record)
        ]


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
    AgentEventsStore(),
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
    "forms",
    "orders",
    "agent_events",
    "admin_history",
    "semantic_cache",
    "messages",
    "conversations",
    "customers",
]
