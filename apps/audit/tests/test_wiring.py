"""What the platform writes to the audit log on its own: API requests with their request id,
admin changes, logins, logouts and failed logins."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.audit import keys, services
from apps.audit.models import AuditEvent, Scope
from apps.safety.pseudonyms import pseudonym

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
    assert event.latency_ms is not None and event.actor == ""
    # An anonymous caller's address only as its keyed pseudonym: the row is never erased.
    assert event.ip is None and event.ip_pseudonym == pseudonym("127.0.0.1")
    assert "127.0.0.1" not in str(AuditEvent.objects.filter(pk=event.pk).values().get())

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
    # Whoever tried is not known to be staff: the address only as its pseudonym.
    assert failed.ip is None and failed.ip_pseudonym == pseudonym("127.0.0.1")
    client.post("/admin/login/?next=/admin/", {"username": "root", "password": "pw-root-123"})
    login = AuditEvent.objects.get(kind="login")
    assert login.actor == "root" and login.ip == "127.0.0.1" and login.ip_pseudonym is None

    client.get("/admin/")  # reading is not a change
    assert not AuditEvent.objects.filter(kind="admin_change").exists()
    response = client.post("/admin/auth/group/add/", {"name": "night shift", "permissions": []})
    assert response.status_code == 302
    change = AuditEvent.objects.get(kind="admin_change")
    assert change.actor == "root" and change.endpoint == "/admin/auth/group/add/"
    assert change.status == 302
    assert change.ip == "127.0.0.1" and change.ip_pseudonym is None  # a staff request

    client.post("/admin/logout/")
    assert AuditEvent.objects.get(kind="logout").actor == "root"
    kinds = list(AuditEvent.objects.order_by("id").values_list("kind", flat=True))
    assert kinds == ["login_failed", "login", "admin_change", "logout"]
    assert services.audit_verify().ok


def test_a_failed_login_never_keeps_personal_data_typed_as_the_username(client: Client) -> None:
    client.post("/admin/login/", {"username": "li.wei@example.com", "password": "x"})
    failed = AuditEvent.objects.get(kind="login_failed")
    assert failed.detail == {"username": "[EMAIL]"}


def test_the_address_by_who_asks(client: Client, chat_kb: Any, django_user_model: Any) -> None:
    """In clear for API keys and staff; a pseudonym for customers, app users, refused keys."""
    search = f"/api/v1/knowledge-bases/{chat_kb.pk}/search"
    app_user = django_user_model.objects.create_user("app-user", password="pw-app-user")
    key = keys.api_key_create(name="crm", user=app_user, scopes=[Scope.KB_READ]).key

    def row(response: Any) -> AuditEvent:
        return AuditEvent.objects.get(request_id=response["X-Request-ID"])

    def ask(**headers: Any) -> Any:
        return client.post(search, {"query": "refund"}, content_type="application/json", **headers)

    by_key = row(ask(HTTP_X_API_KEY=key, REMOTE_ADDR="198.51.100.7"))
    assert (by_key.kind, by_key.status) == ("key_used", 200)
    assert (by_key.ip, by_key.ip_pseudonym) == ("198.51.100.7", None)

    # A refused key names an integration but may be anyone: like a failed login.
    refused = row(ask(HTTP_X_API_KEY=key[:-3] + "zzz", REMOTE_ADDR="198.51.100.8"))
    assert refused.status == 401 and refused.actor.startswith("key:")
    assert (refused.ip, refused.ip_pseudonym) == (None, pseudonym("198.51.100.8"))

    # An app user (JWT) is a person, not staff.
    token = client.post(
        "/api/v1/auth/token",
        {"username": "app-user", "password": "pw-app-user"},
        content_type="application/json",
    ).json()["access"]
    by_app_user = row(ask(HTTP_AUTHORIZATION=f"Bearer {token}", REMOTE_ADDR="198.51.100.9"))
    assert by_app_user.status == 200 and by_app_user.actor == "app-user"
    assert (by_app_user.ip, by_app_user.ip_pseudonym) == (None, pseudonym("198.51.100.9"))

    staff = django_user_model.objects.create_user("agent-amy", is_staff=True)
    client.force_login(staff)
    by_staff = row(ask(REMOTE_ADDR="198.51.100.10"))
    assert by_staff.actor == "agent-amy"
    assert (by_staff.ip, by_staff.ip_pseudonym) == ("198.51.100.10", None)
    assert services.audit_verify().ok


def test_responses_cut_short_by_earlier_middleware_carry_a_request_id(
    client: Client, settings: Any
) -> None:
    refused_host = client.get("/api/v1/api-keys", HTTP_HOST="evil.example")
    assert refused_host.status_code == 400 and len(refused_host["X-Request-ID"]) == 32
    assert AuditEvent.objects.get(request_id=refused_host["X-Request-ID"]).status == 400

    settings.SECURE_SSL_REDIRECT = True  # read when the middleware is loaded: a new client
    redirected = Client().get("/api/v1/api-keys")
    assert redirected.status_code == 301 and redirected["Location"].startswith("https://")
    assert len(redirected["X-Request-ID"]) == 32
