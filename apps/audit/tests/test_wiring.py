"""What the platform writes to the audit log on its own: API requests with their request id,
admin changes, logins, logouts and failed logins."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.audit import services
from apps.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_api_requests_get_a_request_id_and_an_audit_row(client: Client, chat_kb: Any) -> None:
    response = client.post(
        "/api/v1/conversations", {"kb": chat_kb.pk}, content_type="application/json"
    )
    assert response.status_code == 201
    request_id = response["X-Request-ID"]
    event = AuditEvent.objects.get(request_id=request_id)
    assert event.kind == "api_request" and event.method == "POST"
    assert event.endpoint == "/api/v1/conversations" and event.status == 201
    assert event.ip == "127.0.0.1" and event.latency_ms is not None and event.actor == ""

    # A client's own id is kept when it is sane, replaced when it is not.
    sent = client.get("/api/v1/conversations/nope/messages", HTTP_X_REQUEST_ID="trace-1234abcd")
    assert sent["X-Request-ID"] == "trace-1234abcd"
    assert AuditEvent.objects.get(request_id="trace-1234abcd").status == sent.status_code
    odd = client.get("/api/v1/conversations/nope/messages", HTTP_X_REQUEST_ID="<script>")
    assert odd["X-Request-ID"] != "<script>" and len(odd["X-Request-ID"]) == 32

    # Pages are not API requests: a request id, no row.
    page = client.get("/healthz")
    assert (
        page["X-Request-ID"]
        and not AuditEvent.objects.filter(request_id=page["X-Request-ID"]).exists()
    )
    assert services.audit_verify().ok


def test_logins_failed_logins_logouts_and_admin_changes(
    client: Client, django_user_model: Any
) -> None:
    django_user_model.objects.create_superuser("root", "", "pw-root-123")
    client.post("/admin/login/", {"username": "root", "password": "wrong"})
    failed = AuditEvent.objects.get(kind="login_failed")
    assert failed.detail == {"username": "root"} and "wrong" not in str(failed.detail)
    client.post("/admin/login/?next=/admin/", {"username": "root", "password": "pw-root-123"})
    assert AuditEvent.objects.get(kind="login").actor == "root"

    client.get("/admin/")  # reading is not a change
    assert not AuditEvent.objects.filter(kind="admin_change").exists()
    response = client.post("/admin/auth/group/add/", {"name": "night shift", "permissions": []})
    assert response.status_code == 302
    change = AuditEvent.objects.get(kind="admin_change")
    assert change.actor == "root" and change.endpoint == "/admin/auth/group/add/"
    assert change.status == 302

    client.post("/admin/logout/")
    assert AuditEvent.objects.get(kind="logout").actor == "root"
    kinds = list(AuditEvent.objects.order_by("id").values_list("kind", flat=True))
    assert kinds == ["login_failed", "login", "admin_change", "logout"]
    assert services.audit_verify().ok


def test_a_failed_login_never_keeps_personal_data_typed_as_the_username(client: Client) -> None:
    client.post("/admin/login/", {"username": "li.wei@example.com", "password": "x"})
    failed = AuditEvent.objects.get(kind="login_failed")
    assert failed.detail == {"username": "[EMAIL]"}
