from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.utils import timezone

from apps.agents.models import AgentProfile, Presence
from apps.conversations.tests.conftest import (  # noqa: F401 (fixtures)
    _fresh_cache,
    chat_kb,
    conversation,
    live_chat_kb,
)


def _group(name: str) -> Group:
    """The group the migration created (a transactional test's flush removes it: re-create)."""
    group, created = Group.objects.get_or_create(name=name)
    if created:
        codenames = ["use_console", "supervise"] if name == "supervisors" else ["use_console"]
        group.permissions.add(
            *Permission.objects.filter(content_type__app_label="agents", codename__in=codenames)
        )
    return group


@pytest.fixture
def make_agent(django_user_model: Any) -> Callable[..., Any]:
    """An agent (or supervisor) user with a console profile."""

    def make(
        username: str,
        *,
        supervisor: bool = False,
        presence: str = Presence.ONLINE,
        capacity: int = 3,
        languages: list[str] | None = None,
    ) -> Any:
        user = django_user_model.objects.create_user(username, password="pw-" + username)
        user.groups.add(_group("supervisors" if supervisor else "agents"))
        AgentProfile.objects.create(
            user=user,
            presence=presence,
            capacity=capacity,
            languages=languages or [],
            last_seen_at=timezone.now(),  # their console is open
        )
        return django_user_model.objects.get(pk=user.pk)  # fresh permission cache

    return make
