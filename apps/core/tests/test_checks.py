"""The start-up check for pgvector: silent on a good database, a clear error with the way to fix
it on one without pgvector or one that cannot be reached."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core import checks
from django.db import connection

from apps.core.checks import pgvector_status
from tests.support.services import free_port

REPO = Path(__file__).resolve().parents[3]
SYSTEM_POSTGRES = ("127.0.0.1", 5432)
SYSTEM_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.mark.django_db
def test_check_passes_on_the_real_database_with_pgvector():
    assert pgvector_status("default") is None
    errors = checks.run_checks(tags=[checks.Tags.database], databases=["default"])
    assert [e for e in errors if e.id.startswith("core.")] == []
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        assert cursor.fetchone() is not None  # and the check was right: pgvector is there


def manage(database_url: str, var_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """`manage.py ARGS` as a user runs it, with the default settings."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(DATABASE_URL=database_url, CS_VAR_DIR=str(var_dir))
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def system_postgres_without_pgvector() -> str | None:
    """None when the system PostgreSQL fits this test, else why it does not."""
    try:
        socket.create_connection(SYSTEM_POSTGRES, timeout=1).close()
    except OSError:
        return "nothing listens on 127.0.0.1:5432 (no system PostgreSQL here)"
    import psycopg

    try:
        with psycopg.connect(SYSTEM_DATABASE_URL, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
            ).fetchone()
    except psycopg.Error as exc:
        return f"cannot use {SYSTEM_DATABASE_URL}: {exc}"
    return "the PostgreSQL on 127.0.0.1:5432 has pgvector" if row else None


def test_check_fails_with_a_hint_on_postgresql_without_pgvector(tmp_path):
    reason = system_postgres_without_pgvector()
    if reason:
        pytest.skip(reason)
    result = manage(SYSTEM_DATABASE_URL, tmp_path, "check", "--database", "default")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "(core.E002) pgvector is missing" in output
    assert "HINT: Install pgvector on the database server" in output
    assert "postgresql-15-pgvector" in output and "CREATE EXTENSION vector;" in output


def test_serve_says_when_the_database_cannot_be_reached(tmp_path: Any):
    # Django's own checks connect first (constraint features depend on the server version), so
    # `serve` (what `make run` runs) tries the connection itself and says what is wrong.
    port = free_port()
    result = manage(
        f"postgresql://postgres@127.0.0.1:{port}/test", tmp_path, "serve", "--port", str(port)
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Cannot reach the database" in output and f"port {port} failed" in output
    assert "Check DATABASE_URL" in output
    assert "Traceback" not in output and "Serving on" not in output
