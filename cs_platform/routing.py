"""Websocket routes of all apps. Each consumer checks the Origin of its socket itself: the chat
socket serves pages on other sites (the widget), staff sockets only the platform's own hosts."""

from apps.agents.routing import websocket_urlpatterns as console_patterns
from apps.conversations.routing import websocket_urlpatterns as chat_patterns

websocket_urlpatterns: list = [*chat_patterns, *console_patterns]
