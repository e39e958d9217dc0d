"""Authentication and scope checks for API keys (DRF).

`ApiKeyAuthentication` takes `Authorization: Bearer csk_…` or `X-API-Key: csk_…`; any other
bearer token is left to the next class (JWT). The key's owner becomes `request.user` and the key
`request.auth`; `KeyScope` then lets a key reach only views whose `required_scope` it holds.
Refused keys answer 401 with the reason, and the audit log records the attempt.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from rest_framework import authentication, exceptions
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from apps.audit import keys
from apps.audit.models import ApiKey, Scope

REFUSALS = {
    "malformed": gettext_lazy("The API key is malformed."),
    "unknown": gettext_lazy("The API key is not valid."),
    "revoked": gettext_lazy("The API key has been revoked."),
    "expired": gettext_lazy("The API key has expired."),
    "user_inactive": gettext_lazy("The API key's user is inactive."),
}


def presented_key(request: Request) -> str:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer ") and header[7:].strip().startswith(keys.KEY_PREFIX):
        return header[7:].strip()
    return request.headers.get("X-API-Key", "").strip()


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        key = presented_key(request)
        if not key:
            return None
        http_request = request._request
        try:
            api_key = keys.api_key_check(key)
        except keys.KeyRefused as refused:
            # Read by the audit middleware: the attempt, never the key itself.
            http_request.audit_detail = {"auth": "api_key", "refused": refused.reason}  # type: ignore[attr-defined]
            if refused.prefix:
                http_request.audit_actor = f"key:{refused.prefix}"  # type: ignore[attr-defined]
            raise exceptions.AuthenticationFailed(str(REFUSALS[refused.reason])) from None
        http_request.audit_actor = f"key:{api_key.prefix}"  # type: ignore[attr-defined]
        http_request.audit_detail = {"auth": "api_key", "key_id": api_key.pk}  # type: ignore[attr-defined]
        return api_key.user, api_key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class KeyScope(BasePermission):
    """A request made with an API key reaches a view only if the key has the view's
    `required_scope` (views that name none need the admin scope). Other logins pass."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not isinstance(request.auth, ApiKey):
            return True
        required = getattr(view, "required_scope", Scope.ADMIN)
        if required in request.auth.scopes:
            return True
        self.message = _('This API key does not have the "%(scope)s" scope.') % {"scope": required}
        return False
