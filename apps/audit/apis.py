"""JWT access/refresh tokens for app clients (djangorestframework-simplejwt).

`POST /api/v1/auth/token` with username and password gives an access token (short-lived) and a
refresh token; `…/token/refresh` rotates the refresh token (the old one is blacklisted);
`…/token/revoke` blacklists a refresh token (log out). Issuing is a login in the audit log, a
wrong password a failed login (Django's signal), revoking a security event.
"""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework_simplejwt import views as jwt_views

from apps.audit.middleware import request_context
from apps.audit.models import AuditEvent
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
