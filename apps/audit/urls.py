from django.urls import path

from apps.audit import apis

urlpatterns = [
    path("auth/token", apis.TokenObtainApi.as_view(), name="token-obtain"),
    path("auth/token/refresh", apis.TokenRefreshApi.as_view(), name="token-refresh"),
    path("auth/token/revoke", apis.TokenRevokeApi.as_view(), name="token-revoke"),
    path("api-keys", apis.ApiKeyListApi.as_view(), name="api-key-list"),
    path("api-keys/<slug:prefix>/revoke", apis.ApiKeyRevokeApi.as_view(), name="api-key-revoke"),
]
