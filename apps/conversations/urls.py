from django.urls import path

from apps.conversations import apis

urlpatterns = [
    path("conversations", apis.ConversationCreateApi.as_view(), name="conversation-create"),
    path(
        "conversations/<uuid:conversation_id>/messages",
        apis.MessageListCreateApi.as_view(),
        name="conversation-messages",
    ),
    path(
        "conversations/<uuid:conversation_id>/messages/<uuid:message_id>/rating",
        apis.MessageRateApi.as_view(),
        name="conversation-message-rating",
    ),
    path(
        "conversations/<uuid:conversation_id>/handoff",
        apis.ConversationHandOffApi.as_view(),
        name="conversation-handoff",
    ),
]
