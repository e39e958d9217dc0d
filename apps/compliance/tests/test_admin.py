"""The compliance admin: only compliance staff reach it; four eyes; the whole flow through the
admin's own pages (open, approve, run, download the report and the access export)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.compliance import services
from apps.compliance.models import DataSubjectRequest, RequestStatus
from apps.compliance.tests.conftest import pdf_text, squash, start
from apps.conversations.models import Customer
from apps.conversations.tests.conftest import say
from apps.core.exceptions import ServiceError

CHANGELIST = "admin:compliance_datasubjectrequest_changelist"


def test_the_compliance_group_holds_the_permission_from_the_migration(db: Any) -> None:
    group = Group.objects.get(name="compliance")
    assert group.permissions.filter(
        content_type__app_label="compliance", codename="manage_requests"
    ).exists()


@pytest.fixture
def agent(django_user_model: Any) -> Any:
    """The demo's "agent": in the agents group, works in /console/, not admin staff."""
    user = django_user_model.objects.create_user("agent", password="pw-agent")
    group, _ = Group.objects.get_or_create(name="agents")
    group.permissions.add(*Permission.objects.filter(codename="use_console"))
    user.groups.add(group)
    return user


@pytest.fixture
def support(django_user_model: Any) -> Any:
    """Admin staff without the compliance permission (knowledge base editors, supervisors)."""
    user = django_user_model.objects.create_user("support", password="pw-s", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="conversations"))
    return user


def test_agents_and_other_staff_cannot_reach_compliance_views(
    client: Any, agent: Any, support: Any, officers: tuple[Any, Any], chat_kb: Any
) -> None:
    officer, _ = officers
    conversation = start(chat_kb, external_id="x-1")
    request = services.data_subject_request_create(
        user=officer, kind="access", identifier_kind="channel_id", identifier="x-1"
    )
    pk = request.pk
    urls = [
        reverse(CHANGELIST),
        reverse("admin:compliance_datasubjectrequest_add"),
        reverse("admin:compliance_datasubjectrequest_change", args=[pk]),
        reverse("admin:compliance_datasubjectrequest_download", args=[pk, "report"]),
        reverse("admin:compliance_archivebatch_changelist"),
    ]
    posts = [
        reverse("admin:compliance_datasubjectrequest_approve", args=[pk]),
        reverse("admin:compliance_datasubjectrequest_execute", args=[pk]),
        reverse("admin:compliance_datasubjectrequest_reject", args=[pk]),
    ]
    # An agent is not admin staff: every page sends them to the admin login.
    client.force_login(agent)
    for url in urls + posts:
        response = client.post(url) if url in posts else client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], url
    # Staff without the permission: refused, and no entry on the admin index.
    client.force_login(support)
    for url in urls:
        assert client.get(url).status_code == 403, url
    for url in posts:
        assert client.post(url).status_code == 403, url
    index = client.get(reverse("admin:index")).content.decode()
    assert "datasubjectrequest" not in index and "conversation" in index
    # Nothing changed.
    request.refresh_from_db()
    assert request.status == RequestStatus.AWAITING_APPROVAL and request.approved_by is None
    assert Customer.objects.filter(pk=conversation.customer_id).exists()
    # The services refuse them too, whoever calls them.
    with pytest.raises(services.PermissionDenied):
        services.data_subject_request_approve(request, support)
    with pytest.raises(services.PermissionDenied):
        services.data_subject_request_create(
            user=agent, kind="erasure", identifier_kind="channel_id", identifier="x-1"
        )


def test_four_eyes_the_requester_cannot_approve(officers: tuple[Any, Any], db: Any) -> None:
    requester, approver = officers
    request = services.data_subject_request_create(
        user=requester, kind="erasure", identifier_kind="phone", identifier="+86 138 0013 8000"
    )
    assert request.status == RequestStatus.AWAITING_APPROVAL
    with pytest.raises(ServiceError, match="second compliance user"):
        services.data_subject_request_approve(request, requester)
    with pytest.raises(ServiceError, match="approved"):
        services.data_subject_request_queue(request, requester)
    request.refresh_from_db()
    assert request.status == RequestStatus.AWAITING_APPROVAL
    services.data_subject_request_approve(request, approver)
    request.refresh_from_db()
    assert request.status == RequestStatus.APPROVED and request.approved_by == approver


def test_without_four_eyes_opening_approves(
    officers: tuple[Any, Any], settings: Any, db: Any
) -> None:
    settings.COMPLIANCE = {**settings.COMPLIANCE, "FOUR_EYES": False}
    request = services.data_subject_request_create(
        user=officers[0], kind="access", identifier_kind="email", identifier="a@example.com"
    )
    assert request.status == RequestStatus.APPROVED and request.approved_by == officers[0]


def test_rejecting_forgets_the_identifier(officers: tuple[Any, Any], db: Any) -> None:
    request = services.data_subject_request_create(
        user=officers[0], kind="erasure", identifier_kind="email", identifier="a@example.com"
    )
    assert request.identifier_encrypted
    services.data_subject_request_reject(request, officers[1])
    request.refresh_from_db()
    assert request.status == RequestStatus.REJECTED and request.identifier_encrypted == ""
    with pytest.raises(ServiceError):
        services.data_subject_request_approve(request, officers[1])


@pytest.mark.slow
def test_access_request_through_the_admin(
    client: Any,
    officers: tuple[Any, Any],
    chat_kb: Any,
    compliance_storage: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    requester, approver = officers
    conversation = start(chat_kb, external_id="app-7")
    say(conversation, "我要退货")
    say(conversation, "订单号 LM2026112002")
    say(conversation, "8002")  # the last digits of the order's mobile number, to confirm it
    say(conversation, "耳机左边没声音，联系 138-0013-8000")
    say(conversation, "跳过")
    other = start(chat_kb, external_id="app-8")
    say(other, "运费怎么算")

    client.force_login(requester)
    assert "datasubjectrequest" in client.get(reverse("admin:index")).content.decode()
    response = client.post(
        reverse("admin:compliance_datasubjectrequest_add"),
        {"kind": "access", "identifier_kind": "phone", "identifier": "13800138000"},
    )
    assert response.status_code == 302
    request = DataSubjectRequest.objects.get()
    assert request.subject["customers"] == [str(conversation.customer.public_id)]
    change = reverse("admin:compliance_datasubjectrequest_change", args=[request.pk])
    page = client.get(change).content.decode()
    assert "Approve" in page and "13800138000" not in page

    # The requester's own approval is refused (four eyes), the second officer's taken.
    client.post(reverse("admin:compliance_datasubjectrequest_approve", args=[request.pk]))
    request.refresh_from_db()
    assert request.status == RequestStatus.AWAITING_APPROVAL
    client.force_login(approver)
    client.post(reverse("admin:compliance_datasubjectrequest_approve", args=[request.pk]))
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("admin:compliance_datasubjectrequest_execute", args=[request.pk]))
    request.refresh_from_db()
    assert request.status == RequestStatus.COMPLETED, request.error
    assert request.identifier_encrypted == ""

    # The JSON export holds everything, originals as written; nothing of the other customer.
    response = client.get(
        reverse("admin:compliance_datasubjectrequest_download", args=[request.pk, "json"])
    )
    assert response.status_code == 200
    export = json.loads(response.content)
    assert export["request"] == str(request.public_id)
    stores = export["stores"]
    assert [c["public_id"] for c in stores["customers"]] == [str(conversation.customer.public_id)]
    (record,) = stores["conversations"]
    texts = [m["original"] or m["text"] for m in record["messages"]]
    assert "耳机左边没声音，联系 138-0013-8000" in texts
    assert any("[PHONE]" in m["text"] for m in record["messages"])
    assert stores["orders"][0]["order"] == "LM2026112002"
    assert "138-0013-8000" in stores["orders"][0]["reason"]
    assert str(other.public_id) not in response.content.decode()

    # The readable PDF shows the conversation in Chinese.
    response = client.get(
        reverse("admin:compliance_datasubjectrequest_download", args=[request.pk, "pdf"])
    )
    assert response["Content-Type"] == "application/pdf"
    path = compliance_storage / "export.pdf"
    path.write_bytes(response.content)
    text = pdf_text(path)
    assert squash("耳机左边没声音，联系 138-0013-8000") in text
    assert squash("Personal data export") in text and "LM2026112002" in text

    # Downloads are audited with the file's hash; the access request's steps too.
    downloads = AuditEvent.objects.filter(detail__action="download").order_by("id")
    assert [d.detail["file"] for d in downloads] == ["json", "pdf"]
    assert downloads.last().detail["sha256"] == hashlib.sha256(response.content).hexdigest()
    assert downloads.last().actor == approver.username
    assert AuditEvent.objects.filter(detail__action="access_export_completed").exists()

    # A later erasure of the same customer deletes the export files (they are copies).
    erasure = services.data_subject_request_create(
        user=approver,
        kind="erasure",
        identifier_kind="pseudonym",
        identifier=str(conversation.customer.public_id),
    )
    services.data_subject_request_approve(erasure, requester)
    with django_capture_on_commit_callbacks(execute=True):
        services.data_subject_request_queue(erasure, requester)
    erasure.refresh_from_db()
    assert erasure.status == RequestStatus.COMPLETED, erasure.error
    assert erasure.results["exports"]["removed"] == 2
    request.refresh_from_db()
    assert request.export_json_file == request.export_pdf_file == ""
    assert not list((compliance_storage / "files").glob("requests/*/access-export.*"))
    response = client.get(
        reverse("admin:compliance_datasubjectrequest_download", args=[erasure.pk, "report"])
    )
    assert response.status_code == 200 and response.content.startswith(b"%PDF")
    assert hashlib.sha256(response.content).hexdigest() == erasure.report_sha256


def test_a_bad_identifier_is_refused_on_the_form(client: Any, officers: tuple[Any, Any]) -> None:
    client.force_login(officers[0])
    response = client.post(
        reverse("admin:compliance_datasubjectrequest_add"),
        {"kind": "erasure", "identifier_kind": "email", "identifier": "not-an-address"},
    )
    assert response.status_code == 200
    assert "Enter a valid e-mail address." in response.content.decode()
    assert not DataSubjectRequest.objects.exists()


def test_the_request_list_costs_the_same_queries_for_more_rows(
    client: Any, officers: tuple[Any, Any], django_assert_max_num_queries: Any
) -> None:
    requester, approver = officers
    client.force_login(approver)

    def open_requests(n: int) -> None:
        for i in range(n):
            request = services.data_subject_request_create(
                user=requester,
                kind="access",
                identifier_kind="email",
                identifier=f"user{i}@example.com",
            )
            services.data_subject_request_approve(request, approver)

    open_requests(2)
    with django_assert_max_num_queries(100) as few:
        assert client.get(reverse(CHANGELIST)).status_code == 200
    open_requests(8)
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = client.get(reverse(CHANGELIST)).content.decode()
    assert page.count('class="field-short_id"') == 10
