"""Originals whose key was retired: counted once each, the subject's own apart from the ones
the search for an e-mail address could not read."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet

from apps.compliance import selectors
from apps.compliance.stores import OriginalsStore
from apps.compliance.tests.conftest import start
from apps.conversations.models import Message, Role
from apps.conversations.tests.conftest import say

pytestmark = pytest.mark.django_db

EMAIL = "li.lei@example.com"


def retired(text: str) -> str:
    """An original encrypted with a key no longer in DATA_ENCRYPTION_KEY."""
    return Fernet(Fernet.generate_key()).encrypt(text.encode()).decode()


def test_unreadable_originals_are_counted_once_and_apart(chat_kb: Any) -> None:
    theirs = start(chat_kb)
    say(theirs, f"我的邮箱是 {EMAIL}")  # readable: this is how the subject is found
    say(theirs, "我的电话是 13900139000")
    someone_else = start(chat_kb)
    say(someone_else, "我的电话是 13700137000")
    customer = Message.objects.filter(role=Role.CUSTOMER)
    lost = customer.filter(conversation=theirs, text__contains="[PHONE]")
    assert lost.exclude(original_encrypted="").count() == 1
    lost.update(original_encrypted=retired("我的电话是 13900139000"))
    customer.filter(conversation=someone_else).update(
        original_encrypted=retired("我的电话是 13700137000")
    )

    subject = selectors.subject_resolve("email", EMAIL)
    assert theirs.pk in subject.conversation_pks
    store = OriginalsStore()
    store.find(subject)  # read again, as verification does: nothing is counted twice
    found = store.find(subject)
    assert found.count == 2  # both of the subject's originals, the unreadable one too
    # One of theirs is unreadable; the e-mail search could not read two originals in all.
    assert found.details == {"unreadable": 1, "not_searched": 2}
    note = store.note(found.details)
    assert "1 of the subject's originals" in note and "2 encrypted originals" in note

    by_pseudonym = selectors.subject_resolve("pseudonym", str(theirs.customer.public_id))
    # Not an e-mail address or phone number: no text search, so nothing went unsearched.
    assert store.find(by_pseudonym).details == {"unreadable": 1}
