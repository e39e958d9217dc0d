"""The admin API on API keys: the admin scope, the model permissions, who sees which keys,
revoking through the service (audited), and the OpenAPI schema."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from apps.audit import keys
from apps.audit.models import ApiKey, AuditEvent, Scope
from apps.audit.services import audit_verify

pytestmark = pytest.mark.django_db

LIST = "/api/v1/api-keys"
REVOKE = "/api/v1/api-keys/{}/revoke"


@pytest.fixture
def key_manager(django_user_model: Any) -> Any:
    """A user who may view and change API keys, and is no superuser."""
    manager = django_user_model.objects.create_user("ops", password="pw-ops-123")
    manager.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_apikey", "change_apikey"])
    )
    return manager


def bearer(key: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def test_a_key_without_the_admin_scope_is_refused(client: Client, key_manager: Any) -> None:
    for scopes in ([Scope.KB_READ], [Scope.CHAT], [Scope.KB_READ, Scope.CHAT]):
        key = keys.api_key_create(name="narrow", user=key_manager, scopes=scopes).key
        for response in (
            client.get(LIST, **bearer(key)),
            client.post(REVOKE.format(key.split("_")[1]), **bearer(key)),
        ):
            assert response.status_code == 403
            assert response.json()["detail"] == 'This API key does not have the "admin" scope.'
    assert not ApiKey.objects.filter(revoked_at__isnull=False).exists()


def test_an_admin_key_lists_its_users_keys_and_revokes_one(
    client: Client, key_manager: Any, admin_user: Any
) -> None:
    admin_key = keys.api_key_create(name="ops-tool", user=key_manager, scopes=[Scope.ADMIN])
    crm = keys.api_key_create(name="crm", user=key_manager, scopes=[Scope.CHAT], rate_limit=30)
    keys.api_key_create(name="root-key", user=admin_user, scopes=[Scope.ADMIN])

    listed = client.get(LIST, **bearer(admin_key.key))
    assert listed.status_code == 200
    body = listed.json()
    # Only the keys that act for the manager, newest first; never a key or its hash.
    assert [key["name"] for key in body] == ["crm", "ops-tool"]
    assert body[0] == {
        "prefix": crm.api_key.prefix,
        "name": "crm",
        "user": "ops",
        "scopes": ["chat"],
        "status": "active",
        "rate_limit": 30,
        "expires_at": None,
        "revoked_at": None,
        "last_used_at": None,
        "created_at": body[0]["created_at"],
    }
    assert body[1]["last_used_at"] is not None  # the admin key itself, just used
    text = listed.content.decode()
    assert crm.api_key.hashed_key not in text and "hashed" not in text
    assert admin_key.api_key.hashed_key not in text

    revoked = client.post(REVOKE.format(crm.api_key.prefix), **bearer(admin_key.key))
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "revoked" and revoked.json()["revoked_at"]
    with pytest.raises(keys.KeyRefused):
        keys.api_key_check(crm.key)
    # Through the service: one security event, tied to the request, by the key's user.
    event = AuditEvent.objects.get(detail__reason="api_key_revoked")
    assert event.detail == {"reason": "api_key_revoked", "key": crm.api_key.prefix}
    assert event.actor == "ops" and event.request_id == revoked["X-Request-ID"]
    request_row = AuditEvent.objects.get(request_id=revoked["X-Request-ID"], kind="key_used")
    assert request_row.actor == f"key:{admin_key.api_key.prefix}" and request_row.status == 200
    # Again: nothing changes, nothing more is recorded.
    again = client.post(REVOKE.format(crm.api_key.prefix), **bearer(admin_key.key))
    assert again.status_code == 200 and again.json()["status"] == "revoked"
    assert AuditEvent.objects.filter(detail__reason="api_key_revoked").count() == 1
    assert audit_verify().ok


def test_the_list_reads_a_fixed_number_of_queries(client: Client, key_manager: Any) -> None:
    admin_key = keys.api_key_create(name="ops-tool", user=key_manager, scopes=[Scope.ADMIN]).key
    client.get(LIST, **bearer(admin_key))  # the first use also records last_used_at

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(LIST, **bearer(admin_key)).status_code == 200
        return len(captured.captured_queries)

    few = queries()
    for n in range(5):
        keys.api_key_create(name=f"extra-{n}", user=key_manager, scopes=[Scope.CHAT])
    assert queries() == few


def test_unknown_and_other_users_keys_are_not_found(
    client: Client, key_manager: Any, admin_user: Any
) -> None:
    admin_key = keys.api_key_create(name="ops-tool", user=key_manager, scopes=[Scope.ADMIN]).key
    foreign = keys.api_key_create(name="root-key", user=admin_user, scopes=[Scope.ADMIN])

    unknown = client.post(REVOKE.format("zzzz9999"), **bearer(admin_key))
    assert unknown.status_code == 404
    assert unknown.json() == {
        "detail": "There is no API key with the prefix zzzz9999.",
        "code": "not_found",
    }
    # Another user's key is not theirs to revoke, and not told to exist.
    hidden = client.post(REVOKE.format(foreign.api_key.prefix), **bearer(admin_key))
    assert hidden.status_code == 404 and hidden.json()["code"] == "not_found"
    assert ApiKey.objects.get(pk=foreign.api_key.pk).revoked_at is None


def test_a_superuser_sees_and_revokes_every_key(
    client: Client, key_manager: Any, admin_user: Any
) -> None:
    root_key = keys.api_key_create(name="root-tool", user=admin_user, scopes=[Scope.ADMIN]).key
    ops_key = keys.api_key_create(name="ops-tool", user=key_manager, scopes=[Scope.ADMIN])

    listed = client.get(LIST, **bearer(root_key))
    assert {key["name"]: key["user"] for key in listed.json()} == {
        "root-tool": "admin",
        "ops-tool": "ops",
    }
    revoked = client.post(REVOKE.format(ops_key.api_key.prefix), **bearer(root_key))
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"


def test_logins_without_the_permission_are_refused(
    client: Client, django_user_model: Any, key_manager: Any
) -> None:
    plain = django_user_model.objects.create_user("plain", password="pw-plain-123", is_staff=True)
    theirs = keys.api_key_create(name="own", user=plain, scopes=[Scope.CHAT])
    # The admin scope does not give the key's user a permission they lack.
    plain_admin_key = keys.api_key_create(name="admin", user=plain, scopes=[Scope.ADMIN]).key
    refused = client.get(LIST, **bearer(plain_admin_key))
    assert refused.status_code == 403
    assert refused.json()["detail"] == 'This needs the "audit.view_apikey" permission.'

    token = client.post(
        "/api/v1/auth/token",
        {"username": "plain", "password": "pw-plain-123"},
        content_type="application/json",
    ).json()["access"]
    assert client.get(LIST, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 403
    client.force_login(plain)
    assert client.get(LIST).status_code == 403
    denied = client.post(REVOKE.format(theirs.api_key.prefix))
    assert denied.status_code == 403
    assert denied.json()["detail"] == 'This needs the "audit.change_apikey" permission.'
    assert ApiKey.objects.get(pk=theirs.api_key.pk).revoked_at is None

    # A session or JWT login with the permission needs no scope (scopes are for keys).
    client.force_login(key_manager)
    assert client.get(LIST).status_code == 200
    assert Client().get(LIST).status_code in (401, 403)  # nobody logged in


def test_the_openapi_schema_describes_the_admin_api(client: Client) -> None:
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    listing = schema["paths"]["/api/v1/api-keys"]["get"]
    revoke = schema["paths"]["/api/v1/api-keys/{prefix}/revoke"]["post"]
    assert {"200", "403"} <= listing["responses"].keys()
    assert {"200", "403", "404"} <= revoke["responses"].keys()
    assert {"apiKey": []} in listing["security"]
    fields = schema["components"]["schemas"]["ApiKey"]["properties"]
    assert {"prefix", "name", "user", "scopes", "status", "expires_at", "last_used_at"} <= (
        fields.keys()
    )
    assert not any("hash" in name for name in fields)
    assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
