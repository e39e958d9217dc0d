"""API keys (hashed, shown once, scoped, expiring, revocable), JWT tokens, and the rate limits
per key and per IP counted in a real Redis, with what each leaves in the audit log."""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from apps.audit import keys, ratelimit
from apps.audit.models import ApiKey, AuditEvent, Scope
from apps.core.exceptions import ServiceError

pytestmark = pytest.mark.django_db

SEARCH = "/api/v1/knowledge-bases/{}/search"


@pytest.fixture
def owner(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("integration", password="pw-integration")


def _search(client: Client, kb: Any, key: str, **headers: Any) -> Any:
    return client.post(
        SEARCH.format(kb.pk),
        {"query": "怎么退货"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
        **headers,
    )


def test_a_key_is_kept_only_as_its_hash(owner: Any) -> None:
    created = keys.api_key_create(name="shop", user=owner, scopes=["kb:read"])
    key = created.key
    stored = ApiKey.objects.get(pk=created.api_key.pk)
    assert key.startswith(f"csk_{stored.prefix}_") and len(key) > 40
    assert stored.hashed_key == hashlib.sha256(key.encode()).hexdigest()
    row = ApiKey.objects.filter(pk=stored.pk).values().get()
    assert all(key not in str(value) for value in row.values())
    assert keys.api_key_check(key).pk == stored.pk
    with pytest.raises(keys.KeyRefused) as wrong:
        keys.api_key_check(key[:-2] + ("AA" if not key.endswith("AA") else "BB"))
    assert wrong.value.reason == "unknown"
    with pytest.raises(keys.KeyRefused) as malformed:
        keys.api_key_check("not-a-key")
    assert malformed.value.reason == "malformed"
    event = AuditEvent.objects.filter(kind="security").order_by("-id").first()
    assert event.detail == {
        "reason": "api_key_created",
        "key": stored.prefix,
        "scopes": ["kb:read"],
        "acts_for": owner.pk,
    }


def test_bad_scopes_and_past_expiry_are_refused(owner: Any) -> None:
    with pytest.raises(ServiceError):
        keys.api_key_create(name="x", user=owner, scopes=["everything"])
    with pytest.raises(ServiceError):
        keys.api_key_create(name="x", user=owner, scopes=[])
    with pytest.raises(ServiceError):
        keys.api_key_create(
            name="x",
            user=owner,
            scopes=["chat"],
            expires_at=timezone.now() - timedelta(minutes=1),
        )


def test_scopes_expiry_and_revocation_over_http(client: Client, chat_kb: Any, owner: Any) -> None:
    reader = keys.api_key_create(name="reader", user=owner, scopes=[Scope.KB_READ]).key
    chat_only = keys.api_key_create(name="chat", user=owner, scopes=[Scope.CHAT]).key

    ok = _search(client, chat_kb, reader)
    assert ok.status_code == 200 and ok.json()["sources"]
    event = AuditEvent.objects.get(request_id=ok["X-Request-ID"])
    prefix = reader.split("_")[1]
    assert event.kind == "key_used" and event.actor == f"key:{prefix}"
    assert reader not in str(event.detail) and event.detail["auth"] == "api_key"
    # The key's last use is visible.
    assert ApiKey.objects.get(prefix=prefix).last_used_at is not None

    wrong_scope = _search(client, chat_kb, chat_only)
    assert wrong_scope.status_code == 403 and "kb:read" in wrong_scope.json()["detail"]
    # X-API-Key works as well.
    assert (
        client.post(
            SEARCH.format(chat_kb.pk),
            {"query": "refund"},
            content_type="application/json",
            HTTP_X_API_KEY=reader,
        ).status_code
        == 200
    )

    ApiKey.objects.filter(prefix=prefix).update(expires_at=timezone.now() - timedelta(seconds=1))
    expired = _search(client, chat_kb, reader)
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]
    refused = AuditEvent.objects.get(request_id=expired["X-Request-ID"])
    assert refused.status == 401 and refused.detail == {"auth": "api_key", "refused": "expired"}

    ApiKey.objects.filter(prefix=prefix).update(expires_at=None)
    assert keys.api_key_revoke(ApiKey.objects.get(prefix=prefix)) is True
    assert keys.api_key_revoke(ApiKey.objects.get(prefix=prefix)) is False
    revoked = _search(client, chat_kb, reader)
    assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"]

    owner.is_active = False
    owner.save()
    assert _search(client, chat_kb, chat_only).status_code == 401
    assert _search(client, chat_kb, "csk_nothere_zzzz").status_code == 401


def test_the_chat_scope_on_the_conversation_api(
    client: Client, chat_kb: Any, owner: Any, settings: Any
) -> None:
    chat = keys.api_key_create(name="app", user=owner, scopes=[Scope.CHAT]).key
    reader = keys.api_key_create(name="reader", user=owner, scopes=[Scope.KB_READ]).key
    body = {"kb": chat_kb.pk}
    anonymous = client.post("/api/v1/conversations", body, content_type="application/json")
    assert anonymous.status_code == 201  # the widget-style open API, by default

    settings.CHAT = {**settings.CHAT, "API_REQUIRES_KEY": True}
    keyless = client.post("/api/v1/conversations", body, content_type="application/json")
    assert keyless.status_code == 401
    assert (
        client.post(
            "/api/v1/conversations", body, content_type="application/json", HTTP_X_API_KEY=reader
        ).status_code
        == 403
    )
    made = client.post(
        "/api/v1/conversations", body, content_type="application/json", HTTP_X_API_KEY=chat
    )
    assert made.status_code == 201
    # The conversation token and the key travel together.
    listed = client.get(
        f"/api/v1/conversations/{made.json()['id']}/messages",
        HTTP_AUTHORIZATION=f"Conversation {made.json()['token']}",
        HTTP_X_API_KEY=chat,
    )
    assert listed.status_code == 200


def test_key_admin_shows_the_key_once_and_revokes(client: Client, admin_user: Any) -> None:
    client.force_login(admin_user)
    response = client.post(
        "/admin/audit/apikey/add/",
        {"name": "crm", "user": admin_user.pk, "scopes": ["kb:read", "chat"], "rate_limit": ""},
        follow=True,
    )
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    key = next(word for m in shown for word in m.split() if word.startswith("csk_"))
    api_key = ApiKey.objects.get(name="crm")
    assert keys.api_key_check(key).pk == api_key.pk and api_key.scopes == ["chat", "kb:read"]
    assert api_key.created_by == admin_user
    # The change page never shows it again.
    page = client.get(f"/admin/audit/apikey/{api_key.pk}/change/")
    assert key not in page.content.decode() and api_key.prefix in page.content.decode()

    client.post(
        "/admin/audit/apikey/",
        {"action": "revoke", "_selected_action": [api_key.pk]},
        follow=True,
    )
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    with pytest.raises(keys.KeyRefused):
        keys.api_key_check(key)


def test_key_admin_ties_its_audit_rows_to_the_request(client: Client, admin_user: Any) -> None:
    """As the admin API's revocation does: the security row of a key made or revoked in the
    admin carries the id of the request that did it (the one in its X-Request-ID header)."""
    client.force_login(admin_user)
    created = client.post(
        "/admin/audit/apikey/add/",
        {"name": "crm", "user": admin_user.pk, "scopes": ["chat"], "rate_limit": ""},
    )
    assert created.status_code == 302 and created["X-Request-ID"]
    api_key = ApiKey.objects.get(name="crm")
    made = AuditEvent.objects.get(kind=AuditEvent.Kind.SECURITY, detail__reason="api_key_created")
    assert made.detail["key"] == api_key.prefix and made.actor == admin_user.username
    assert made.request_id == created["X-Request-ID"]

    revoked = client.post(
        "/admin/audit/apikey/", {"action": "revoke", "_selected_action": [api_key.pk]}
    )
    assert revoked.status_code == 302 and revoked["X-Request-ID"] != created["X-Request-ID"]
    gone = AuditEvent.objects.get(kind=AuditEvent.Kind.SECURITY, detail__reason="api_key_revoked")
    assert gone.detail["key"] == api_key.prefix and gone.actor == admin_user.username
    assert gone.request_id == revoked["X-Request-ID"]


@pytest.fixture
def key_clerk(django_user_model: Any) -> Any:
    """A staff member who may manage API keys, but is no superuser."""
    clerk = django_user_model.objects.create_user("clerk", password="pw-clerk", is_staff=True)
    clerk.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="audit", codename__endswith="apikey")
    )
    return clerk


def test_only_a_superuser_makes_keys_that_act_for_someone_else(
    owner: Any, key_clerk: Any, admin_user: Any
) -> None:
    for other in (admin_user, owner):
        with pytest.raises(ServiceError) as refused:
            keys.api_key_create(name="x", user=other, scopes=["admin"], created_by=key_clerk)
        assert refused.value.code == "forbidden" and "superuser" in refused.value.message
    assert not ApiKey.objects.exists()
    assert not AuditEvent.objects.filter(detail__reason="api_key_created").exists()

    own = keys.api_key_create(name="mine", user=key_clerk, scopes=["chat"], created_by=key_clerk)
    assert own.api_key.user == key_clerk
    delegated = keys.api_key_create(
        name="crm", user=owner, scopes=["kb:read"], created_by=admin_user
    )
    assert delegated.api_key.user == owner and delegated.api_key.created_by == admin_user
    # The operator's command line (no creator) may name any user.
    assert keys.api_key_create(name="cli", user=admin_user, scopes=["chat"]).api_key.pk


def test_key_admin_for_a_staff_member_who_is_no_superuser(
    client: Client, key_clerk: Any, admin_user: Any
) -> None:
    foreign = keys.api_key_create(name="root-key", user=admin_user, scopes=["admin"])
    client.force_login(key_clerk)

    form_page = client.get("/admin/audit/apikey/add/")
    user_field = form_page.context["adminform"].form["user"]
    assert user_field.value() == key_clerk.pk  # made for themselves unless changed
    assert list(user_field.field.queryset) == [key_clerk]  # and nobody else is offered

    refused = client.post(
        "/admin/audit/apikey/add/",
        {"name": "escalate", "user": admin_user.pk, "scopes": ["admin"], "rate_limit": ""},
    )
    assert refused.status_code == 200  # the form again, with the reason
    assert refused.context["adminform"].form.errors["user"] == [
        "Only a superuser may make an API key that acts for another user."
    ]
    assert not ApiKey.objects.filter(name="escalate").exists()

    made = client.post(
        "/admin/audit/apikey/add/",
        {"name": "own", "user": key_clerk.pk, "scopes": ["chat"], "rate_limit": ""},
        follow=True,
    )
    assert made.status_code == 200
    assert ApiKey.objects.get(name="own").user == key_clerk
    # Their list holds their own keys only, so the revoke action cannot reach anyone else's.
    listed = client.get("/admin/audit/apikey/")
    assert [key.name for key in listed.context["cl"].result_list] == ["own"]
    client.post(
        "/admin/audit/apikey/", {"action": "revoke", "_selected_action": [foreign.api_key.pk]}
    )
    foreign.api_key.refresh_from_db()
    assert foreign.api_key.revoked_at is None


def test_apikey_create_command(owner: Any, capsys: Any) -> None:
    call_command("apikey_create", "--name", "cli", "--user", "integration", "--scopes", "chat")
    key = capsys.readouterr().out.strip()
    assert keys.api_key_check(key).name == "cli"


# --- JWT ------------------------------------------------------------------------------------


def test_jwt_tokens_login_refresh_rotation_and_revoke(
    client: Client, chat_kb: Any, owner: Any
) -> None:
    bad = client.post(
        "/api/v1/auth/token",
        {"username": "integration", "password": "wrong"},
        content_type="application/json",
    )
    assert bad.status_code == 401
    failed = AuditEvent.objects.filter(kind="login_failed").order_by("-id").first()
    assert failed.detail == {"username": "integration"}

    issued = client.post(
        "/api/v1/auth/token",
        {"username": "integration", "password": "pw-integration"},
        content_type="application/json",
    )
    assert issued.status_code == 200
    access, refresh = issued.json()["access"], issued.json()["refresh"]
    login = AuditEvent.objects.filter(kind="login").order_by("-id").first()
    assert login.actor == "integration" and login.detail == {"via": "jwt"}

    searched = client.post(
        SEARCH.format(chat_kb.pk),
        {"query": "refund"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {access}",
    )
    assert searched.status_code == 200
    assert AuditEvent.objects.get(request_id=searched["X-Request-ID"]).actor == "integration"
    assert (
        client.post(
            SEARCH.format(chat_kb.pk),
            {"query": "refund"},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {access[:-3]}xyz",
        ).status_code
        == 401
    )

    rotated = client.post(
        "/api/v1/auth/token/refresh", {"refresh": refresh}, content_type="application/json"
    )
    assert rotated.status_code == 200 and rotated.json()["refresh"] != refresh
    # The old refresh token was blacklisted by the rotation.
    again = client.post(
        "/api/v1/auth/token/refresh", {"refresh": refresh}, content_type="application/json"
    )
    assert again.status_code == 401

    new_refresh = rotated.json()["refresh"]
    revoked = client.post(
        "/api/v1/auth/token/revoke", {"refresh": new_refresh}, content_type="application/json"
    )
    assert revoked.status_code == 200
    assert (
        client.post(
            "/api/v1/auth/token/refresh", {"refresh": new_refresh}, content_type="application/json"
        ).status_code
        == 401
    )


# --- Rate limits in a real Redis -----------------------------------------------------------


@pytest.fixture
def redis_limits(redis_url: str, settings: Any) -> str:
    redis.Redis.from_url(redis_url).flushdb()
    settings.API_RATE_LIMITS = {**settings.API_RATE_LIMITS, "REDIS_URL": redis_url}
    return redis_url


def _wait_for_fresh_window(seconds: int = 60, needed: float = 8.0) -> None:
    """Start a burst early in a window, so that it does not straddle two."""
    left = seconds - time.time() % seconds
    if left < needed:
        time.sleep(left + 0.05)


def test_per_key_limit_in_redis_with_retry_after(
    client: Client, chat_kb: Any, owner: Any, redis_limits: str
) -> None:
    limited = keys.api_key_create(name="slow", user=owner, scopes=["kb:read"], rate_limit=3)
    other = keys.api_key_create(name="other", user=owner, scopes=["kb:read"], rate_limit=3)
    _wait_for_fresh_window()
    statuses = [_search(client, chat_kb, limited.key).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = _search(client, chat_kb, limited.key)
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    # The counter lives in Redis, where every process sees it.
    counted = redis.Redis.from_url(redis_limits).keys(f"ratelimit:key:{limited.api_key.pk}:*")
    assert counted and int(redis.Redis.from_url(redis_limits).get(counted[0])) == 5
    # Another key has its own budget.
    assert _search(client, chat_kb, other.key).status_code == 200
    assert AuditEvent.objects.get(request_id=refused["X-Request-ID"]).status == 429


def test_per_ip_limit_before_authentication(
    client: Client, chat_kb: Any, redis_limits: str, settings: Any
) -> None:
    settings.API_RATE_LIMITS = {**settings.API_RATE_LIMITS, "IP": "3/min"}
    _wait_for_fresh_window()
    # Guessing keys counts too: the limit comes before authentication.
    statuses = [_search(client, chat_kb, "csk_guess123_nope").status_code for _ in range(3)]
    assert statuses == [401, 401, 401]
    refused = _search(client, chat_kb, "csk_guess123_nope")
    assert refused.status_code == 429 and refused.json()["code"] == "throttled"
    assert 1 <= int(refused["Retry-After"]) <= 60
    # Another address is not limited by this one.
    assert (
        client.post(
            "/api/v1/conversations",
            {"kb": chat_kb.pk},
            content_type="application/json",
            REMOTE_ADDR="10.1.2.3",
        ).status_code
        == 201
    )
    # Pages outside the API are not limited.
    assert client.get("/healthz").status_code == 200


def test_redis_down_lets_requests_through(settings: Any) -> None:
    settings.API_RATE_LIMITS = {**settings.API_RATE_LIMITS, "REDIS_URL": "redis://127.0.0.1:1/0"}
    allowance = ratelimit.hit("ip:203.0.113.9", ratelimit.Rate(1, 60))
    assert allowance.allowed


def test_cache_counts_without_redis(settings: Any) -> None:
    settings.API_RATE_LIMITS = {**settings.API_RATE_LIMITS, "REDIS_URL": ""}
    rate = ratelimit.Rate(2, 60)
    _wait_for_fresh_window(needed=2)
    bucket = f"ip:test-{time.time()}"
    assert [ratelimit.hit(bucket, rate).allowed for _ in range(3)] == [True, True, False]


def test_rates_parse() -> None:
    assert ratelimit.parse_rate("600/min") == ratelimit.Rate(600, 60)
    assert ratelimit.parse_rate("5/s") == ratelimit.Rate(5, 1)
    with pytest.raises(ValueError):
        ratelimit.parse_rate("lots")


def test_revoking_in_the_admin_takes_the_change_permission_as_the_api_does(
    client: Client, django_user_model: Any
) -> None:
    clerk = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_apikey"))
    own = keys.api_key_create(name="mine", user=clerk, scopes=["chat"]).api_key
    client.force_login(clerk)
    listing = client.get("/admin/audit/apikey/")
    assert listing.status_code == 200 and "mine" in listing.content.decode()
    assert listing.context["action_form"] is None  # no action to offer a viewer

    clerk.user_permissions.add(Permission.objects.get(codename="change_apikey"))
    clerk = django_user_model.objects.get(pk=clerk.pk)  # permissions are cached per object
    client.force_login(clerk)
    listing = client.get("/admin/audit/apikey/")
    assert "revoke" in dict(listing.context["action_form"].fields["action"].choices)
    client.post("/admin/audit/apikey/", {"action": "revoke", "_selected_action": [own.pk]})
    own.refresh_from_db()
    assert own.revoked_at is not None
