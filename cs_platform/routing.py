"""Websocket routes of all apps (the chat and console sockets join here in later issues)."""

websocket_urlpatterns: list = []
