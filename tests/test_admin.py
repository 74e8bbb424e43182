"""An operator runs `liveblog blogs|tokens|post|follow` against a service, as real subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import ADMIN_TOKEN, RECV_TIMEOUT, Served, Service, free_port


def cli(
    *args: str, url: str, token: str | None = ADMIN_TOKEN, stdin: str = "", cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LIVEBLOG_URL": url}
    env.pop("LIVEBLOG_TOKEN", None)
    if token is not None:
        env["LIVEBLOG_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "liveblog.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )


async def acli(*args: str, url: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    # In a thread: the service answering it runs on this test's event loop.
    return await asyncio.to_thread(cli, *args, url=url, **kwargs)  # type: ignore[arg-type]


async def test_an_admin_sets_up_a_blog_and_a_reporter_posts_markdown_to_it(service: Service, tmp_path: Path):
    url = service.base_url
    made = await acli("blogs", "create", "ukraine", "--title", "Live: Ukraine", "--language", "uk", url=url)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["language"] == "uk"
    minted = await acli("tokens", "mint", "--name", "Olena", "--role", "reporter", "--blog", "ukraine", url=url)
    token = json.loads(minted.stdout)
    assert token["role"] == "reporter" and token["blogs"] == ["ukraine"]
    listed = await acli("tokens", "list", url=url)
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [token["id"]]
    assert token["token"] not in listed.stdout  # the secret is shown once, at minting

    note = tmp_path / "update.md"
    note.write_text("Sirens across **Kyiv**.\n")
    posted = await acli(
        "post", "ukraine", str(note), "--headline", "Air raid", "--key-event", url=url, token=token["token"]
    )
    assert posted.returncode == 0, posted.stderr
    entry = json.loads(posted.stdout)
    assert entry["body"] == "<p>Sirens across <strong>Kyiv</strong>.</p>"
    assert (entry["headline"], entry["key_event"], entry["pinned"], entry["author"]["name"]) == (
        "Air raid",
        True,
        False,
        "Olena",
    )
    piped = await acli("post", "ukraine", "--pin", url=url, token=token["token"], stdin="From *stdin*.")
    assert json.loads(piped.stdout)["pinned"] is True

    assert (await acli("tokens", "revoke", token["id"], url=url)).returncode == 0
    refused = await acli("post", "ukraine", url=url, token=token["token"], stdin="again")
    assert refused.returncode == 1
    assert (
        refused.stderr.count("\n") == 1
        and refused.stderr.startswith("liveblog: ")
        and "Traceback" not in refused.stderr
    )

    ended = await acli("blogs", "end", "ukraine", url=url)
    assert json.loads(ended.stdout)["status"] == "ended"
    blogs = await acli("blogs", "list", url=url)
    assert [json.loads(line)["id"] for line in blogs.stdout.splitlines()] == ["ukraine"]
    late = await acli("post", "ukraine", url=url, stdin="too late")
    assert late.returncode == 1 and "blog_ended" in late.stderr


@pytest.mark.slow  # every retry's backoff, about 6 s
def test_a_service_that_cannot_be_reached_exits_3_after_its_retries():
    unreachable = cli("blogs", "list", url="http://127.0.0.1:9")
    assert unreachable.returncode == 3, unreachable.stderr
    *retries, error = unreachable.stderr.splitlines()  # each retry is logged, then the error
    assert len(retries) == 5 and all(line.startswith("liveblog: GET /api/v1/blogs: ") for line in retries)
    assert error.startswith("liveblog: cannot reach http://127.0.0.1:9") and "Traceback" not in unreachable.stderr


async def test_without_a_token_the_local_services_admin_token_is_used(service: Service, tmp_path: Path):
    anonymous = await acli(
        "blogs", "create", "ukraine", "--title", "Live", url=service.base_url, token=None, cwd=tmp_path
    )
    assert anonymous.returncode == 1 and not anonymous.stdout and anonymous.stderr.startswith("liveblog: ")
    (tmp_path / "liveblog-data").mkdir()
    (tmp_path / "liveblog-data" / "admin-token").write_text(ADMIN_TOKEN + "\n")
    made = await acli("blogs", "create", "ukraine", "--title", "Live", url=service.base_url, token=None, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["id"] == "ukraine"


def test_usage_errors_exit_2_and_every_command_has_help():
    usage = cli("tokens", "mint", "--name", "x", url="http://127.0.0.1:9")
    assert usage.returncode == 2 and "--role" in usage.stderr
    for command in (["blogs", "create"], ["tokens", "mint"], ["post"], ["follow"]):
        shown = cli(*command, "--help", url="http://127.0.0.1:9")
        assert shown.returncode == 0 and "--url" in shown.stdout and "--token" in shown.stdout


class Follow:
    """`liveblog follow` in a child process; a thread reads its lines as they come."""

    def __init__(self, url: str, cursor_file: Path):
        command = [sys.executable, "-m", "liveblog.cli", "follow", "ukraine", "--url", url]
        self.process = subprocess.Popen(
            [*command, "--cursor-file", str(cursor_file)], stdout=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def next(self) -> dict:
        """The next line, decoded; fails the test if none comes within RECV_TIMEOUT."""
        try:
            return json.loads(self.lines.get(timeout=RECV_TIMEOUT))
        except queue.Empty:
            raise AssertionError(f"follow printed nothing more (exit code {self.process.poll()})") from None

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(20)


@pytest.mark.slow
def test_follow_prints_each_event_once_across_a_service_restart_and_its_own(data_dir: Path, redis_server, tmp_path):
    port = str(free_port())
    env = {"LIVEBLOG_ADMIN_TOKEN": ADMIN_TOKEN, "LIVEBLOG_REDIS_URL": redis_server.url}
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    served = Served(data_dir, env=env, args=("--port", port))
    served.http.post("/api/v1/blogs", json={"id": "ukraine", "title": "Live"}, headers=admin).raise_for_status()
    cursor_file = tmp_path / "cursor"
    follow = Follow(served.url, cursor_file)
    posted: list[str] = []
    seen: list[str] = []

    def post(server: Served) -> None:
        response = server.http.post("/api/v1/blogs/ukraine/entries", json={"body": "<p>x</p>"}, headers=admin)
        posted.append(response.json()["id"])

    try:
        assert follow.next()["type"] == "snapshot"
        post(served)
        seen.append(follow.next()["entry"]["id"])
        assert served.stop() == 0  # readers get 1012 and reconnect with their cursor
        served = Served(data_dir, env=env, args=("--port", port))
        post(served)
        post(served)
        seen += [follow.next()["entry"]["id"] for _ in range(2)]
        assert follow.stop() == 0
        post(served)  # while nobody follows
        follow = Follow(served.url, cursor_file)
        post(served)
        resumed = [follow.next() for _ in range(2)]
        assert [message["type"] for message in resumed] == ["event", "event"]  # no snapshot: it had a cursor
        seen += [message["entry"]["id"] for message in resumed]
        assert follow.stop() == 0
        assert cursor_file.read_text().strip() == resumed[-1]["cursor"]
    finally:
        follow.stop()
        served.stop()
    assert seen == posted
