from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SafetyConfig(AppConfig):
    name = "apps.safety"
    label = "safety"
    verbose_name = _("Safety")

    def ready(self) -> None:
        from apps.safety import signals  # noqa: F401 (the lexicon's cache invalidation)
