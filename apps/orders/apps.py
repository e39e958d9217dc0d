from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class OrdersConfig(AppConfig):
    """The demo store's orders and returns, and the form actions the bot runs on them."""

    name = "apps.orders"
    label = "orders"
    verbose_name = _("Demo store orders")

    def ready(self) -> None:
        from apps.orders import actions  # noqa: F401  (registers the form actions)
