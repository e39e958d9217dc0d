from apps.conversations.tests.conftest import _fresh_cache, chat_kb  # noqa: F401
