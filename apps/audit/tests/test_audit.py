"""The audit log: the hash chain, concurrent appends, PostgreSQL refusing changes, tamper
detection, the audit_verify command, the admin (read-only, compliance only, CSV export), and the
TRUNCATE guard letting the test suite's flushes through."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
from datetime import UTC
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, Group, Permission
from django.core.management import call_command
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db import connections as db_connections

from apps.audit.models import GENESIS_HASH, AuditEvent
from apps.audit.services import CONTENT_FIELDS, audit_record, audit_verify, event_hash
from apps.safety.pseudonyms import pseudonym

CHANGELIST = "/admin/audit/auditevent/"


def compliance_group() -> Group:
    """The group the migration created (a transactional test's flush removes it: re-create)."""
    group, created = Group.objects.get_or_create(name="compliance")
    if created:
        group.permissions.add(Permission.objects.get(codename="view_audit_log"))
    return group


def three_events(user: Any) -> list[AuditEvent]:
    return [
        audit_record(
            AuditEvent.Kind.LOGIN, actor=user, ip="2001:0db8:0000::0001", request_id="req-1"
        ),
        audit_record(
            AuditEvent.Kind.API_REQUEST,
            actor="key:ab12cd",
            request_id="req-2",
            ip="10.0.0.7",
            method="post",
            endpoint="/api/v1/chat/",
            status=200,
            input_tokens=120,
            output_tokens=48,
            latency_ms=12,  # an int: stored as float8, must still verify
            detail={"conversation": "c_9f2", "score": 0.1, "big": 1e16, "名": "值"},
        ),
        audit_record(AuditEvent.Kind.LOGOUT, actor=AnonymousUser()),
    ]


@pytest.mark.django_db
def test_events_chain_and_verify(django_user_model: Any) -> None:
    user = django_user_model.objects.create_user("ann")
    first, second, third = three_events(user)

    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    assert third.prev_hash == second.hash
    stored = AuditEvent.objects.get(pk=second.pk)
    assert stored.hash == event_hash(stored.prev_hash, stored)
    assert (stored.actor_id, stored.actor, stored.method, stored.latency_ms) == (
        None,
        "key:ab12cd",
        "POST",
        12.0,
    )
    # ann is no staff member: her address only as its pseudonym (of the canonical spelling);
    # the API key's in clear.
    stored_first = AuditEvent.objects.get(pk=first.pk)
    assert stored_first.ip is None and stored_first.ip_pseudonym == pseudonym("2001:db8::1")
    assert stored.ip == "10.0.0.7" and stored.ip_pseudonym is None
    assert (first.actor_id, first.actor) == (user.pk, "ann")
    assert (third.actor_id, third.actor) == (None, "")

    result = audit_verify(batch_size=2)  # more than one batch
    assert (result.ok, result.checked, result.first_bad_id, result.reason) == (True, 3, None, "")
    assert result.last_hash == third.hash


def legacy_hash(prev_hash: str, event: AuditEvent) -> str:
    """The hash as rows were chained before ip_pseudonym existed (a copy of the old formula)."""
    content: dict[str, Any] = {name: getattr(event, name) for name in CONTENT_FIELDS}
    content["created_at"] = event.created_at.astimezone(UTC).isoformat()
    canonical = json.dumps(
        content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


@pytest.mark.django_db
def test_rows_from_before_the_pseudonym_column_still_verify(django_user_model: Any) -> None:
    staff = django_user_model.objects.create_user("sue", is_staff=True)
    # A row as the previous version wrote it: the IP in clear, its hash without ip_pseudonym.
    old = AuditEvent(
        kind=AuditEvent.Kind.API_REQUEST, ip="198.51.100.4", endpoint="/api/v1/x", status=200
    )
    old.prev_hash = GENESIS_HASH
    old.hash = legacy_hash(old.prev_hash, old)
    old.save(force_insert=True)
    old.refresh_from_db()
    assert old.ip_pseudonym is None and event_hash(old.prev_hash, old) == old.hash

    visitor = audit_record(AuditEvent.Kind.API_REQUEST, ip="198.51.100.4")
    staffed = audit_record(AuditEvent.Kind.ADMIN_CHANGE, actor=staff, ip="198.51.100.4")
    assert (visitor.ip, visitor.ip_pseudonym) == (None, pseudonym("198.51.100.4"))
    assert (staffed.ip, staffed.ip_pseudonym) == ("198.51.100.4", None)
    # The pseudonym is part of what the new row's hash covers.
    assert visitor.hash != legacy_hash(visitor.prev_hash, visitor)
    assert audit_verify().ok and audit_verify().checked == 3

    tamper("UPDATE audit_event SET ip_pseudonym = NULL WHERE id = %s", [visitor.pk])
    result = audit_verify()
    assert (result.ok, result.first_bad_id) == (False, visitor.pk)


@pytest.mark.django_db
def test_deleting_the_user_leaves_the_log_alone(django_user_model: Any) -> None:
    user = django_user_model.objects.create_user("bob")
    event = audit_record(AuditEvent.Kind.LOGIN, actor=user)
    user.delete()
    assert AuditEvent.objects.get(pk=event.pk).actor == "bob"
    assert audit_verify().ok


@pytest.mark.django_db
def test_database_refuses_a_fork() -> None:
    first = audit_record(AuditEvent.Kind.OTHER)
    fork = AuditEvent(kind=AuditEvent.Kind.OTHER, actor="mallory", prev_hash=first.prev_hash)
    fork.hash = event_hash(fork.prev_hash, fork)
    with pytest.raises(IntegrityError), transaction.atomic():
        fork.save(force_insert=True)
    assert list(AuditEvent.objects.values_list("pk", flat=True)) == [first.pk]


@pytest.mark.django_db
def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown audit event kind"):
        audit_record("coffee_break")
    assert not AuditEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_never_fork_the_chain() -> None:
    threads, per_thread = 8, 10
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def append(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            for i in range(per_thread):
                audit_record(AuditEvent.Kind.OTHER, request_id=f"t{n}-{i}")
        except BaseException as error:  # reported to the main thread below
            errors.append(error)
        finally:
            db_connections.close_all()

    workers = [threading.Thread(target=append, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert errors == []
    events = list(AuditEvent.objects.order_by("id"))
    assert len(events) == threads * per_thread
    assert len({e.prev_hash for e in events}) == len(events)  # no two rows share a parent
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]
    result = audit_verify()
    assert (result.ok, result.checked) == (True, threads * per_thread)


@pytest.mark.django_db
def test_postgresql_refuses_update_and_delete() -> None:
    event = audit_record(AuditEvent.Kind.SECURITY, detail={"rule": "r1"})

    with pytest.raises(DatabaseError, match="audit_event is append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(detail={"rule": "r2"})
    with pytest.raises(DatabaseError, match="audit_event is append-only"), transaction.atomic():
        event.detail = {"rule": "r2"}
        event.save(update_fields=["detail"])
    with pytest.raises(DatabaseError, match="audit_event is append-only"), transaction.atomic():
        event.delete()
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE audit_event SET actor = 'mallory' WHERE id = %s", [event.pk])
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM audit_event")

    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.detail, stored.actor) == ({"rule": "r1"}, "")
    assert audit_verify().ok


@pytest.mark.django_db
def test_truncate_is_refused_without_the_test_setting() -> None:
    audit_record(AuditEvent.Kind.OTHER)
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        # What every non-test connection looks like.
        cursor.execute("SET LOCAL audit.allow_truncate = 'off'")
        cursor.execute("TRUNCATE audit_event")
    assert AuditEvent.objects.count() == 1


def tamper(sql: str, params: list[Any]) -> None:
    """Change the table behind the triggers' back, as an owner could (inside the test's
    transaction, so it is rolled back with it)."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_event DISABLE TRIGGER USER")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE audit_event ENABLE TRIGGER USER")


@pytest.mark.django_db
def test_a_changed_row_is_detected(django_user_model: Any) -> None:
    first, second, _third = three_events(django_user_model.objects.create_user("cy"))
    tamper(
        "UPDATE audit_event SET detail = %s::jsonb WHERE id = %s",
        ['{"conversation": "c_000"}', second.pk],
    )

    result = audit_verify()
    assert (result.ok, result.first_bad_id, result.checked) == (False, second.pk, 2)
    assert "content" in result.reason
    assert result.last_hash == first.hash


@pytest.mark.django_db
def test_a_deleted_row_is_detected(django_user_model: Any) -> None:
    _first, second, third = three_events(django_user_model.objects.create_user("di"))
    tamper("DELETE FROM audit_event WHERE id = %s", [second.pk])

    result = audit_verify()
    assert (result.ok, result.first_bad_id) == (False, third.pk)
    assert "prev_hash" in result.reason


@pytest.mark.django_db
def test_audit_verify_command(django_user_model: Any, capsys: Any) -> None:
    _first, second, _third = three_events(django_user_model.objects.create_user("ed"))

    call_command("audit_verify")  # returns: exit status 0
    assert "audit chain ok: 3 events" in capsys.readouterr().out

    tamper("UPDATE audit_event SET status = 500 WHERE id = %s", [second.pk])
    with pytest.raises(SystemExit) as exit_info:
        call_command("audit_verify")
    assert exit_info.value.code == 1
    assert f"audit chain broken at event {second.pk}" in capsys.readouterr().err


# The admin


@pytest.fixture
def compliance_user(django_user_model: Any) -> Any:
    user = django_user_model.objects.create_user("carol", is_staff=True)
    user.groups.add(compliance_group())
    return user


def csv_rows(response: Any) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


@pytest.mark.django_db
def test_compliance_user_browses_and_exports(client: Any, compliance_user: Any) -> None:
    events = three_events(compliance_user)
    hostile = audit_record(AuditEvent.Kind.API_REQUEST, endpoint="=HYPERLINK(1)")
    client.force_login(compliance_user)

    index = client.get("/admin/")
    assert CHANGELIST in index.content.decode()
    page = client.get(CHANGELIST, {"kind__exact": "api_request"})
    assert page.status_code == 200
    assert "/api/v1/chat/" in page.content.decode()
    assert "Export CSV" in page.content.decode()
    detail = client.get(f"{CHANGELIST}{events[1].pk}/change/")
    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()  # read-only

    response = client.post(
        CHANGELIST,
        {"action": "export_csv", "_selected_action": [events[1].pk, hostile.pk]},
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    header, *rows = csv_rows(response)
    assert header[:4] == ["id", "created_at", "request_id", "kind"]
    assert header[-2:] == ["prev_hash", "hash"]
    assert [row[0] for row in rows] == [str(events[1].pk), str(hostile.pk)]
    by_column = dict(zip(header, rows[0], strict=True))
    assert by_column["actor"] == "key:ab12cd"
    assert by_column["endpoint"] == "/api/v1/chat/"
    assert by_column["hash"] == events[1].hash
    assert '"conversation": "c_9f2"' in by_column["detail"]
    assert (by_column["ip"], by_column["ip_pseudonym"]) == ("10.0.0.7", "")
    assert dict(zip(header, rows[1], strict=True))["endpoint"] == "'=HYPERLINK(1)"

    # The filtered export: every row the changelist's filters match, and the export is logged.
    filtered = client.get(f"{CHANGELIST}export/", {"kind__exact": "login"})
    header, *rows = csv_rows(filtered)
    # The seeded login and carol's own (the login signal records it).
    assert str(events[0].pk) in [row[0] for row in rows]
    assert {dict(zip(header, row, strict=True))["kind"] for row in rows} == {"login"}
    exports = AuditEvent.objects.filter(detail__action="audit_export").order_by("id")
    assert [(e.actor, e.detail["how"], e.detail["rows"]) for e in exports] == [
        ("carol", "selected", 2),
        ("carol", "filtered", len(rows)),
    ]
    assert audit_verify().ok


@pytest.mark.django_db
def test_the_admin_and_the_csv_show_the_address_or_its_pseudonym(
    client: Any, compliance_user: Any
) -> None:
    visitor = audit_record(AuditEvent.Kind.API_REQUEST, ip="203.0.113.5", endpoint="/api/v1/v")
    staffed = audit_record(AuditEvent.Kind.ADMIN_CHANGE, actor=compliance_user, ip="192.0.2.8")
    client.force_login(compliance_user)

    page = client.get(CHANGELIST).content.decode()
    assert pseudonym("203.0.113.5") in page and "203.0.113.5" not in page
    assert "192.0.2.8" in page
    # Found by its pseudonym (what compliance staff compute from an address they are given).
    found = client.get(CHANGELIST, {"q": pseudonym("203.0.113.5")})
    assert list(found.context["cl"].result_list) == [visitor]

    header, *rows = csv_rows(
        client.post(
            CHANGELIST, {"action": "export_csv", "_selected_action": [visitor.pk, staffed.pk]}
        )
    )
    by_id = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    assert by_id[str(visitor.pk)]["ip"] == ""
    assert by_id[str(visitor.pk)]["ip_pseudonym"] == pseudonym("203.0.113.5")
    assert by_id[str(staffed.pk)]["ip"] == "192.0.2.8"
    assert by_id[str(staffed.pk)]["ip_pseudonym"] == ""
    assert header.index("ip_pseudonym") < header.index("prev_hash")


@pytest.mark.django_db
def test_plain_staff_cannot_see_the_log(client: Any, django_user_model: Any) -> None:
    audit_record(AuditEvent.Kind.OTHER)
    staff = django_user_model.objects.create_user("sam", is_staff=True)
    # Even every other permission on the site does not open the log.
    staff.user_permissions.add(*Permission.objects.exclude(codename="view_audit_log"))
    client.force_login(staff)

    assert CHANGELIST not in client.get("/admin/").content.decode()
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(f"{CHANGELIST}export/").status_code == 403
    # The app's page lists API keys (they may manage those), never the log.
    assert CHANGELIST not in client.get("/admin/audit/").content.decode()


@pytest.mark.django_db
def test_nobody_adds_changes_or_deletes(client: Any, admin_user: Any, compliance_user: Any) -> None:
    event = audit_record(AuditEvent.Kind.OTHER, detail={"n": 1})
    for user in (admin_user, compliance_user):
        client.force_login(user)
        assert client.get(CHANGELIST).status_code == 200
        assert client.get(f"{CHANGELIST}add/").status_code == 403
        assert client.get(f"{CHANGELIST}{event.pk}/delete/").status_code == 403
        assert client.post(f"{CHANGELIST}{event.pk}/delete/", {"post": "yes"}).status_code == 403
        client.post(f"{CHANGELIST}{event.pk}/change/", {"kind": "security"})
        page = client.get(CHANGELIST).content.decode()
        assert 'value="delete_selected"' not in page
    assert AuditEvent.objects.get(pk=event.pk).kind == "other"
    assert audit_verify().ok


# The project's transactional tests empty every table with TRUNCATE after each test; the audit
# table's TRUNCATE guard must let that through (these two run in this order).

_recorded_by_transactional_test: list[int] = []


@pytest.mark.django_db(transaction=True)
def test_transactional_test_records_and_is_flushed() -> None:
    event = audit_record(AuditEvent.Kind.OTHER, detail={"step": 1})
    assert AuditEvent.objects.filter(pk=event.pk).exists()  # committed, not a test transaction
    _recorded_by_transactional_test.append(event.pk)


@pytest.mark.django_db(transaction=True)
def test_next_transactional_test_starts_empty() -> None:
    if not _recorded_by_transactional_test:
        pytest.skip("runs after test_transactional_test_records_and_is_flushed")
    assert not AuditEvent.objects.exists()
    assert audit_record(AuditEvent.Kind.OTHER).prev_hash == GENESIS_HASH
