"""The README's first command, `make run`, end to end: a fresh embedded PostgreSQL, migrations,
the demo knowledge base with real embeddings, a served admin; Ctrl-C stops the server and the
database; a second run reuses the data.

Each run gets its own CS_VAR_DIR, so it has its own embedded PostgreSQL and never touches the
one the test session uses.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cs_platform import embedded_db
from tests.support.services import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
FIRST_START_TIMEOUT = 240  # initdb, migrations and embedding the demo articles on 2 shared cores


class MakeRun:
    """`make run` in its own process group (as in a terminal, where Ctrl-C reaches all of it)."""

    def __init__(self, var_dir: Path) -> None:
        self.var_dir = var_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            k: v
            for k, v in os.environ.items()
            # The test session's settings, database and runtime folder are not the user's.
            if k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "XDG_RUNTIME_DIR")
        }
        env.update(CS_VAR_DIR=str(var_dir), PORT=str(self.port), PYTHONUNBUFFERED="1")
        # `-o` keeps make from reinstalling the virtual environment: a test never installs
        # packages. Everything else is exactly the README's `make run`.
        self.process = subprocess.Popen(
            ["make", "--no-print-directory", "-o", ".venv/.installed", "run"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def get(self, path: str, opener: Any = None, **kwargs: Any) -> tuple[int, str]:
        request = urllib.request.Request(self.base + path, **kwargs)
        try:
            with (opener or urllib.request.build_opener()).open(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def wait_until_served(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"make run exited with {self.process.returncode}:\n{self.output}")
            try:
                if self.get("/admin/login/")[0] == 200:
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(1)
        pytest.fail(f"no admin login page within {timeout} s:\n{self.output[-5000:]}")

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to the whole process group; the exit status once it is gone."""
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            code = self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            pytest.fail(f"make run did not stop on Ctrl-C:\n{self.output[-3000:]}")
        self._reader.join(timeout=10)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


@pytest.fixture
def var_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "var"
    yield path
    embedded_db.stop(path)  # in case a failed assertion left it running


@pytest.fixture
def make_run(var_dir: Path) -> Iterator[Any]:
    runs: list[MakeRun] = []

    def start() -> MakeRun:
        run = MakeRun(var_dir)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.kill()


def log_in(run: MakeRun, username: str, password: str) -> Any:
    """Log in through the served login form, as a browser would; the opener keeps the cookies."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    status, html = run.get("/admin/login/", opener)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert status == 200 and token
    fields = {"username": username, "password": password, "csrfmiddlewaretoken": token[1]}
    form = urllib.parse.urlencode(fields).encode()
    status, html = run.get("/admin/login/?next=/admin/", opener, data=form, method="POST")
    assert status == 200 and "Site administration" in html, html[:2000]
    return opener, {cookie.name: cookie.value for cookie in jar}


def test_make_run_serves_the_admin_and_ctrl_c_stops_it_all(make_run, var_dir):
    run = make_run()
    run.wait_until_served(FIRST_START_TIMEOUT)

    status, html = run.get("/admin/login/")
    assert status == 200
    assert 'name="username"' in html and 'name="password"' in html
    assert "Log in" in html
    stylesheet = re.search(r'href="(/static/admin/css/[^"]+\.css)"', html)
    assert stylesheet and run.get(stylesheet[1])[0] == 200  # static files are served too
    status, body = run.get("/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}

    # The demo accounts were printed once, with passwords that work, and kept under var/.
    output = run.output
    accounts = dict(re.findall(r"^  (admin|support): (\S+)$", output, re.MULTILINE))
    assert accounts.keys() == {"admin", "support"}, output
    assert str(var_dir / "demo_accounts.txt") in output
    saved = (var_dir / "demo_accounts.txt").read_text()
    assert all(f"{user}: {password}" in saved for user, password in accounts.items())
    assert (var_dir / "demo_accounts.txt").stat().st_mode & 0o077 == 0

    # Support staff can search the demo knowledge base, which was embedded on the first run.
    loaded = re.search(r"Demo knowledge base '.+' \(id (\d+)\): (\d+) created", output)
    assert loaded and int(loaded[2]) > 0, output
    kb_id, articles = loaded[1], loaded[2]
    opener, cookies = log_in(run, "support", accounts["support"])
    status, body = run.get(
        f"/api/v1/knowledge-bases/{kb_id}/search",
        opener,
        data=json.dumps({"query": "why did my order arrive in several packages"}).encode(),
        headers={"Content-Type": "application/json", "X-CSRFToken": cookies["csrftoken"]},
        method="POST",
    )
    assert status == 200, body
    answer = json.loads(body)
    assert answer["sources"][0]["title"] == "Why did my order arrive in several packages?"

    assert embedded_db.is_running(var_dir)
    run.interrupt()
    assert "Embedded PostgreSQL stopped." in run.output
    assert not embedded_db.is_running(var_dir)
    assert not (var_dir / "pgdata" / "postmaster.pid").exists()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(run.base + "/healthz", timeout=5)

    # A second run finds the database, the accounts and the demo articles already there.
    second = make_run()
    second.wait_until_served(120)
    assert second.get("/admin/login/")[0] == 200
    output = second.output
    assert "Demo staff accounts exist" in output
    assert f"(id {kb_id}): 0 created, 0 updated, {articles} unchanged." in output, output
    assert "No migrations to apply." in output
    assert not re.search(r"^  (admin|support): ", output, re.MULTILINE)  # no new passwords
    log_in(second, "support", accounts["support"])  # the first run's password still works
    second.interrupt()
    assert not embedded_db.is_running(var_dir)
