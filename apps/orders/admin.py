from django.contrib import admin

from apps.orders.models import Order, ReturnRequest


class ReturnInline(admin.TabularInline):
    model = ReturnRequest
    extra = 0
    fields = ("number", "status", "reason", "photo_url", "created_at")
    readonly_fields = ("created_at",)


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ("number", "item", "status", "total", "currency", "placed_at", "delivered_at")
    list_filter = ("status",)
    search_fields = ("number", "item", "tracking_number")
    inlines = [ReturnInline]


@admin.register(ReturnRequest)
class ReturnRequestAdmin(admin.ModelAdmin):
    list_display = ("number", "order", "status", "created_at")
    list_filter = ("status",)
    search_fields = ("number", "order__number", "reason")
    list_select_related = ("order",)
    raw_id_fields = ("order", "conversation")
