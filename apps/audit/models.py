"""The append-only, tamper-evident audit log.

Rows are only ever inserted, by `services.audit_record`. PostgreSQL itself refuses UPDATE, DELETE
and TRUNCATE on the table (triggers in migration 0002), and every row carries the SHA-256 of the
row before it plus its own content, so a change made behind the triggers' back (an owner who
disables them, a restored backup edited by hand) shows up in `services.audit_verify`.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

GENESIS_HASH = "0" * 64


class AuditEvent(models.Model):
    class Kind(models.TextChoices):
        API_REQUEST = "api_request", _("API request")
        ADMIN_CHANGE = "admin_change", _("Admin change")
        LOGIN = "login", _("Login")
        LOGIN_FAILED = "login_failed", _("Failed login")
        LOGOUT = "logout", _("Logout")
        KEY_USED = "key_used", _("API key used")
        DATA_SUBJECT_REQUEST = "data_subject_request", _("Data-subject request")
        SECURITY = "security", _("Security")
        OTHER = "other", _("Other")

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now, db_index=True)
    request_id = models.CharField(_("request id"), max_length=64, blank=True, db_index=True)
    kind = models.CharField(_("kind"), max_length=32, choices=Kind.choices)
    # The user's id, not a foreign key: deleting or erasing a user must never touch the log.
    actor_id = models.IntegerField(_("actor id"), null=True, blank=True)
    actor = models.CharField(
        _("actor"),
        max_length=150,
        blank=True,
        help_text=_('Username, "key:<prefix>" for an API key, or empty for anonymous.'),
    )
    # The address in clear only for staff users and API keys (the platform's own people and
    # integrations); anyone else's (visitors, customers, failed logins) only as a keyed pseudonym
    # (apps.safety.pseudonyms) in ip_pseudonym: these rows can never be erased.
    ip = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    # Null, not empty, on rows written before the column existed: the hash covers it only when it
    # is set, so those rows still verify.
    ip_pseudonym = models.CharField(
        _("IP address (pseudonym)"), max_length=64, null=True, blank=True
    )
    method = models.CharField(_("method"), max_length=8, blank=True)
    endpoint = models.CharField(_("endpoint"), max_length=300, blank=True)
    status = models.PositiveSmallIntegerField(_("status"), null=True, blank=True)
    input_tokens = models.PositiveIntegerField(_("input tokens"), null=True, blank=True)
    output_tokens = models.PositiveIntegerField(_("output tokens"), null=True, blank=True)
    latency_ms = models.FloatField(_("latency (ms)"), null=True, blank=True)
    # Only pseudonymous identifiers (public ids, primary keys, counts, codes) belong here, never
    # raw personal data (names, e-mail addresses, message text): rows can never be changed or
    # deleted, so nothing in them could be erased for a data subject.
    detail = models.JSONField(_("detail"), default=dict, blank=True)
    # Unique as well: two rows naming the same parent would be a fork, which the database then
    # refuses even if some writer skipped the service's lock.
    prev_hash = models.CharField(_("previous hash"), max_length=64, unique=True)
    hash = models.CharField(_("hash"), max_length=64, unique=True)

    class Meta:
        db_table = "audit_event"
        ordering = ("-id",)
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")
        # No add/change/delete/view permissions: nobody may change the log, and seeing it is the
        # one permission below (granted to the "compliance" group).
        default_permissions = ()
        permissions = [("view_audit_log", _("Can view and export the audit log"))]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} {self.actor or '-'} {self.endpoint}".strip()


class Scope(models.TextChoices):
    KB_READ = "kb:read", _("Read knowledge bases (search)")
    CHAT = "chat", _("Chat (conversation API)")
    ADMIN = "admin", _("Admin API")


class ApiKey(models.Model):
    """A key an integration sends as `Authorization: Bearer <key>` (or `X-API-Key`).

    The key is shown once, when it is made; only its SHA-256 is kept, beside a short prefix that
    names it in lists and in the audit log. It works for the scopes it was given, until it
    expires or is revoked, acting for the user who owns it (whose permissions still apply)."""

    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(_("prefix"), max_length=16, unique=True, editable=False)
    hashed_key = models.CharField(_("hashed key"), max_length=64, unique=True, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="api_keys",
        verbose_name=_("acts for"),
        help_text=_("The key has this user's permissions, limited to its scopes."),
    )
    scopes = ArrayField(
        models.CharField(max_length=16, choices=Scope.choices),
        verbose_name=_("scopes"),
        default=list,
    )
    rate_limit = models.PositiveIntegerField(
        _("requests per minute"),
        null=True,
        blank=True,
        help_text=_("Empty: the default for keys (API_RATE_LIMITS in the settings)."),
    )
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(_("last used at"), null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        editable=False,
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        ordering = ("-created_at",)
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def active(self) -> bool:
        return self.state == "active"

    @property
    def state(self) -> str:
        """ "revoked", "expired" or "active"."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return "expired"
        return "active"
