# The chat fixtures (a small bilingual help centre, a conversation) are shared with the
# conversations app's tests.
from apps.conversations.tests.conftest import (  # noqa: F401
    _fresh_cache,
    chat_kb,
    conversation,
    live_chat_kb,
)
