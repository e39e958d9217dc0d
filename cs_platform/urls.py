from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.conversations.views import demo_page
from apps.core.views import health, metrics
from apps.knowledge.views import article_page

urlpatterns = [
    path("", demo_page, name="demo"),
    path("help/articles/<int:pk>/", article_page, name="help-article"),
    path("healthz", health, name="health"),
    path("metrics", metrics, name="metrics"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("console/", include("apps.agents.urls")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/", include("apps.knowledge.urls")),
    path("api/v1/", include("apps.conversations.urls")),
    path("api/v1/", include("apps.audit.urls")),
]
