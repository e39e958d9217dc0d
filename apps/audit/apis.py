"""JWT tokens for app clients, and the admin API on API keys.

`POST /api/v1/auth/token` with username and password gives an access token (short-lived) and a
refresh token; `…/token/refresh` rotates the refresh token (the old one is blacklisted);
`…/token/revoke` blacklists a refresh token (log out). Issuing is a login in the audit log, a
wrong password a failed login (Django's signal), revoking a security event.

`GET /api/v1/api-keys` lists API keys and `POST /api/v1/api-keys/{prefix}/revoke` revokes one:
for an API key with the admin scope (or a JWT or session login) whose user has the model's
permission (`audit.view_apikey`, `audit.change_apikey`); a superuser sees every key, anyone
else only the keys that act for them.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt import views as jwt_views

from apps.audit import selectors
from apps.audit.authentication import KeyScope
from apps.audit.keys import api_key_revoke
from apps.audit.middleware import request_context, request_id_of
from apps.audit.models import AuditEvent, Scope
from apps.audit.services import audit_record


class TokenObtainApi(jwt_views.TokenObtainPairView):
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)  # a wrong password: 401, failed-login signal
        audit_record(
            AuditEvent.Kind.LOGIN,
            actor=serializer.user,  # type: ignore[attr-defined]
            **request_context(request._request),
            detail={"via": "jwt"},
        )
        return Response(serializer.validated_data)


class TokenRefreshApi(jwt_views.TokenRefreshView):
    pass


class TokenRevokeApi(jwt_views.TokenBlacklistView):
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().post(request, *args, **kwargs)
        audit_record(
            AuditEvent.Kind.SECURITY,
            **request_context(request._request),
            detail={"reason": "jwt_revoked"},
        )
        return response


# --- The admin API on API keys ---------------------------------------------------------------


class ModelPermission(BasePermission):
    """The user (a key's owner, for an API key) must hold the view's `required_permission`;
    an active superuser holds every one."""

    def has_permission(self, request: Request, view: Any) -> bool:
        required = view.required_permission
        if request.user.has_perm(required):
            return True
        self.message = _('This needs the "%(permission)s" permission.') % {"permission": required}
        return False


@extend_schema_serializer(component_name="ApiKey")
class ApiKeySerializer(serializers.Serializer):
    """A key as lists show it: never the key or its hash."""

    prefix = serializers.CharField()
    name = serializers.CharField()
    user = serializers.CharField(source="user.get_username", help_text="The user it acts for.")
    scopes = serializers.ListField(child=serializers.CharField(), help_text=", ".join(Scope))
    status = serializers.CharField(source="state", help_text="active, revoked or expired")
    rate_limit = serializers.IntegerField(
        allow_null=True, help_text="Requests per minute; null: the default for keys."
    )
    expires_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class _ApiKeyAdminApi(APIView):
    required_scope = Scope.ADMIN  # for API keys
    required_permission: str
    permission_classes = [IsAuthenticated, KeyScope, ModelPermission]


class ApiKeyListApi(_ApiKeyAdminApi):
    """The API keys the caller may manage, newest first."""

    required_permission = "audit.view_apikey"

    @extend_schema(
        operation_id="v1_api_keys_list",
        responses={
            200: ApiKeySerializer(many=True),
            403: OpenApiResponse(
                description="The key lacks the admin scope, or the user the permission."
            ),
        },
    )
    def get(self, request: Request) -> Response:
        keys = selectors.api_keys_visible_to(request.user)
        return Response(ApiKeySerializer(keys, many=True).data)


class ApiKeyRevokeApi(_ApiKeyAdminApi):
    """Revoke a key at once (revoking a revoked key changes nothing); the key as it now is."""

    required_permission = "audit.change_apikey"

    @extend_schema(
        operation_id="v1_api_keys_revoke",
        request=None,
        responses={
            200: ApiKeySerializer,
            403: OpenApiResponse(
                description="The key lacks the admin scope, or the user the permission."
            ),
            404: OpenApiResponse(description="No key with this prefix that the caller may see."),
        },
    )
    def post(self, request: Request, prefix: str) -> Response:
        api_key = selectors.api_key_visible_get(request.user, prefix)
        api_key_revoke(api_key, by=request.user, request_id=request_id_of(request._request))
        return Response(ApiKeySerializer(api_key).data)
