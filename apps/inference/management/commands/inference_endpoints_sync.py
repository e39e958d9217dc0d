"""`manage.py inference_endpoints_sync`: write the pool from INFERENCE_ENDPOINTS (a JSON list
of {name, base_url, model, kind?, weight?, max_concurrency?, timeout?}; the API key comes from
INFERENCE_API_KEY). Deployments run it before the web starts; safe to run again."""

from django.core.management.base import BaseCommand, CommandError

from apps.core.exceptions import ServiceError
from apps.inference import services


class Command(BaseCommand):
    help = "Create or update model endpoints from the INFERENCE_ENDPOINTS setting."

    def handle(self, *args: object, **options: object) -> None:
        try:
            names = services.endpoints_sync_from_env()
        except ServiceError as exc:
            raise CommandError(str(exc)) from None
        if not names:
            self.stdout.write("INFERENCE_ENDPOINTS is empty: nothing to do.")
        for name in names:
            self.stdout.write(f"endpoint {name}: saved")
