"""`manage.py evaluate <kind> ...`: quality evaluations on real data sets.

Each kind lives in its app (`apps.<app>.evaluation`) and returns a dict, printed as one JSON
object on the last line of stdout. Evaluations build what they need and delete it afterwards.
"""

from __future__ import annotations

import json
from importlib import import_module
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

# kind -> module that defines add_arguments(parser) and run(options, log) -> dict
EVALUATIONS = {
    "retrieval": "apps.knowledge.evaluation",
}


class Command(BaseCommand):
    help = "Run a quality evaluation; the last line of output is a JSON object of results."

    def add_arguments(self, parser: CommandParser) -> None:
        kinds = parser.add_subparsers(dest="kind", required=True)
        for kind, module in EVALUATIONS.items():
            doc = (import_module(module).__doc__ or kind).strip().splitlines()[0]
            import_module(module).add_arguments(kinds.add_parser(kind, help=doc))

    def handle(self, *args: Any, **options: Any) -> None:
        module = import_module(EVALUATIONS[options["kind"]])
        result = module.run(options, log=lambda msg: self.stderr.write(msg))
        self.stdout.write(json.dumps(result, ensure_ascii=False))
