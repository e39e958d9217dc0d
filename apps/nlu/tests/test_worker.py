"""Retraining on a real Celery worker: a web process edits intents, the job goes to Redis after
the commit, a separate worker process trains, and this process picks the new version up."""

from __future__ import annotations

import time

import pytest

from apps.nlu import selectors
from apps.nlu.models import ClassifierStatus, ClassifierVersion
from tests.support import services as real

EDIT = """
from django.db import transaction
from apps.nlu import services
with transaction.atomic():
    services.intent_create(name="greeting", examples=["hello", "hi there", "good morning", "你好"])
    services.intent_create(name="order_status", examples=[
        "where is my order", "track my parcel", "has my order shipped", "我的订单到哪了",
        "查一下物流"])
"""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_retraining_runs_on_a_real_celery_worker(redis_url):
    env = real.worker_env(redis_url)
    worker = real.start_celery_worker(env)
    try:
        real.manage_shell(EDIT, env)
        deadline = time.monotonic() + 120
        version = None
        while time.monotonic() < deadline:
            version = ClassifierVersion.objects.exclude(status=ClassifierStatus.TRAINING).first()
            if version is not None:
                break
            time.sleep(0.5)
        assert version is not None, "no classifier was trained within 120 s"
        assert version.status == ClassifierStatus.READY, version.error
        assert version.is_active and version.example_count == 9
        assert version.metrics["folds"] >= 2 and "accuracy" in version.metrics
        # Two intents created in one transaction: one training.
        assert ClassifierVersion.objects.count() == 1
    finally:
        real.stop(worker)
    output = worker.stdout.read() if worker.stdout else ""
    assert "classifier_train_task" in output and "succeeded" in output, output[-3000:]
    # This process has never seen the version: it finds it in the database and uses it.
    prediction = selectors.classify("我的订单到哪里了")
    assert prediction.method == "classifier" and prediction.version == version.number
    assert prediction.intent == "order_status"
