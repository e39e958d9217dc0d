"""Every write to the NLU: intents, their examples, and training the intent classifier.

A change to intents or examples queues one retraining after the commit; the training runs in
a worker (`tasks.classifier_train_task`), or right after the commit in the embedded mode.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.core.exceptions import ServiceError
from apps.core.stamps import change_stamp_bump
from apps.core.text import detect_language, normalize
from apps.nlu import classifier, selectors
from apps.nlu.models import ClassifierStatus, ClassifierVersion, Intent, IntentExample

logger = logging.getLogger(__name__)

EDITABLE_FIELDS = (
    "name",
    "description",
    "keywords",
    "slots",
    "action",
    "start_label_en",
    "start_label_zh",
    "handoff_policy",
    "response_en",
    "response_zh",
    "is_active",
)
# Fields whose change alters what the classifier learns.
TRAINING_FIELDS = ("name", "is_active")
# Set while a retraining is queued and not yet started, so a burst of edits queues one job.
QUEUED_KEY = "nlu:training-queued"
CHANGED_KEY = "nlu:examples-changed-at"
QUEUED_TIMEOUT = 3600
# A training row older than this that is still "training" was interrupted (worker killed).
STALE_TRAINING = timedelta(hours=2)
# Serialises version numbering and activation across processes.
ADVISORY_LOCK = 0x6E6C7531  # "nlu1"


def _invalidate_intents() -> None:
    transaction.on_commit(lambda: change_stamp_bump(selectors.INTENTS_KEY))


class _QueueTraining:
    """The on-commit callback that queues a retraining (marks itself once it has run)."""

    def __init__(self) -> None:
        self.done = False

    def __call__(self) -> None:
        from apps.nlu.tasks import classifier_train_task

        self.done = True
        changed_at = timezone.now().isoformat()
        cache.set(CHANGED_KEY, changed_at, timeout=QUEUED_TIMEOUT)
        if cache.add(QUEUED_KEY, 1, timeout=QUEUED_TIMEOUT):
            classifier_train_task.delay(requested_at=changed_at)


def _queue_forced_training() -> None:
    from apps.nlu.tasks import classifier_train_task

    classifier_train_task.delay()


def classifier_retrain_queue(*, force: bool = False) -> None:
    """Queue a retraining after the commit: one job for all the changes of a transaction, and
    none while another is waiting to start (it will read the newest examples anyway). `force`
    queues one whatever happened since the last training ("Train now")."""
    if force:
        transaction.on_commit(_queue_forced_training)
        return
    # Django keeps the open transaction's callbacks on the connection until it commits or
    # rolls back: one still waiting there will queue the job for this change too. Without
    # this, the embedded mode (eager Celery) would train once per changed example.
    pending = getattr(connection, "run_on_commit", None) or []
    if any(isinstance(entry[1], _QueueTraining) and not entry[1].done for entry in pending):
        return
    transaction.on_commit(_QueueTraining())


def last_change_at(requested_at: datetime | None) -> datetime | None:
    """The latest of `requested_at` and the last change recorded by `classifier_retrain_queue`
    (a change made while a job was already queued only leaves its time there)."""
    from django.utils.dateparse import parse_datetime

    recorded = cache.get(CHANGED_KEY)
    latest = parse_datetime(recorded) if isinstance(recorded, str) else None
    if requested_at is None or latest is None:
        return requested_at
    return max(requested_at, latest)


def _clean_keywords(keywords: Iterable[str]) -> list[str]:
    out: list[str] = []
    for keyword in keywords:
        keyword = normalize(str(keyword))
        if keyword and keyword.lower() not in {k.lower() for k in out}:
            out.append(keyword[:200])
    return out


def _clean_example(text: str) -> str:
    return normalize(str(text))[:500]


def intent_create(
    *,
    name: str,
    description: str = "",
    keywords: Iterable[str] = (),
    slots: list[dict[str, Any]] | None = None,
    action: str = "",
    start_label_en: str = "",
    start_label_zh: str = "",
    handoff_policy: str = "never",
    response_en: str = "",
    response_zh: str = "",
    is_active: bool = True,
    examples: Iterable[str] = (),
    queue: bool = True,
) -> Intent:
    intent = Intent(
        name=name.strip(),
        description=description,
        keywords=_clean_keywords(keywords),
        slots=slots if slots is not None else [],
        action=action,
        start_label_en=start_label_en,
        start_label_zh=start_label_zh,
        handoff_policy=handoff_policy,
        response_en=response_en,
        response_zh=response_zh,
        is_active=is_active,
    )
    intent.full_clean()
    with transaction.atomic():
        intent.save()
        intent_examples_set(intent, examples, queue=False)
    _invalidate_intents()
    if queue:
        classifier_retrain_queue()
    return intent


def intent_update(intent: Intent, *, queue: bool = True, **fields: Any) -> Intent:
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise ServiceError(_("Not editable: %(names)s") % {"names": ", ".join(sorted(unknown))})
    if "keywords" in fields:
        fields["keywords"] = _clean_keywords(fields["keywords"])
    if "name" in fields:
        fields["name"] = str(fields["name"]).strip()
    changed = [name for name, value in fields.items() if getattr(intent, name) != value]
    if not changed:
        return intent
    for name in changed:
        setattr(intent, name, fields[name])
    intent.full_clean()
    intent.save(update_fields=[*changed, "updated_at"])
    _invalidate_intents()
    if queue and any(name in TRAINING_FIELDS for name in changed):
        classifier_retrain_queue()
    return intent


def intent_delete(intent: Intent, *, queue: bool = True) -> None:
    intent.delete()
    _invalidate_intents()
    if queue:
        classifier_retrain_queue()


@dataclass
class ExamplesChange:
    added: int
    removed: int


def intent_example_add(intent: Intent, text: str, *, queue: bool = True) -> IntentExample:
    """Add one example (its language detected). Adding a text the intent has returns it."""
    cleaned = _clean_example(text)
    if not cleaned:
        raise ServiceError(_("An example must not be empty."))
    example, created = IntentExample.objects.get_or_create(
        intent=intent, text=cleaned, defaults={"language": detect_language(cleaned)}
    )
    if created and queue:
        classifier_retrain_queue()
    return example


def intent_example_update(example: IntentExample, text: str, *, queue: bool = True) -> None:
    cleaned = _clean_example(text)
    if not cleaned:
        raise ServiceError(_("An example must not be empty."))
    if cleaned == example.text:
        return
    if IntentExample.objects.filter(intent_id=example.intent_id, text=cleaned).exists():
        raise ServiceError(_("This intent already has the example “%(text)s”.") % {"text": cleaned})
    example.text = cleaned
    example.language = detect_language(cleaned)
    example.save(update_fields=["text", "language", "updated_at"])
    if queue:
        classifier_retrain_queue()


def intent_example_delete(example: IntentExample, *, queue: bool = True) -> None:
    example.delete()
    if queue:
        classifier_retrain_queue()


def intent_examples_set(
    intent: Intent, texts: Iterable[str], *, queue: bool = True
) -> ExamplesChange:
    """Make the intent's examples exactly `texts` (cleaned, duplicates dropped)."""
    wanted: list[str] = []
    for text in texts:
        cleaned = _clean_example(text)
        if cleaned and cleaned not in wanted:
            wanted.append(cleaned)
    existing = dict(intent.examples.values_list("text", "pk"))
    removed = [pk for text, pk in existing.items() if text not in wanted]
    added = [text for text in wanted if text not in existing]
    if removed:
        IntentExample.objects.filter(pk__in=removed).delete()
    IntentExample.objects.bulk_create(
        [IntentExample(intent=intent, text=text, language=detect_language(text)) for text in added]
    )
    if queue and (added or removed):
        classifier_retrain_queue()
    return ExamplesChange(len(added), len(removed))


def training_examples() -> tuple[list[str], list[str], dict[str, list[str]]]:
    """(texts, intent names, extra texts per intent) of every active intent."""
    rows = list(
        IntentExample.objects.filter(intent__is_active=True)
        .order_by("pk")
        .values_list("text", "intent__name")
    )
    names = [name for _, name in rows]
    label_texts = classifier.label_name_texts(names, selectors.OUT_OF_SCOPE_INTENT)
    return [text for text, _ in rows], names, label_texts


def _advisory_lock() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ADVISORY_LOCK])


def _version_start(requested_at: datetime | None) -> ClassifierVersion | None:
    """A new version row in "training", or None when a training that started after
    `requested_at` (so it saw that change) has finished or is running."""
    with transaction.atomic():
        _advisory_lock()
        ClassifierVersion.objects.filter(
            status=ClassifierStatus.TRAINING, created_at__lt=timezone.now() - STALE_TRAINING
        ).update(
            status=ClassifierStatus.FAILED,
            finished_at=timezone.now(),
            error=_("Interrupted: the training did not finish."),
        )
        if (
            requested_at is not None
            and ClassifierVersion.objects.filter(
                created_at__gt=requested_at,
                status__in=[ClassifierStatus.TRAINING, ClassifierStatus.READY],
            ).exists()
        ):
            return None
        number = (ClassifierVersion.objects.aggregate(top=Max("number"))["top"] or 0) + 1
        return ClassifierVersion.objects.create(number=number, status=ClassifierStatus.TRAINING)


def classifier_train(requested_at: datetime | None = None) -> ClassifierVersion | None:
    """Train a classifier on every active intent's examples and make it the active one.

    The version row is created first ("training"), so staff see a training in progress; it
    ends "ready" (and active, unless a newer one already is) with cross-validated metrics, or
    "failed" with the error, which is raised again. None when there is nothing to do: no
    examples at all, or a training that started after `requested_at` covers that change.
    """
    texts, labels, label_texts = training_examples()
    if not texts:
        return None
    version = _version_start(requested_at)
    if version is None:
        return None
    started = time.perf_counter()
    try:
        trained = classifier.train(
            texts, labels, oos_label=selectors.OUT_OF_SCOPE_INTENT, label_texts=label_texts
        )
        data = trained.to_bytes()
    except classifier.TrainingError as exc:
        classifier_train_failed(version, str(exc))
        raise ServiceError(str(exc), code="training_failed") from exc
    except Exception as exc:
        # Recorded where staff see it, then raised for the task's retry policy.
        classifier_train_failed(version, f"{type(exc).__name__}: {exc}")
        raise
    version.model = data
    version.labels = trained.labels
    version.metrics = trained.metrics
    version.oos_threshold = trained.threshold
    version.example_count = len(texts)
    version.intent_count = len([label for label in trained.labels if label != trained.oos_label])
    version.train_seconds = round(time.perf_counter() - started, 2)
    version.status = ClassifierStatus.READY
    version.finished_at = timezone.now()
    with transaction.atomic():
        _advisory_lock()
        version.save(
            update_fields=[
                "model",
                "labels",
                "metrics",
                "oos_threshold",
                "example_count",
                "intent_count",
                "train_seconds",
                "status",
                "finished_at",
            ]
        )
        newer_active = ClassifierVersion.objects.filter(
            is_active=True, number__gt=version.number
        ).exists()
        if not newer_active:
            classifier_activate(version)
    logger.info(
        "intent classifier v%s trained: %s examples, accuracy %s",
        version.number,
        len(texts),
        trained.metrics.get("accuracy"),
    )
    return version


def classifier_activate(version: ClassifierVersion) -> ClassifierVersion:
    """Make a ready version the one `selectors.classify` uses (e.g. to roll back)."""
    if version.status != ClassifierStatus.READY:
        raise ServiceError(_("Only a ready classifier can be made active."))
    with transaction.atomic():
        # Off first: at most one version may be active at any moment.
        ClassifierVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(
            is_active=False
        )
        ClassifierVersion.objects.filter(pk=version.pk).update(is_active=True)
        version.is_active = True
        token = selectors.classifier_token(version.pk, version.number)
        transaction.on_commit(lambda: cache.set(selectors.CLASSIFIER_KEY, token, None))
    return version


def classifier_train_failed(version: ClassifierVersion, error: str) -> None:
    """Record why a training failed, on its version row."""
    ClassifierVersion.objects.filter(pk=version.pk).update(
        status=ClassifierStatus.FAILED, finished_at=timezone.now(), error=error[:5000]
    )
    version.status = ClassifierStatus.FAILED
    version.error = error[:5000]
    logger.warning("intent classifier v%s failed: %s", version.number, error)


DEMO_FILE = Path(__file__).resolve().parent / "demo" / "intents.json"
# The demo file names its intents and leaves them active: every other editable field.
DEMO_FIELDS = tuple(name for name in EDITABLE_FIELDS if name not in ("name", "is_active"))


@dataclass
class DemoReport:
    created: int
    updated: int
    unchanged: int
    version: ClassifierVersion | None


def demo_intents_load(path: Path = DEMO_FILE) -> DemoReport:
    """The demo store's intents with their examples, and a classifier trained on them. Safe to
    run again: intents are matched by name, and nothing is retrained when nothing changed and
    an active classifier this code can read is there."""
    entries = json.loads(path.read_text(encoding="utf-8"))
    created = updated = unchanged = 0
    with transaction.atomic():
        for entry in entries:
            values = {name: entry[name] for name in DEMO_FIELDS if name in entry}
            examples = [*entry.get("examples_en", []), *entry.get("examples_zh", [])]
            intent = Intent.objects.filter(name=entry["name"]).first()
            if intent is None:
                intent_create(name=entry["name"], examples=examples, queue=False, **values)
                created += 1
                continue
            before = intent.updated_at
            intent_update(intent, queue=False, **values)
            change = intent_examples_set(intent, examples, queue=False)
            if change.added or change.removed or intent.updated_at != before:
                updated += 1
            else:
                unchanged += 1
    version = None
    if created or updated or not selectors.active_classifier_loads():
        version = classifier_train()
    return DemoReport(created, updated, unchanged, version)
