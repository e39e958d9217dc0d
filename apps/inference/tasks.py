from celery import shared_task

from apps.inference import services


@shared_task(acks_late=True, ignore_result=True)
def endpoints_health_check_task() -> dict[str, bool]:
    return services.endpoints_health_check()
