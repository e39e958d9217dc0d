"""The conversation API for apps: the same services as the chat socket, over REST.

No staff login: creating a conversation returns a signed token, and every later call sends it
as `Authorization: Conversation <token>` (or `X-Conversation-Token`). Throttled per client.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
)
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from apps.audit.authentication import ApiKeyAuthentication
from apps.audit.models import ApiKey, Scope
from apps.audit.throttling import ApiKeyThrottle
from apps.conversations import services
from apps.conversations.models import Channel, Conversation, Message
from apps.conversations.serializers import message_frame
from apps.core.exceptions import NotFoundError, ServiceError


class ConversationThrottle(AnonRateThrottle):
    scope = "conversations"


@extend_schema_serializer(component_name="ChatMessage")
class MessageSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    seq = serializers.IntegerField()
    role = serializers.CharField()
    text = serializers.CharField()
    created = serializers.DateTimeField()
    client_id = serializers.CharField(allow_null=True)
    sources = serializers.ListField(child=serializers.DictField())
    choices = serializers.ListField(child=serializers.CharField())
    rating = serializers.CharField(allow_null=True)
    rateable = serializers.BooleanField()


def conversation_from_request(request: Request, conversation_id: Any) -> Conversation:
    """The conversation the request's token grants, which must be the one in the URL."""
    header = request.headers.get("Authorization", "")
    token = header[len("Conversation ") :] if header.startswith("Conversation ") else ""
    token = token or request.headers.get("X-Conversation-Token", "")
    conversation = services.conversation_from_token(token)
    if str(conversation.public_id) != str(conversation_id):
        raise NotFoundError(_("This conversation does not exist."), code="not_found")
    return conversation


class ChatAccess(BasePermission):
    """Anyone may use the conversation API (its token is the access), unless
    CHAT["API_REQUIRES_KEY"] is on; an API key sent along must have the chat scope, and then
    its own rate limit applies instead of the per-client one."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if isinstance(request.auth, ApiKey):
            self.message = _('This API key does not have the "%(scope)s" scope.') % {
                "scope": Scope.CHAT
            }
            return Scope.CHAT in request.auth.scopes
        self.message = _("This API needs an API key with the chat scope.")
        return not settings.CHAT.get("API_REQUIRES_KEY", False)


class _ConversationApi(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [ChatAccess]
    throttle_classes = [ConversationThrottle, ApiKeyThrottle]


class ConversationCreateApi(_ConversationApi):
    @extend_schema_serializer(component_name="ConversationCreateInput")
    class InputSerializer(serializers.Serializer):
        kb = serializers.IntegerField()
        locale = serializers.ChoiceField(choices=["en", "zh-hans"], default="en")
        external_id = serializers.CharField(max_length=128, required=False, default="")

    @extend_schema_serializer(component_name="ConversationCreateOutput")
    class OutputSerializer(serializers.Serializer):
        id = serializers.UUIDField()
        token = serializers.CharField()
        status = serializers.CharField()

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        conversation = services.conversation_start(
            knowledge_base=data.validated_data["kb"],
            channel=Channel.API,
            locale=data.validated_data["locale"],
            external_id=data.validated_data["external_id"],
            api_key=request.auth if isinstance(request.auth, ApiKey) else None,
        )
        return Response(
            {
                "id": str(conversation.public_id),
                "token": services.conversation_token(conversation),
                "status": conversation.status,
            },
            status=status.HTTP_201_CREATED,
        )


class MessageListCreateApi(_ConversationApi):
    @extend_schema_serializer(component_name="MessageCreateInput")
    class InputSerializer(serializers.Serializer):
        # Length and emptiness are the service's rules (message_receive), as on the socket.
        text = serializers.CharField(trim_whitespace=True)
        client_id = serializers.CharField(max_length=64, required=False, default="")

    @extend_schema_serializer(component_name="MessageCreateOutput")
    class OutputSerializer(serializers.Serializer):
        message = MessageSerializer()
        replies = MessageSerializer(many=True)

    @extend_schema_serializer(component_name="MessageListOutput")
    class ListSerializer(serializers.Serializer):
        status = serializers.CharField()
        messages = MessageSerializer(many=True)

    @extend_schema(
        parameters=[OpenApiParameter("after", int, description="Only messages with seq > after")],
        responses={200: ListSerializer},
    )
    def get(self, request: Request, conversation_id: str) -> Response:
        conversation = conversation_from_request(request, conversation_id)
        try:
            after = max(0, int(request.query_params.get("after", 0)))
        except ValueError:
            raise ServiceError(_("`after` must be a whole number."), code="invalid") from None
        messages = Message.objects.filter(conversation=conversation, seq__gt=after).order_by("seq")
        return Response(
            {"status": conversation.status, "messages": [message_frame(m) for m in messages]}
        )

    @extend_schema(
        request=InputSerializer,
        responses={
            201: OutputSerializer,
            400: OpenApiResponse(description="Empty, too long, or the conversation is closed."),
        },
    )
    def post(self, request: Request, conversation_id: str) -> Response:
        conversation = conversation_from_request(request, conversation_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        message, _created = services.message_receive(
            conversation, data.validated_data["text"], client_id=data.validated_data["client_id"]
        )
        replies = services.message_process(message)
        message.refresh_from_db()
        # The model's tokens this request spent, for its audit row.
        request._request.audit_tokens = (  # type: ignore[attr-defined]
            sum(r.input_tokens or 0 for r in replies),
            sum(r.output_tokens or 0 for r in replies),
        )
        return Response(
            {"message": message_frame(message), "replies": [message_frame(r) for r in replies]},
            status=status.HTTP_201_CREATED,
        )


class MessageRateApi(_ConversationApi):
    @extend_schema_serializer(component_name="MessageRateInput")
    class InputSerializer(serializers.Serializer):
        value = serializers.ChoiceField(choices=["up", "down"])

    @extend_schema(request=InputSerializer, responses={200: MessageSerializer})
    def post(self, request: Request, conversation_id: str, message_id: str) -> Response:
        conversation = conversation_from_request(request, conversation_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        message = services.message_rate(conversation, message_id, data.validated_data["value"])
        return Response(message_frame(message))


class ConversationHandOffApi(_ConversationApi):
    @extend_schema_serializer(component_name="ConversationHandOffOutput")
    class OutputSerializer(serializers.Serializer):
        status = serializers.CharField()

    @extend_schema(request=None, responses={200: OutputSerializer})
    def post(self, request: Request, conversation_id: str) -> Response:
        conversation = conversation_from_request(request, conversation_id)
        services.conversation_hand_off(conversation, "customer_button")
        return Response({"status": conversation.status})
