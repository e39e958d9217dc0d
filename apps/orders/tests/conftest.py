"""The knowledge admin tests' logged-in "Support staff" client, for the orders admin's tests."""

from apps.knowledge.tests.test_admin import staff, support_user  # noqa: F401 (fixtures)
