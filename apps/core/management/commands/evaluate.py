"""`manage.py evaluate <kind> ...`: quality evaluations on real data sets.

Each kind lives in its app (`apps.<app>.evaluation`); progress goes to stderr and the results
are one JSON object on the last line of stdout. Evaluations delete what they build.
"""

from apps.core.management.dispatch import KindDispatchCommand


class Command(KindDispatchCommand):
    help = "Run a quality evaluation; the last line of output is a JSON object of results."
    kinds = {
        "retrieval": "apps.knowledge.evaluation",
        "sections": "apps.knowledge.section_evaluation",
        "intents": "apps.nlu.evaluation",
        "moderation": "apps.safety.evaluation",
        "conversations": "apps.conversations.evaluation",
    }
