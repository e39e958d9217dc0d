import ipaddress
from functools import lru_cache

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, JsonResponse
from django_prometheus.exports import ExportToDjangoView


def health(request: HttpRequest) -> JsonResponse:
    """Liveness and database reachability, for load balancers and the smoke test."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics (django-prometheus plus the model pool's), for scrapers on the
    networks in METRICS_ALLOWED_NETWORKS only: the numbers describe the deployment."""
    address = request.META.get("REMOTE_ADDR", "")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return HttpResponseForbidden("metrics: unknown client address")
    if not any(ip in network for network in _allowed_networks()):
        return HttpResponseForbidden("metrics: this address may not read the metrics")
    return ExportToDjangoView(request)


@lru_cache(maxsize=1)
def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(n, strict=False) for n in settings.METRICS_ALLOWED_NETWORKS]
