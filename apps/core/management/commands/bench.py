"""`manage.py bench <kind> ...`: speed benchmarks. Prints a table, then one JSON line.

Each kind lives in its app (`apps.<app>.benchmark`). Numbers go into docs/benchmarks.md with the
machine they ran on; they are never asserted by tests.
"""

from __future__ import annotations

import json
from importlib import import_module
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

BENCHMARKS = {
    "retrieval": "apps.knowledge.benchmark",
}


class Command(BaseCommand):
    help = "Run a speed benchmark; the last line of output is a JSON object of results."

    def add_arguments(self, parser: CommandParser) -> None:
        kinds = parser.add_subparsers(dest="kind", required=True)
        for kind, module in BENCHMARKS.items():
            doc = (import_module(module).__doc__ or kind).strip().splitlines()[0]
            import_module(module).add_arguments(kinds.add_parser(kind, help=doc))

    def handle(self, *args: Any, **options: Any) -> None:
        module = import_module(BENCHMARKS[options["kind"]])
        result = module.run(options, log=lambda msg: self.stdout.write(msg))
        self.stdout.write(json.dumps(result, ensure_ascii=False))
