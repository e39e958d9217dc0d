"""Access exports are copies of personal data: the daily job deletes them after EXPORT_DAYS."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.compliance import services, tasks
from apps.compliance.models import DataSubjectRequest, RequestStatus
from apps.compliance.tests.conftest import start
from apps.conversations.tests.conftest import say

pytestmark = pytest.mark.django_db


def test_access_exports_are_deleted_after_their_days(
    chat_kb: Any,
    officers: tuple[Any, Any],
    compliance_storage: Path,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.COMPLIANCE = {**settings.COMPLIANCE, "EXPORT_DAYS": 30}
    conversation = start(chat_kb)
    say(conversation, "my email is wang.fang@example.com")
    made = []
    for _ in range(2):
        request = services.data_subject_request_create(
            user=officers[0],
            kind="access",
            identifier_kind="email",
            identifier="wang.fang@example.com",
        )
        services.data_subject_request_approve(request, officers[1])
        with django_capture_on_commit_callbacks(execute=True):
            services.data_subject_request_queue(request, officers[1])
        request.refresh_from_db()
        assert request.status == RequestStatus.COMPLETED and request.export_json_file
        made.append(request)
    old, recent = made
    DataSubjectRequest.objects.filter(pk=old.pk).update(
        finished_at=timezone.now() - timedelta(days=31)
    )
    files = compliance_storage / "files"
    old_files = [files / old.export_json_file, files / old.export_pdf_file]
    assert all(path.exists() for path in old_files)

    tasks.retention_archive_task()

    assert not any(path.exists() for path in old_files)
    old.refresh_from_db()
    recent.refresh_from_db()
    assert old.export_json_file == "" and old.export_pdf_file == ""
    assert (files / recent.export_json_file).exists() and (files / recent.export_pdf_file).exists()
    expired = AuditEvent.objects.filter(kind="data_subject_request").order_by("-id").first()
    assert expired.detail["action"] == "access_export_expired"
    assert expired.detail["request"] == str(old.public_id)
    assert services.access_exports_expire() == 0  # nothing left to expire
