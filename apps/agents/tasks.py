from celery import shared_task

from apps.agents import services


@shared_task(acks_late=True, ignore_result=True)
def conversations_assign_task() -> int:
    return services.conversations_assign()


@shared_task(acks_late=True, ignore_result=True)
def agents_gone_release_task() -> int:
    return services.agents_gone_release()
