"""`manage.py moderation_train`: train the moderation classifier and write the shipped weights.

    python manage.py moderation_train --cold ../shared/data/cold/train.csv \\
        --cold-dev ../shared/data/cold/dev.csv --davidson ../shared/data/davidson/train.csv

The public data stays where it is (the project's own support messages, `--support`, are in
`apps/safety/data/`); only `apps/safety/artifacts/moderation.npz` (or `--out`) is
written. See `apps.safety.training` for what is trained on what, and docs/benchmarks.md for
the numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.datafiles import DataFileError
from apps.safety import classifier, training


class Command(BaseCommand):
    help = (
        "Train the moderation classifier (COLD for Chinese, Davidson for English, and the "
        "project's support messages for both)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--cold", required=True, help="COLD train.csv (TEXT, label)")
        parser.add_argument(
            "--cold-dev", required=True, help="COLD dev.csv: the Chinese threshold is chosen here"
        )
        parser.add_argument(
            "--davidson", required=True, help="Davidson train.csv (row_index, class, tweet)"
        )
        parser.add_argument(
            "--support",
            default=str(training.SUPPORT_PATH),
            help="the project's support messages (text, label, language), trained on by both "
            "heads (default: apps/safety/data/support_train.csv)",
        )
        parser.add_argument(
            "--no-support",
            action="store_true",
            help="train on the public data alone, without the support messages",
        )
        parser.add_argument(
            "--support-share",
            type=float,
            default=training.SUPPORT_SHARE,
            help="what the safe support messages weigh together, as a share of each "
            f"language's public safe texts (default {training.SUPPORT_SHARE:g})",
        )
        parser.add_argument("--out", default=str(classifier.ARTIFACT_PATH))
        parser.add_argument(
            "--cache",
            default=str(Path(settings.VAR_DIR) / "cache" / "moderation"),
            help="where embeddings are kept between runs ('' for nowhere)",
        )
        parser.add_argument(
            "--embed-limit",
            type=int,
            default=0,
            help="embed only this many training texts per language, a seeded sample (default "
            "0: all); the n-grams still use every text. Faster, a little less accurate",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        def log(message: str) -> None:
            self.stderr.write(message)

        try:
            model = training.train(
                options["cold"],
                options["cold_dev"],
                options["davidson"],
                cache=Path(options["cache"]) if options["cache"] else None,
                embed_limit=options["embed_limit"] or None,
                support=None if options["no_support"] else options["support"],
                support_share=options["support_share"],
                log=log,
            )
        except DataFileError as exc:
            raise CommandError(str(exc)) from exc
        size = model.save(Path(options["out"]))
        log(f"wrote {options['out']} ({size / 1e6:.1f} MB)")
        summary = {
            language: {"threshold": head.threshold, **head.metrics}
            for language, head in model.heads.items()
        }
        self.stdout.write(json.dumps({**model.info, "heads": summary}, ensure_ascii=False))
