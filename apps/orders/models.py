"""Orders and returns of the demo store, so the bot's forms have real records to act on."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from apps.core.models import TimeStampedModel


class OrderStatus(models.TextChoices):
    AWAITING_PAYMENT = "awaiting_payment", _("Awaiting payment")
    AWAITING_SHIPMENT = "awaiting_shipment", _("Awaiting shipment")
    SHIPPED = "shipped", _("Shipped")
    DELIVERED = "delivered", _("Delivered")
    CANCELLED = "cancelled", _("Cancelled")


class Order(TimeStampedModel):
    number = models.CharField(_("order number"), max_length=32, unique=True)
    item = models.CharField(_("item"), max_length=200)
    total = models.DecimalField(_("total"), max_digits=10, decimal_places=2)
    currency = models.CharField(_("currency"), max_length=3, default="CNY")
    status = models.CharField(_("status"), max_length=24, choices=OrderStatus.choices)
    carrier = models.CharField(_("carrier"), max_length=64, blank=True)
    tracking_number = models.CharField(_("tracking number"), max_length=64, blank=True)
    placed_at = models.DateTimeField(_("placed at"))
    shipped_at = models.DateTimeField(_("shipped at"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    estimated_delivery = models.DateField(_("estimated delivery"), null=True, blank=True)
    contact_phone = models.CharField(
        _("contact mobile number"),
        max_length=32,
        blank=True,
        help_text=_(
            "The mobile number the order is delivered to. In a chat, the order's details are "
            "shown only after the customer gives its last 4 digits; an order without one is "
            "left to a person."
        ),
    )
    customer_ref = models.CharField(
        _("store account"),
        max_length=128,
        blank=True,
        db_index=True,
        help_text=_(
            "The store's own user id for the buyer. In a conversation an app opened for that "
            "user with its chat API key (the conversation API's external_id), the order is "
            "confirmed without the mobile digits."
        ),
    )

    class Meta:
        verbose_name = _("order")
        verbose_name_plural = _("orders")
        ordering = ["-placed_at"]

    def __str__(self) -> str:
        return self.number


class ReturnStatus(models.TextChoices):
    REQUESTED = "requested", _("Requested")
    NEEDS_REVIEW = "needs_review", _("Needs review")
    APPROVED = "approved", _("Approved")
    REJECTED = "rejected", _("Rejected")
    REFUNDED = "refunded", _("Refunded")


class ReturnRequest(TimeStampedModel):
    number = models.CharField(_("return number"), max_length=32, unique=True)
    order = models.ForeignKey(
        Order, on_delete=models.PROTECT, related_name="returns", verbose_name=_("order")
    )
    reason = models.TextField(_("reason"))
    photo_url = models.URLField(_("photo"), blank=True)
    status = models.CharField(
        _("status"), max_length=16, choices=ReturnStatus.choices, default="requested"
    )
    conversation = models.ForeignKey(
        "conversations.Conversation",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("conversation"),
    )

    class Meta:
        verbose_name = _("return request")
        verbose_name_plural = _("return requests")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.number


class ContactCheckFailure(models.Model):
    """One wrong answer to an order's contact check in a chat (the last digits of its mobile
    number). Kept in the database, not the cache, so that a restart or a second server process
    does not hand out fresh tries; rows older than the lock window are deleted as new ones come."""

    order = models.ForeignKey(
        Order,
        on_delete=models.CASCADE,
        related_name="contact_check_failures",
        verbose_name=_("order"),
        db_index=False,  # the (order, created_at) index below serves lookups by order
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    conversation = models.ForeignKey(
        "conversations.Conversation",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("conversation"),
    )

    class Meta:
        verbose_name = _("failed contact check")
        verbose_name_plural = _("failed contact checks")
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["order", "created_at"], name="orders_contact_fail_order_at")
        ]

    def __str__(self) -> str:
        return f"{self.order_id} @ {self.created_at}"
