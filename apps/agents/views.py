"""The agent console page. Everything live on it goes over the console socket (`/ws/console/`);
the page itself only checks who may open it and hands the script its settings."""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from apps.agents import services

CONSOLE_SOCKET_PATH = "/ws/console/"


@require_GET
def console_page(request: HttpRequest) -> HttpResponse:
    """Anonymous visitors go to the console's login page and come back here; a signed-in user
    who is not an agent gets a 403 rather than a page whose socket would refuse them."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path(), login_url=reverse("console-login"))
    if not services.is_agent(request.user):
        raise PermissionDenied(_("Only agents can use the agent console."))
    language = get_language() or "en"
    return render(
        request,
        "console/index.html",
        {
            "console_config": {
                "ws_path": CONSOLE_SOCKET_PATH,
                "name": services.display_name(request.user),
                "supervisor": services.is_supervisor(request.user),
                "language": language,
            },
            "agent_name": services.display_name(request.user),
            "is_supervisor": services.is_supervisor(request.user),
        },
    )
