"""Data-subject requests (access, erasure) and the cold-storage archive of old conversations.

A request row must never become a leftover copy of the personal data it was about: the
identifier (an e-mail address, a phone number, a channel's user id) is kept only as a keyed
pseudonym, plus encrypted while the request is open (the search needs the value itself); the
encrypted copy is emptied when the request completes or is rejected. What the request found is
recorded by pseudonymous ids (public ids, stored pseudonyms) and counts only.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class RequestKind(models.TextChoices):
    ACCESS = "access", _("Access (export)")
    ERASURE = "erasure", _("Erasure")


class IdentifierKind(models.TextChoices):
    PSEUDONYM = "pseudonym", _("Pseudonymous id")
    CHANNEL_ID = "channel_id", _("Channel id")
    EMAIL = "email", _("E-mail address")
    PHONE = "phone", _("Phone number")


class RequestStatus(models.TextChoices):
    AWAITING_APPROVAL = "awaiting_approval", _("Awaiting approval")
    APPROVED = "approved", _("Approved")
    RUNNING = "running", _("Running")
    COMPLETED = "completed", _("Completed")
    FAILED = "failed", _("Failed")
    REJECTED = "rejected", _("Rejected")


class DataSubjectRequest(models.Model):
    public_id = models.UUIDField(_("request id"), default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(_("kind"), max_length=16, choices=RequestKind.choices)
    identifier_kind = models.CharField(
        _("identified by"), max_length=16, choices=IdentifierKind.choices
    )
    channel = models.CharField(
        _("channel"),
        max_length=16,
        blank=True,
        help_text=_("For a channel id: the channel it belongs to (empty: every channel)."),
    )
    identifier_pseudonym = models.CharField(
        _("identifier (pseudonym)"), max_length=64, db_index=True, editable=False
    )
    identifier_encrypted = models.TextField(
        _("identifier (encrypted)"),
        blank=True,
        editable=False,
        help_text=_("Kept only while the request is open."),
    )
    status = models.CharField(
        _("status"),
        max_length=24,
        choices=RequestStatus.choices,
        default=RequestStatus.AWAITING_APPROVAL,
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("requested by"),
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("approved by"),
    )
    rejected_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("rejected by"),
    )
    executed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("executed by"),
    )
    created_at = models.DateTimeField(_("requested at"), auto_now_add=True, db_index=True)
    decided_at = models.DateTimeField(_("approved or rejected at"), null=True, blank=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    subject = models.JSONField(
        _("data subject (pseudonymous ids)"),
        default=dict,
        blank=True,
        help_text=_("Public ids of the customers and conversations the identifier led to."),
    )
    results = models.JSONField(
        _("per-store results"),
        default=dict,
        blank=True,
        help_text=_("What was found and removed in each store (counts)."),
    )
    verification = models.JSONField(_("verification"), default=dict, blank=True)
    error = models.TextField(_("error"), blank=True)
    error_detail = models.CharField(
        _("technical detail"),
        max_length=255,
        blank=True,
        help_text=_(
            "Which store and step failed, and the type of error; the full error is in the "
            "worker's log."
        ),
    )
    report_file = models.CharField(_("erasure report"), max_length=255, blank=True)
    report_sha256 = models.CharField(_("report SHA-256"), max_length=64, blank=True)
    export_json_file = models.CharField(_("export (JSON)"), max_length=255, blank=True)
    export_pdf_file = models.CharField(_("export (PDF)"), max_length=255, blank=True)

    class Meta:
        verbose_name = _("data-subject request")
        verbose_name_plural = _("data-subject requests")
        ordering = ["-created_at", "-pk"]
        # Requests are created, decided and run through the admin's buttons (services), never
        # edited or deleted as rows: one permission says who may do all of it.
        default_permissions = ()
        permissions = [
            ("manage_requests", _("Can open, approve and run data-subject requests")),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {str(self.public_id)[:8]}"


class ArchiveBatch(models.Model):
    """One compressed JSONL file of archived conversations in cold storage. The file's manifest
    (beside it in the storage) is the record of truth; this row is its index."""

    name = models.CharField(_("batch"), max_length=64, unique=True)
    data_file = models.CharField(_("data file"), max_length=255)
    created_at = models.DateTimeField(_("archived at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("rewritten at"), null=True, blank=True)
    conversations = models.PositiveIntegerField(_("conversations"))
    messages = models.PositiveIntegerField(_("messages"))
    sha256 = models.CharField(_("SHA-256 (compressed file)"), max_length=64)
    conversation_ids = models.JSONField(_("conversation public ids"), default=list)
    customer_ids = models.JSONField(_("customer public ids"), default=list)

    class Meta:
        verbose_name = _("archive batch")
        verbose_name_plural = _("archive batches")
        ordering = ["-created_at", "-pk"]
        default_permissions = ()

    def __str__(self) -> str:
        return self.name


class RetentionHold(models.Model):
    """A conversation brought back from the archive stays in the database until `until`."""

    conversation_public_id = models.UUIDField(_("conversation"), unique=True)
    until = models.DateTimeField(_("held until"))
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("retention hold")
        verbose_name_plural = _("retention holds")
        default_permissions = ()

    def __str__(self) -> str:
        return f"{self.conversation_public_id} until {self.until:%Y-%m-%d}"
