from typing import Any

from django import forms
from django.contrib import admin
from django.db import models
from django.http import HttpRequest
from django.utils import timezone

from apps.orders.models import ContactCheckFailure, Order, OrderStatus, ReturnRequest

# Links typed without a scheme are read as https (Django 6's default, asked for explicitly).
URL_FIELDS: dict[Any, dict[str, Any]] = {
    models.URLField: {"form_class": forms.URLField, "assume_scheme": "https"}
}


class ReturnInline(admin.TabularInline):
    model = ReturnRequest
    extra = 0
    fields = ("number", "status", "reason", "photo_url", "created_at")
    readonly_fields = ("created_at",)
    formfield_overrides = URL_FIELDS


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ("number", "item", "status", "total", "currency", "placed_at", "delivered_at")
    list_filter = ("status",)
    search_fields = ("number", "item", "tracking_number", "contact_phone", "customer_ref")
    inlines = [ReturnInline]

    def save_model(self, request: HttpRequest, obj: Order, form: Any, change: bool) -> None:
        # An order marked delivered here gets its delivery time (returns are counted from it).
        if obj.status == OrderStatus.DELIVERED and obj.delivered_at is None:
            obj.delivered_at = timezone.now()
        super().save_model(request, obj, form, change)


@admin.register(ReturnRequest)
class ReturnRequestAdmin(admin.ModelAdmin):
    list_display = ("number", "order", "status", "created_at")
    list_filter = ("status",)
    search_fields = ("number", "order__number", "reason")
    list_select_related = ("order",)
    raw_id_fields = ("order", "conversation")
    formfield_overrides = URL_FIELDS


@admin.register(ContactCheckFailure)
class ContactCheckFailureAdmin(admin.ModelAdmin):
    """Wrong answers to orders' contact checks, to look at: `contact_confirm` writes them and
    deletes those older than the lock window."""

    list_display = ("order", "created_at", "conversation")
    list_select_related = ("order", "conversation")
    search_fields = ("order__number",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
