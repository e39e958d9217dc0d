from collections.abc import Iterator

import pytest

# The chat fixtures (a small bilingual help centre, a conversation) are shared with the
# conversations app's tests.
from apps.conversations.tests.conftest import (  # noqa: F401
    _fresh_cache,
    chat_kb,
    conversation,
    live_chat_kb,
)
from apps.inference.fake_server import FakeLLMServer


@pytest.fixture
def llm() -> Iterator[FakeLLMServer]:
    """A fake OpenAI-compatible model server on a real socket."""
    server = FakeLLMServer().start()
    yield server
    server.stop()
