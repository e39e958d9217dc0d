from django.contrib.auth import views as auth_views
from django.urls import path

from apps.agents.views import console_page

urlpatterns = [
    path("", console_page, name="console"),
    # Agents sign in here (they need not be admin staff).
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="console/login.html", redirect_authenticated_user=True
        ),
        name="console-login",
    ),
    path(
        "logout/", auth_views.LogoutView.as_view(next_page="console-login"), name="console-logout"
    ),
]
