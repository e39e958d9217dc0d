"""`manage.py load_demo`: the demo knowledge base and demo staff accounts. Safe to run twice.

Accounts get random passwords on creation; they are printed once and kept in
var/demo_accounts.txt (readable by its owner only).
"""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand

from apps.knowledge import services as knowledge_services
from apps.nlu import services as nlu_services
from apps.orders import services as orders_services
from cs_platform.settings.env import VAR_DIR

# username -> (group, is_superuser, is_staff). Agents use /console/ (no admin); the agents and
# supervisors groups come from the agents app's migration.
DEMO_ACCOUNTS = {
    "admin": ("", True, True),
    "support": ("Support staff", False, True),
    "agent": ("agents", False, False),
    "supervisor": ("supervisors", False, False),
    # Two compliance officers, so that one can approve the other's erasure (four eyes).
    "compliance": ("compliance", False, True),
    "compliance2": ("compliance", False, True),
}
GROUP_PERMISSIONS = {
    "Support staff": {
        "knowledge": ["article", "category", "synonymgroup", "knowledgebase", "historicalarticle"],
        "nlu": ["intent", "intentexample", "classifierversion"],
        "conversations": ["conversation", "message", "customer"],
        "orders": ["order", "returnrequest", "contactcheckfailure"],
    },
}


class Command(BaseCommand):
    help = "Load the demo knowledge base and create the demo staff accounts."

    def handle(self, *args: Any, **options: Any) -> None:
        self._groups()
        self._accounts()
        kb, report = knowledge_services.demo_knowledge_base_load()
        self.stdout.write(
            f"Demo knowledge base '{kb.name}' (id {kb.pk}): {report.created} created, "
            f"{report.updated} updated, {report.unchanged} unchanged."
        )
        intents = nlu_services.demo_intents_load()
        self.stdout.write(
            f"Demo intents: {intents.created} created, {intents.updated} updated, "
            f"{intents.unchanged} unchanged; classifier "
            + (f"v{intents.version.number} trained." if intents.version else "unchanged.")
        )
        orders = orders_services.demo_orders_load()
        self.stdout.write(f"Demo store orders: {orders} created.")

    def _groups(self) -> None:
        for name, apps in GROUP_PERMISSIONS.items():
            group, _ = Group.objects.get_or_create(name=name)
            perms = Permission.objects.filter(
                content_type__app_label__in=list(apps),
                content_type__model__in=[m for models in apps.values() for m in models],
            )
            group.permissions.set(perms)

    def _accounts(self) -> None:
        user_model = get_user_model()
        created = []
        for username, (group_name, superuser, staff) in DEMO_ACCOUNTS.items():
            if user_model.objects.filter(username=username).exists():
                continue
            password = secrets.token_urlsafe(12)
            if superuser:
                user = user_model.objects.create_superuser(username, "", password)
            else:
                user = user_model.objects.create_user(username, "", password, is_staff=staff)
            if group_name:
                user.groups.add(Group.objects.get_or_create(name=group_name)[0])
            created.append(f"{username}: {password}")
        path = VAR_DIR / "demo_accounts.txt"
        if created:
            with path.open("a") as handle:
                handle.write("\n".join(created) + "\n")
            path.chmod(0o600)
            self.stdout.write(f"Demo staff accounts (shown once; also in {path}):")
            for line in created:
                self.stdout.write(f"  {line}")
        else:
            self.stdout.write(f"Demo staff accounts exist (passwords in {path}).")
