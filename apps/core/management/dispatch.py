"""A management command with one subcommand per registered kind, each kind defined by a module
with `add_arguments(parser)` and `run(options, log) -> dict`. The result is printed as one JSON
object on the last line of stdout (the contract of `evaluate` and `bench`)."""

from __future__ import annotations

import json
from importlib import import_module
from typing import Any, ClassVar

from django.core.management.base import BaseCommand, CommandParser


class KindDispatchCommand(BaseCommand):
    kinds: ClassVar[dict[str, str]] = {}  # kind -> module path
    log_to_stderr = True

    def add_arguments(self, parser: CommandParser) -> None:
        subparsers = parser.add_subparsers(dest="kind", required=True)
        for kind, module_path in self.kinds.items():
            module = import_module(module_path)
            doc = (module.__doc__ or kind).strip().splitlines()[0]
            module.add_arguments(subparsers.add_parser(kind, help=doc))

    def handle(self, *args: Any, **options: Any) -> None:
        module = import_module(self.kinds[options["kind"]])
        stream = self.stderr if self.log_to_stderr else self.stdout
        result = module.run(options, log=lambda message: stream.write(message))
        self.stdout.write(json.dumps(result, ensure_ascii=False))
