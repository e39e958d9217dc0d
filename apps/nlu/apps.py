from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class NluConfig(AppConfig):
    name = "apps.nlu"
    label = "nlu"
    verbose_name = _("Intents")
