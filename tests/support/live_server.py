"""The real ASGI application (HTTP and websockets) served by uvicorn in a thread of the test
process, for browser tests.

Being in-process, the server uses the test database; but it reaches it over its own connections
(its request and consumer threads), which cannot see a test's uncommitted transaction. Tests that
use it therefore need `transactional_db`, and must stop it before the database is flushed: the
`asgi_server` fixture (tests/conftest.py) asks for `transactional_db` first, so it is torn down
before it.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn


class LiveServer:
    def __init__(self, app: Any, host: str = "127.0.0.1") -> None:
        # The socket is bound here and handed to uvicorn, so no other process can take the port
        # between choosing it and listening on it.
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.host = host
        self.port = int(self.sock.getsockname()[1])
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_level="warning",
            # Open sockets (the widget's) are closed on stop instead of being waited for.
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True, name="live-asgi"
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the live server's thread ended during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the live server did not start within {timeout:.0f}s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.sock.close()
        if self.thread.is_alive():
            raise RuntimeError("the live server did not stop within 15s")
        end_other_database_sessions()


def end_other_database_sessions() -> None:
    """End the database sessions the server's threads left open. They are persistent
    (CONN_MAX_AGE) and belong to worker threads that outlive the server, so they cannot be
    closed from here; left open, they stop the test database from being dropped at the end of
    the run. A thread that uses its connection again gets a new one (CONN_HEALTH_CHECKS)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
