"""`manage.py serve`: what `make run` does after installing.

Migrates, loads the demo knowledge base and demo staff accounts (both safe to repeat), serves the
ASGI app with uvicorn, and on exit (Ctrl-C) stops the embedded PostgreSQL it runs on.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import OperationalError, connection


class Command(BaseCommand):
    help = "Set up the database and demo data, then serve the platform (uvicorn, ASGI)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--no-demo", action="store_true", help="skip the demo data")

    def handle(self, *args: Any, **options: Any) -> None:
        import uvicorn

        from cs_platform import embedded_db
        from cs_platform.settings.env import VAR_DIR, env

        embedded = not env.str("DATABASE_URL", default="")
        try:
            try:
                # Django's own start-up checks would meet a bad DATABASE_URL with a traceback.
                connection.ensure_connection()
            except OperationalError as exc:
                hint = (
                    "" if embedded else "\nCheck DATABASE_URL, or unset it to use the embedded one."
                )
                raise CommandError(f"Cannot reach the database: {str(exc).strip()}{hint}") from exc
            call_command("migrate", interactive=False, verbosity=1)
            if not options["no_demo"]:
                call_command("load_demo")
            # Messages stored while a previous server died before answering: answer them now
            # (with workers, Celery beat does this every minute).
            from apps.conversations.services import messages_unprocessed_process

            answered = messages_unprocessed_process(older_than_seconds=0)
            if answered:
                self.stdout.write(f"Answered {answered} messages left unanswered.")
            url = f"http://{options['host']}:{options['port']}"
            self.stdout.write(
                f"Serving on {url}/  (admin: {url}/admin/, API docs: "
                f"{url}/api/docs/). Ctrl-C stops it."
            )
            uvicorn.run(
                settings.ASGI_APPLICATION.replace(".application", ":application"),
                host=options["host"],
                port=options["port"],
                log_level="info",
                lifespan="off",
            )
        finally:
            if embedded and embedded_db.stop(VAR_DIR):
                self.stdout.write("Embedded PostgreSQL stopped.")
