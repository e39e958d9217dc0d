"""The console page: who may open it, and what it hands its script."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def console_config(html: str) -> dict[str, Any]:
    """The settings the page gives console.js (the json_script block)."""
    match = re.search(r'<script id="console-config" type="application/json">(.*?)</script>', html)
    assert match, "the page has no console-config block"
    return json.loads(match.group(1))


def test_anonymous_visitors_are_sent_to_the_login_page_and_back(client: Client) -> None:
    response = client.get("/console/")

    assert response.status_code == 302
    assert response["Location"] == "/console/login/?next=/console/"


def test_a_signed_in_user_who_is_not_an_agent_is_forbidden(
    client: Client, django_user_model: Any
) -> None:
    # Staff who may use the admin are still not agents.
    clerk = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    client.force_login(clerk)

    response = client.get("/console/")

    assert response.status_code == 403
    assert "console.js" not in response.content.decode()


def test_an_agent_gets_the_console_with_its_socket_and_script(
    client: Client, make_agent: Any
) -> None:
    agent = make_agent("ann")
    client.force_login(agent)

    response = client.get("/console/")

    assert response.status_code == 200
    html = response.content.decode()
    assert console_config(html) == {
        "ws_path": "/ws/console/",
        "name": "ann",
        "supervisor": False,
        "language": "en",
    }
    assert '<script src="/static/console.js" defer></script>' in html
    assert '<html lang="en">' in html
    assert 'id="agents-body"' not in html  # the agents' load is for supervisors


def test_a_supervisor_gets_the_agents_table(client: Client, make_agent: Any) -> None:
    client.force_login(make_agent("sue", supervisor=True))

    html = client.get("/console/").content.decode()

    assert console_config(html)["supervisor"] is True
    assert 'id="agents-body"' in html


def test_the_page_follows_the_browser_language(client: Client, make_agent: Any) -> None:
    client.force_login(make_agent("ann"))

    html = client.get("/console/", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9").content.decode()

    assert '<html lang="zh-hans">' in html
    assert console_config(html)["language"] == "zh-hans"


def test_the_agents_name_cannot_inject_markup(
    client: Client, make_agent: Any, django_user_model: Any
) -> None:
    agent = make_agent("ann")
    django_user_model.objects.filter(pk=agent.pk).update(
        first_name="</script><script>alert(1)</script>"
    )
    client.force_login(agent)

    html = client.get("/console/").content.decode()

    assert "<script>alert(1)" not in html
    assert console_config(html)["name"] == "</script><script>alert(1)</script>"


def test_the_page_only_answers_get(client: Client, make_agent: Any) -> None:
    client.force_login(make_agent("ann"))

    assert client.post("/console/").status_code == 405
