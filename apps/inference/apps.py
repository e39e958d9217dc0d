from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class InferenceConfig(AppConfig):
    name = "apps.inference"
    label = "inference"
    verbose_name = _("Language models")
