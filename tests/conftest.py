"""Fixtures: a real redis-server per test session, and the real service on port 0 per test.

Nothing is faked: the store talks to an actual ``redis-server`` (the embedded one liveblog ships
with) over a unix socket, HTTP goes through uvicorn on a real port, and live readers are real
WebSocket clients.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import redis as sync_redis
import redis.asyncio as aioredis
import uvloop
import websockets
from websockets.frames import Close, Frame, Opcode
from websockets.streams import StreamReader

from liveblog.config import Settings
from liveblog.embedded import EmbeddedRedis
from liveblog.server import Server, bind, build
from liveblog.services import Services

ADMIN_TOKEN = "test-admin-token"
RECV_TIMEOUT = 5.0

# The suite runs on uvloop, the loop `liveblog serve` runs on. LIVEBLOG_TEST_LOOP=asyncio runs it
# on the standard library's loop instead (CI does, for the fast subset).
STDLIB_LOOP = os.environ.get("LIVEBLOG_TEST_LOOP") == "asyncio"
_PYTEST_ASYNCIO = tuple(int(part) for part in pytest_asyncio.__version__.split(".")[:2])


@pytest.hookimpl(optionalhook=True)  # pytest-asyncio >= 1.4 calls it; older ones do not know it
def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, object]:
    return {"asyncio": asyncio.new_event_loop} if STDLIB_LOOP else {"uvloop": uvloop.new_event_loop}


if _PYTEST_ASYNCIO < (1, 4):  # 1.4 deprecates overriding event_loop_policy, for the hook above

    @pytest.fixture(scope="session")
    def event_loop_policy() -> asyncio.AbstractEventLoopPolicy:
        return asyncio.DefaultEventLoopPolicy() if STDLIB_LOOP else uvloop.EventLoopPolicy()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean_redis(request: pytest.FixtureRequest) -> None:
    if "redis_server" in request.fixturenames:
        server = request.getfixturevalue("redis_server")
        with sync_redis.Redis.from_url(server.url) as client:
            client.flushall()


#: Settings for stories that are not about limits: no rate limit gets in their way.
UNLIMITED = Settings(
    port=0,
    admin_token=ADMIN_TOKEN,
    ws_ping_interval=5.0,
    connects_per_ip_per_second=10_000,
    writes_per_token_per_second=10_000,
    viewers_interval=3600,  # stories count their messages; viewer counts have their own test
)


@pytest.fixture
def settings() -> Settings:
    return UNLIMITED


class Service:
    """A running liveblog, and what a reporter or reader would do with it."""

    def __init__(self, base_url: str, server: Server | None = None):
        self.base_url = base_url
        self.ws_url = base_url.replace("http://", "ws://")
        self.server = server
        self.http = httpx.AsyncClient(base_url=base_url, timeout=10)

    @property
    def services(self) -> Services:
        """The running app's services (only for a service in this process)."""
        assert self.server is not None
        return self.server.services

    @staticmethod
    def auth(token: str = ADMIN_TOKEN) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def create_blog(self, blog_id: str = "ukraine", **fields: object) -> dict:
        response = await self.http.post(
            "/api/v1/blogs", json={"id": blog_id, "title": f"Live: {blog_id}", **fields}, headers=self.auth()
        )
        assert response.status_code == 201, response.text
        return response.json()

    async def mint(self, role: str = "reporter", blogs: tuple[str, ...] = ("ukraine",), name: str = "Olena") -> dict:
        response = await self.http.post(
            "/api/v1/tokens", json={"name": name, "role": role, "blogs": list(blogs)}, headers=self.auth()
        )
        assert response.status_code == 201, response.text
        return response.json()

    async def post(self, blog_id: str = "ukraine", token: str = ADMIN_TOKEN, **body: object) -> dict:
        body.setdefault("body", "<p>update</p>")
        response = await self.http.post(f"/api/v1/blogs/{blog_id}/entries", json=body, headers=self.auth(token))
        assert response.status_code == 201, response.text
        return response.json()

    async def stream(self, blog_id: str = "ukraine") -> list[dict]:
        """Every event in the blog's log, in order (the truth readers are compared against)."""
        blog = await self.http.get(f"/api/v1/blogs/{blog_id}/entries", params={"limit": 1})
        epoch = blog.json()["cursor"].split(".")[0]
        cursor, events = f"{epoch}.0-0", []
        while True:
            page = (await self.http.get(f"/api/v1/blogs/{blog_id}/entries", params={"since": cursor})).json()
            if not page["events"]:
                return events
            events += page["events"]
            cursor = page["cursor"]

    def live(self, blog_id: str = "ukraine", cursor: str | None = None, query: str = "", **kwargs: object):
        query = "&".join(part for part in (f"cursor={cursor}" if cursor else "", query) if part)
        url = f"{self.ws_url}/api/v1/blogs/{blog_id}/live" + (f"?{query}" if query else "")
        return websockets.connect(url, open_timeout=RECV_TIMEOUT, **kwargs)


async def receive(ws: websockets.ClientConnection, timeout: float = RECV_TIMEOUT) -> dict:
    """The next live message, decoded; fails the test if none comes within ``timeout``."""
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


@pytest.fixture
async def service(redis_server: EmbeddedRedis, settings: Settings) -> AsyncIterator[Service]:
    async with running_service(redis_server.url, settings) as svc:
        yield svc


class running_service:
    """Start the service in this event loop on a free port; stop it gracefully on exit."""

    def __init__(self, redis_url: str, settings: Settings):
        self.redis_url = redis_url
        self.settings = settings

    async def __aenter__(self) -> Service:
        fatal: list[str] = []
        settings = replace(self.settings, port=0)
        self.server = build(settings, self.redis_url, on_fatal=lambda: fatal.append("tailer died"), log_level="warning")
        sock = bind(settings.host, 0, settings.backlog)
        self.task = asyncio.create_task(self.server.serve(sockets=[sock]))
        while not self.server.started:
            if self.task.done():
                self.task.result()
                raise RuntimeError("server exited during startup")
            await asyncio.sleep(0.01)
        self.fatal = fatal
        self.svc = Service(f"http://127.0.0.1:{sock.getsockname()[1]}", self.server)
        return self.svc

    async def __aexit__(self, *exc: object) -> None:
        await self.svc.http.aclose()
        self.server.should_exit = True
        await asyncio.wait_for(self.task, 15)
        assert not self.fatal, self.fatal


def free_port() -> int:
    """A TCP port nobody listens on now (for servers that cannot bind port 0 themselves: Redis)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


STARTUP_TIMEOUT = 20


class Served:
    """`liveblog serve --port 0` in a child process, as an operator would start it.

    Its output is read all along by a thread (a child blocked on a full pipe would look hung).
    """

    def __init__(
        self, data_dir: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = (), nofile: int | None = None
    ):
        """``nofile``: the process's file-descriptor limit, lowered as an operator's ulimit would."""

        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.process = subprocess.Popen(
            [sys.executable, "-m", "liveblog.cli", "serve", "--port", "0", "--data-dir", str(data_dir), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
            preexec_fn=limit if nofile is not None else None,
        )
        self.output: list[str] = []
        self._more = threading.Condition()
        started = threading.Event()
        self._reader = threading.Thread(target=self._read_output, args=(started,), daemon=True)
        self._reader.start()
        if not started.wait(STARTUP_TIMEOUT):
            self.process.kill()
            raise AssertionError("liveblog serve did not start:\n" + self.text)
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def _read_output(self, started: threading.Event) -> None:
        for line in self.process.stdout:
            with self._more:
                self.output.append(line)
                self._more.notify_all()
            if not started.is_set() and (match := re.search(r"serving on (http://\S+)", line)):
                self.url = match.group(1)
                started.set()

    def wait_for_line(self, predicate: Callable[[str], bool], timeout: float = 20) -> str:
        """The first line of output for which ``predicate`` holds, waiting for it to be printed."""
        found: list[str] = []

        def seen() -> bool:
            found[:] = [line for line in self.output if predicate(line)][:1]
            return bool(found)

        with self._more:
            if not self._more.wait_for(seen, timeout):
                raise AssertionError("no such line in the output:\n" + "".join(self.output))
        return found[0]

    def stop(self) -> int:
        """SIGTERM, as a supervisor would; returns the exit code."""
        self.http.close()
        self.process.send_signal(signal.SIGTERM)
        return self.wait()

    def kill(self) -> None:
        """SIGKILL: no graceful anything, as when the machine's OOM killer picks it."""
        self.http.close()
        self.process.kill()
        self.wait()

    def wait(self, timeout: float = 20) -> int:
        code = self.process.wait(timeout)
        self._reader.join(timeout)
        return code

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://")

    @property
    def text(self) -> str:
        return "".join(self.output)


def assert_error_shape(status: int, content: bytes, content_type: str, expected: int, field: str | None = None) -> dict:
    """The contract's error shape, ``{"error": {"code", "message", "field"?}}``, with the ``expected``
    status (and never a 5xx); returns the error object."""
    assert status < 500, (status, content[:500])
    assert status == expected, (status, content[:500])
    assert content_type.startswith("application/json"), content_type
    body = json.loads(content)
    assert list(body) == ["error"], body
    error = body["error"]
    assert set(error) <= {"code", "message", "field"}, error
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    if field is not None:
        assert error.get("field") == field, error
    return error


def assert_error(response: httpx.Response, expected: int, field: str | None = None) -> dict:
    return assert_error_shape(
        response.status_code, response.content, response.headers.get("content-type", ""), expected, field
    )


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser and cluster tests are slow tests too: the fast subset leaves them out."""
    for item in items:
        if item.get_closest_marker("browser") or item.get_closest_marker("cluster"):
            item.add_marker(pytest.mark.slow)


# -- what a WebSocket client reads, by websockets' own parser (the oracle for liveblog's frames)


def run(step: Generator[None, None, object]) -> object:
    """Run one of websockets' generator-based parsers over a stream that has all its data."""
    try:
        next(step)
    except StopIteration as done:
        return done.value
    raise AssertionError("an incomplete frame")  # pragma: no cover (the stream has ended)


def received(data: bytes, check_close: bool = True) -> list[Frame]:
    """The frames a client reads from bytes the server wrote, parsed by websockets' client side
    (which refuses masked server frames, reserved bits, oversized or fragmented control frames,
    and, with ``check_close``, invalid close codes or reasons)."""
    stream = StreamReader()
    stream.feed_data(data)
    stream.feed_eof()
    frames = []
    while not run(stream.at_eof()):
        parsed = run(Frame.parse(stream.read_exact, mask=False))
        assert isinstance(parsed, Frame)
        if check_close and parsed.opcode is Opcode.CLOSE:
            Close.parse(bytes(parsed.data))  # raises on an invalid code or reason
        frames.append(parsed)
    return frames


async def redis_state(url: str) -> dict[bytes, bytes]:
    """Every key in Redis with its serialized value: equal before and after means nothing was written.

    Leaves out when each token was last used: an authenticated request that is refused still
    used its token, and that bookkeeping is not the newsroom's content.
    """
    async with aioredis.Redis.from_url(url) as client:
        found = sorted(await client.keys("*"))
        return {key: await client.dump(key) for key in found if key != b"liveblog:tokens-used"}


class Prober:
    """Connects to the port again and again, on a thread of its own, counting the connections
    the kernel refused (nobody listening) among those it tried, until stopped."""

    def __init__(self, port: int):
        self.port = port
        self.tried = self.refused = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._probe, daemon=True)
        self.thread.start()

    def _probe(self) -> None:
        while not self.stopping.is_set():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=5).close()
            except ConnectionRefusedError:
                self.refused += 1
            except OSError:
                pass  # reset or timed out: not a closed port, and not what this prober is for
            self.tried += 1
            self.stopping.wait(0.002)  # pacing, so that the prober leaves the CPU to the servers

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(10)
