"""How the OpenAPI schema (drf-spectacular) describes API-key authentication."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "apps.audit.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "An API key (csk_…) as `Authorization: Bearer <key>` or `X-API-Key: <key>`; "
                "it reaches only the endpoints of its scopes (kb:read, chat, admin)."
            ),
        }
