"""Start-up checks: a clear message when the database cannot do what the platform needs."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, Tags, register
from django.db import DatabaseError, connections

PGVECTOR_HINT = (
    "Install pgvector on the database server, e.g. `apt-get install postgresql-15-pgvector` "
    "(Debian/Ubuntu, match your PostgreSQL major version) or build it from "
    "the pgvector sources, then run `CREATE EXTENSION vector;` as a superuser in the database. "
    "Or leave DATABASE_URL unset to use the embedded PostgreSQL, which ships pgvector."
)


def pgvector_status(alias: str = "default") -> str | None:
    """None when pgvector is usable, else the reason it is not."""
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return f"the database is {connection.vendor}, but PostgreSQL 15+ with pgvector is required"
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
        if cursor.fetchone() is None:
            return "the PostgreSQL server has no pgvector extension"
    return None


@register(Tags.database)  # type: ignore[type-var]
def check_pgvector(app_configs: Any, databases: list[str] | None = None, **kwargs: Any) -> list:
    errors = []
    for alias in databases or []:
        try:
            problem = pgvector_status(alias)
        except DatabaseError as exc:
            errors.append(Error(f"Cannot reach database '{alias}': {exc}", id="core.E001"))
            continue
        if problem:
            errors.append(
                Error(f"pgvector is missing: {problem}.", hint=PGVECTOR_HINT, id="core.E002")
            )
    return errors
