"""Fixtures shared by every test: real PostgreSQL+pgvector (embedded unless DATABASE_URL is
set), real embedding models, Celery eager (tasks run when the transaction commits)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture
def app_key(django_user_model: Any) -> Any:
    """The chat-scope API key an app's backend opens conversations with (its owner: a user of
    its own)."""
    from apps.audit import keys
    from apps.audit.models import Scope

    owner = django_user_model.objects.create_user("shop-app")  # no password: never logs in
    return keys.api_key_create(name="shop app", user=owner, scopes=[Scope.CHAT]).api_key


@pytest.fixture
def run_on_commit(django_capture_on_commit_callbacks: Any) -> Callable:
    """Run `fn` and then the on-commit callbacks it queued (embedding jobs), as a commit would.
    Tests run inside a transaction that never commits, so this stands in for the commit."""

    def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            return fn(*args, **kwargs)

    return run


@pytest.fixture
def fake_openai() -> Iterator[Any]:
    from tests.support.fake_openai import FakeOpenAIServer

    server = FakeOpenAIServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A real Redis: REDIS_URL, or a redis-server started for the module."""
    from tests.support import services

    process, url = services.start_redis()
    yield url
    if process is not None:
        services.stop(process)


@pytest.fixture(autouse=True)
def _fresh_model_pool() -> Iterator[None]:
    """Each test sees the model endpoints of its own database, not a pool another test left."""
    from apps.inference import selectors

    selectors.pool_reset()
    yield
    selectors.pool_reset()


@pytest.fixture(autouse=True)
def _chat_threads_drained(request: pytest.FixtureRequest) -> Iterator[None]:
    """A socket test may end while an answer is still being written on the chat threads (the
    answer goes on after the client leaves). Wait for it before the test database is emptied:
    emptying it under a running insert deadlocks. Set up after the database fixture, so torn
    down before it."""
    if "transactional_db" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("transactional_db")
    yield
    from apps.conversations import consumers

    assert consumers.pools_drain(), "chat threads still busy 60 s after the test"
