"""`manage.py bench <kind> ...`: speed benchmarks. Prints a table, then one JSON line.

Each kind lives in its app (`apps.<app>.benchmark`). Numbers go into docs/benchmarks.md with the
machine they ran on; tests never assert them.
"""

from apps.core.management.dispatch import KindDispatchCommand


class Command(KindDispatchCommand):
    help = "Run a speed benchmark; the last line of output is a JSON object of results."
    kinds = {
        "retrieval": "apps.knowledge.benchmark",
        "chat": "apps.conversations.benchmark",
        "inference": "apps.inference.benchmark",
        "console": "apps.agents.benchmark",
    }
    log_to_stderr = False  # the table is part of the output
