from django.urls import path

from apps.agents.views import console_page

urlpatterns = [path("", console_page, name="console")]
