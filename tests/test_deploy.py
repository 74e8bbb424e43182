"""The operator's deployment: docker-compose.yml, the Dockerfile and deploy/nginx.conf agree with the app.

Docker cannot run where these tests run, so the compose file (read with PyYAML) and the Dockerfile
(read line by line) are checked against the app itself: its ``Settings``, its routes, its health
endpoint. nginx can run, so deploy/nginx.conf is not read but run: the machine's nginx (Debian's
package; ``apt-get install nginx``) checks it with ``nginx -t`` and serves it in front of two real
``liveblog serve`` processes sharing one real Redis, and reporters and readers go through it as
they would in production. Only the lines that tie the file to Docker and to the machine's own
nginx are swapped for the test's processes and directory; see :func:`render_for_test`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, fields
from fnmatch import fnmatch
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from conftest import (
    ADMIN_TOKEN,
    RECV_TIMEOUT,
    STARTUP_TIMEOUT,
    UNLIMITED,
    Served,
    Service,
    assert_error,
    free_port,
    receive,
    running_service,
)
from prometheus_client.parser import text_string_to_metric_families
from starlette.routing import Route, WebSocketRoute
from test_sse import EventStream
from websockets.exceptions import ConnectionClosed

from liveblog import api, sse, web
from liveblog.config import Settings

ROOT = Path(__file__).resolve().parent.parent
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
DEFAULTS = Settings()
#: Blog ids to try the proxy's path patterns with, including ids that look like route words.
BLOG_IDS = ("ukraine-war", "live", "events", "a")
LONG_LIVED = 10 * 60  # seconds: what "a long timeout for long-lived connections" means here
#: The first open-source nginx with `server … resolve` in an upstream.
RESOLVE_SINCE = (1, 27, 3)


# --- docker-compose.yml ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _app_services(compose: dict) -> dict[str, dict]:
    """The services built from this repository's Dockerfile: the app replicas."""
    return {name: svc for name, svc in compose["services"].items() if "build" in svc}


def _replicas(service: dict) -> int:
    return int(service.get("deploy", {}).get("replicas", 1))


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _healthcheck_command(healthcheck: dict) -> str:
    test = healthcheck["test"]
    return test if isinstance(test, str) else " ".join(test)


def _duration(value: str) -> float:
    """A compose duration such as ``20s``, ``1m30s``."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"not a duration: {value!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


# --- Dockerfile ------------------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


@pytest.fixture(scope="module")
def dockerfile() -> list[Stage]:
    """The Dockerfile's stages, each a list of (INSTRUCTION, arguments), continuations joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            stages.append(Stage(base=args.split()[0]))
        else:
            stages[-1].instructions.append((keyword, args))
    return stages


def _env_instructions(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for item in shlex.split(args):
            key, _, value = item.partition("=")
            env[key] = value
    return env


def _app_settings(compose: dict) -> Settings:
    """The Settings the compose app service runs with (interpolations stand in as a sample value)."""
    (service,) = _app_services(compose).values()
    env = {k: re.sub(r"\$\{[^}]*\}", "sample", v) for k, v in _environment(service).items()}
    return Settings.from_env({k: v for k, v in env.items() if k.startswith("LIVEBLOG_")})


def _published(compose: dict) -> tuple[str, str]:
    """The proxy's one published port: (on the host, in the container)."""
    (published,) = compose["services"]["proxy"]["ports"]
    host_port, container_port = str(published).split(":")[-2:]
    return host_port, container_port


# --- nginx, for real ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    # Debian installs it in /usr/sbin, which is not on every user's PATH.
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        pytest.fail(
            "nginx is not installed; these tests run deploy/nginx.conf in a real one: apt-get install nginx",
            pytrace=False,
        )
    return found


def nginx_version(binary: str) -> tuple[int, ...]:
    banner = subprocess.run([binary, "-v"], capture_output=True, text=True, check=True).stderr
    return tuple(int(n) for n in re.search(r"nginx/(\d+(?:\.\d+)*)", banner).group(1).split("."))


def render_for_test(compose: dict, *, listen_port: int, backends: list[str], prefix: Path, log_level: str) -> str:
    """deploy/nginx.conf as shipped, with only what ties it to Docker and to the machine's own
    nginx swapped for this test's processes and directory:

    * the upstream's ``server app:8000 resolve;`` (the compose app service, on the app's port)
      becomes one ``server 127.0.0.1:<port>;`` per test app. ``resolve`` makes nginx re-ask
      Docker's DNS for that name; the test apps are addresses, with no name to resolve (and
      Debian 12's nginx, 1.22, predates ``resolve`` in an upstream: 1.27.3). ``zone`` and
      ``resolver`` stay: both are valid without it.
    * ``listen 80`` (the proxy's port in the container, from compose) becomes
      ``listen 127.0.0.1:<listen_port>``.
    * the main ``error_log`` becomes ``error_log stderr <log_level>``: the same stream, at
      ``notice`` for the "start worker processes" line that says nginx is listening (or
      ``debug``, for the location it picks).
    * added: ``pid`` and the ``*_temp_path`` directives, into ``prefix`` instead of /run and
      /var/lib/nginx, which belong to the machine's own nginx.

    Every other line (the locations, proxied headers, timeouts, buffering, body limits, error
    pages, keepalive, the Upgrade map) is the shipped text. Each substitution must apply exactly
    once, so a change to the shipped file that this rendering no longer fits fails, by name.
    """
    (app,) = _app_services(compose)
    port, container_port = _app_settings(compose).port, _published(compose)[1]
    temp_paths = "".join(
        f"    {kind}_temp_path {prefix}/{kind}_temp;\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    substitutions = [
        (
            rf"^([ \t]*)server {re.escape(app)}:{port} resolve;",
            lambda m: "\n".join(f"{m[1]}server {backend};" for backend in backends),
        ),
        (rf"^([ \t]*)listen {container_port}\b", rf"\g<1>listen 127.0.0.1:{listen_port}"),
        (r"^error_log [^;]*;", f"error_log stderr {log_level};"),
        (r"^http \{\n", "http {\n" + temp_paths),
    ]
    text = NGINX_CONF.read_text()
    for pattern, replacement in substitutions:
        text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        assert count == 1, f"deploy/nginx.conf has {count} lines matching {pattern!r}; render_for_test needs one"
    return f"pid {prefix}/nginx.pid;\n" + text


def _nginx_prefix() -> Path:
    """A directory for nginx's pid, config and temp files. Run as root, nginx's workers switch to
    `nobody`, who must reach the temp directories: pytest's tmp_path is private to its user."""
    prefix = Path(tempfile.mkdtemp(prefix="liveblog-nginx-"))
    prefix.chmod(0o755)
    return prefix


class NginxFailed(AssertionError):
    def __init__(self, log: str):
        super().__init__("nginx did not start:\n" + log)
        self.log = log


class Nginx:
    """nginx in the foreground (``-g 'daemon off;'``) on ``prefix/nginx.conf``, its output read
    all along by threads (a process blocked on a full pipe would look hung)."""

    def __init__(self, binary: str, prefix: Path):
        self.prefix = prefix
        self.conf = prefix / "nginx.conf"
        self.process = subprocess.Popen(
            [binary, "-p", f"{prefix}/", "-c", str(self.conf), "-g", "daemon off;"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[str] = []  # the error log (stderr); the access log goes to stdout, unread
        listening = threading.Event()
        self._readers = [
            threading.Thread(target=self._read_log, args=(listening,), daemon=True),
            threading.Thread(target=lambda: [None for _ in self.process.stdout], daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        # The master binds its sockets, then starts its workers: from this line on, connections
        # are taken (queued until a worker accepts them). If nginx exits instead, its log says why.
        if not listening.wait(STARTUP_TIMEOUT) or self.process.poll() is not None:
            raise NginxFailed(self.stop())

    def _read_log(self, listening: threading.Event) -> None:
        for line in self.process.stderr:
            self.log.append(line)
            if "start worker processes" in line:
                listening.set()
        listening.set()

    def stop(self) -> str:
        """Stop nginx (SIGTERM: its fast shutdown), remove its prefix; its whole error log."""
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(20)
        for reader in self._readers:
            reader.join(20)
        shutil.rmtree(self.prefix, ignore_errors=True)
        return "".join(self.log)


def start_nginx(binary: str, compose: dict, backends: list[str], log_level: str = "notice") -> tuple[Nginx, int]:
    """nginx on the rendered config, in a prefix of its own; and the port it listens on."""
    for _ in range(5):  # a free port can be taken by someone else before nginx binds it
        port, prefix = free_port(), _nginx_prefix()
        try:
            (prefix / "nginx.conf").write_text(
                render_for_test(compose, listen_port=port, backends=backends, prefix=prefix, log_level=log_level)
            )
        except BaseException:
            shutil.rmtree(prefix)
            raise
        try:
            return Nginx(binary, prefix), port
        except NginxFailed as failed:
            if "Address already in use" not in failed.log:
                raise
    raise AssertionError("no free port nginx could bind")


@dataclass
class Proxied:
    """nginx on the shipped config in front of two `liveblog serve` processes on one Redis."""

    nginx: Nginx
    port: int
    apps: list[Served]
    #: What a reporter or reader does, through the proxy.
    proxy: Service

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def metric(self, app: Served, name: str, **labels: str) -> float:
        """A value the app reports on its /metrics (asked directly, not through the proxy)."""
        async with httpx.AsyncClient(base_url=app.url) as direct:
            text = (await direct.get("/metrics")).text
        (family,) = [f for f in text_string_to_metric_families(text) if f.name == name]
        return sum(
            s.value for s in family.samples if s.name in (name, f"{name}_total") and labels.items() <= s.labels.items()
        )

    async def live_readers(self, app: Served) -> float:
        """The app's own count of its open WebSocket readers."""
        return await self.metric(app, "liveblog_readers", transport="websocket")


def _start_proxied(binary: str, compose: dict, redis_url: str, workdir: Path, extra_env: dict[str, str]) -> Proxied:
    (service,) = _app_services(compose).values()
    env = {
        # The deployment's own settings (LIVEBLOG_FORWARDED_ALLOW_IPS above all), on the test's Redis.
        **{k: v for k, v in _environment(service).items() if k.startswith("LIVEBLOG_")},
        "LIVEBLOG_REDIS_URL": redis_url,
        "LIVEBLOG_ADMIN_TOKEN": ADMIN_TOKEN,
        "LIVEBLOG_VIEWERS_INTERVAL": "3600",  # the stories count messages; no viewer counts among them
        **extra_env,
    }
    apps: list[Served] = []
    try:
        for name in ("app1", "app2"):
            apps.append(Served(workdir / name, env))
        nginx, port = start_nginx(binary, compose, [urlsplit(app.url).netloc for app in apps])
        return Proxied(nginx, port, apps, Service(f"http://127.0.0.1:{port}"))
    except BaseException:
        for app in apps:
            app.stop()
        raise


@pytest.fixture
async def proxied(request, compose, nginx_binary, redis_server, tmp_path):
    """The deployment on this machine; ``indirect`` parametrisation adds ``LIVEBLOG_*`` settings."""
    extra_env = getattr(request, "param", {})
    stack = await asyncio.to_thread(_start_proxied, nginx_binary, compose, redis_server.url, tmp_path, extra_env)
    try:
        yield stack
    finally:
        await stack.proxy.http.aclose()

        def stop() -> None:
            stack.nginx.stop()
            for app in stack.apps:
                app.stop()

        await asyncio.to_thread(stop)


def _sample_paths(route: Route | WebSocketRoute) -> list[str]:
    paths = [re.sub(r"{[^}]+}", blog, route.path_format) for blog in BLOG_IDS]
    for path in paths:
        assert route.path_regex.match(path), (route.path, path)
    return paths


def _route(path: str, kind: type) -> Route | WebSocketRoute:
    found = [r for r in api.routes if isinstance(r, kind) and r.path == path]
    assert found, f"the app has no {kind.__name__} {path}; the deployment files need updating"
    return found[0]


LIVE = _route("/api/v1/blogs/{blog}/live", WebSocketRoute)
EVENTS = _route("/api/v1/blogs/{blog}/events", Route)


# --- the stories -----------------------------------------------------------------------------------


def test_two_app_replicas_sit_behind_the_proxy_on_the_port_the_app_listens_on(compose):
    apps = _app_services(compose)
    assert sum(_replicas(svc) for svc in apps.values()) >= 2, "a restart of one app must leave another serving"
    (name,) = apps
    # The one thing about the upstream that only Docker could show: it names the app service on
    # the app's port and, the service having replicas, re-resolves that name (`resolve`; without
    # it nginx resolves once, at start, and later replicas never get traffic). render_for_test
    # swaps this very line for the test apps, so the real nginx serves everything else.
    upstream_servers = re.findall(r"^\s*server\s+([^;{]*);", NGINX_CONF.read_text(), flags=re.MULTILINE)
    assert upstream_servers == [f"{name}:{_app_settings(compose).port} resolve"]


def test_the_image_serves_on_all_interfaces_at_the_apps_port(compose, dockerfile):
    final = dockerfile[-1]
    env = _env_instructions(final)
    assert env["LIVEBLOG_HOST"] == "0.0.0.0", "on 127.0.0.1 nothing outside the container reaches it"
    assert int(env.get("LIVEBLOG_PORT", DEFAULTS.port)) == DEFAULTS.port
    assert [int(p) for p in final.all("EXPOSE")] == [DEFAULTS.port]
    for svc in _app_services(compose).values():
        assert int(_environment(svc).get("LIVEBLOG_PORT", DEFAULTS.port)) == DEFAULTS.port
        assert "ports" not in svc, "only the proxy is published; replicas cannot share a host port"


def _healthchecks(compose: dict, dockerfile: list[Stage]) -> dict[str, list[str]]:
    """Each app healthcheck as the argv Docker runs, from the image and from the compose file."""
    (instruction,) = dockerfile[-1].all("HEALTHCHECK")
    options, _, command = instruction.partition("CMD ")
    assert all(option.startswith("--") for option in options.split()), instruction
    checks = {"Dockerfile HEALTHCHECK": json.loads(command)}  # exec form: no shell needed in the image
    for name, svc in _app_services(compose).items():
        if "healthcheck" in svc:  # otherwise the image's HEALTHCHECK applies
            test = svc["healthcheck"]["test"]
            assert test[0] == "CMD", f"{name}: exec form"
            checks[f"compose {name}"] = test[1:]
    return checks


def test_health_checks_ask_readyz_and_gate_the_startup_order(compose, dockerfile):
    assert "/readyz" in {route.path for route in api.routes}
    for where, argv in _healthchecks(compose, dockerfile).items():
        assert argv[0] in ("python", "python3"), f"{where}: the slim image has no curl or wget"
        assert "/readyz" in argv[-1], where
    for svc in _app_services(compose).values():
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
    proxy = compose["services"]["proxy"]
    for name in _app_services(compose):
        assert proxy["depends_on"][name]["condition"] == "service_healthy", "the proxy waits for ready apps"


async def _run_healthcheck(argv: list[str], port: int) -> int:
    # The compose check names the default port; the app under test listens on a free one.
    argv = [sys.executable, *argv[1:-1], argv[-1].replace(f":{DEFAULTS.port}/", f":{port}/")]
    process = await asyncio.create_subprocess_exec(
        *argv,
        env={**os.environ, "LIVEBLOG_PORT": str(port)},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await asyncio.wait_for(process.wait(), 10)


async def test_health_checks_pass_on_a_ready_app_and_fail_while_redis_is_away(compose, dockerfile, service):
    checks = _healthchecks(compose, dockerfile)
    port = int(service.base_url.rsplit(":", 1)[1])
    for where, argv in checks.items():
        assert await _run_healthcheck(argv, port) == 0, f"{where} fails on a ready app"

    async with running_service("redis://127.0.0.1:1/0", UNLIMITED) as unready:
        assert (await unready.http.get("/readyz")).status_code == 503
        port = int(unready.base_url.rsplit(":", 1)[1])
        for where, argv in checks.items():
            assert await _run_healthcheck(argv, port) == 1, f"{where} passes while Redis is unreachable"


def test_the_app_trusts_the_proxys_forwarded_headers(compose):
    for svc in _app_services(compose).values():
        trusted = _environment(svc)["LIVEBLOG_FORWARDED_ALLOW_IPS"]
        assert trusted != DEFAULTS.forwarded_allow_ips, "with the default, every reader looks like the proxy"
    # That nginx then sends the reader's own address, not one the reader claims, is
    # test_the_apps_limit_readers_by_the_address_they_come_from_not_one_they_claim.


def test_every_liveblog_variable_in_the_deployment_is_a_real_setting(compose, dockerfile):
    known = {f"LIVEBLOG_{f.name.upper()}" for f in fields(Settings)}
    sources = {"Dockerfile": _env_instructions(dockerfile[-1])}
    sources.update({f"compose {name}": _environment(svc) for name, svc in _app_services(compose).items()})
    for where, env in sources.items():
        liveblog = {k: v for k, v in env.items() if k.startswith("LIVEBLOG_")}
        assert liveblog.keys() <= known, f"{where} sets unknown {sorted(liveblog.keys() - known)}"
        # ... and each value is one Settings accepts (interpolations stand in as a sample value).
        Settings.from_env({k: re.sub(r"\$\{[^}]*\}", "sample", v) for k, v in liveblog.items()})


def test_the_admin_token_comes_from_the_operators_environment_or_nothing_starts(compose):
    for svc in _app_services(compose).values():
        token = _environment(svc)["LIVEBLOG_ADMIN_TOKEN"]
        # A generated token would differ per replica and live in a container's filesystem.
        assert re.fullmatch(r"\$\{LIVEBLOG_ADMIN_TOKEN:\?[^}]+\}", token), token
        assert _environment(svc)["LIVEBLOG_REDIS_URL"].startswith("redis://redis:")


def test_redis_keeps_every_acknowledged_write_on_a_volume(compose):
    redis = compose["services"]["redis"]
    assert redis["image"].split(":")[0] == "redis" and redis["image"].split(":")[1].startswith("7")
    command = redis["command"] if isinstance(redis["command"], list) else shlex.split(redis["command"])
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert options["--appendonly"] == "yes" and options["--appendfsync"] == "everysec"
    volume = next(v.split(":")[0] for v in redis["volumes"] if v.split(":")[1] == "/data")
    assert volume in compose["volumes"], "a named volume, not the container's own filesystem"
    assert "redis-cli ping" in _healthcheck_command(redis["healthcheck"])


def test_the_app_runs_unprivileged_and_stops_gracefully(compose, dockerfile):
    final = dockerfile[-1]
    assert final.base.startswith("python:3.11-slim")
    user = final.all("USER")[-1].split(":")[0]
    assert user not in ("root", "0"), "the app must not run as root"
    # Exec form: the liveblog process is PID 1 and gets SIGTERM itself (a shell would swallow it).
    assert final.all("CMD")[-1] == '["liveblog", "serve"]'
    assert final.all("STOPSIGNAL") in ([], ["SIGTERM"])
    for name, svc in _app_services(compose).items():
        assert svc.get("stop_signal", "SIGTERM") == "SIGTERM"
        # The app drains within 15 s (README, "Shutdown"); Docker's default 10 s would SIGKILL it.
        assert _duration(svc["stop_grace_period"]) >= 15, name


def test_the_proxy_is_published_on_8080_with_this_config(compose):
    proxy = compose["services"]["proxy"]
    host_port, container_port = _published(compose)
    assert host_port == "8080"
    listens = re.findall(r"^\s*listen\s+([^;]*);", NGINX_CONF.read_text(), flags=re.MULTILINE)
    assert [address.split()[0].split(":")[-1] for address in listens] == [container_port]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in proxy["volumes"]
    image, version = proxy["image"].split(":")
    assert image == "nginx"
    # `server … resolve` in an upstream is in open-source nginx from 1.27.3 on.
    assert tuple(int(n) for n in re.match(r"[\d.]+", version).group(0).rstrip(".").split(".")) >= RESOLVE_SINCE


def test_the_build_context_leaves_local_state_out_and_keeps_what_the_image_needs(dockerfile):
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    ignored = [line for line in ignored if line and not line.startswith("#")]

    def is_ignored(path: str) -> bool:
        return any(fnmatch(path, pattern) or path.startswith(pattern.rstrip("/") + "/") for pattern in ignored)

    for path in (".git", ".venv", "venv", "tests/artifacts", "liveblog-data", "node_modules", ".env"):
        assert is_ignored(path), path
    copied = [
        source
        for stage in dockerfile
        for args in stage.all("COPY")
        if not args.startswith("--from")
        for source in args.split()[:-1]
    ]
    assert copied, "the Dockerfile copies the project in"
    for source in copied:
        assert not is_ignored(source.rstrip("/")), f"{source} is COPYed but .dockerignore leaves it out"


# --- the proxy, run ----------------------------------------------------------------------------------


def _nginx_t(binary: str, prefix: Path, conf: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [binary, "-t", "-p", f"{prefix}/", "-c", str(conf), *extra], capture_output=True, text=True, timeout=60
    )


def test_nginx_accepts_the_shipped_config_as_it_is(nginx_binary, tmp_path):
    version = nginx_version(nginx_binary)
    if version < RESOLVE_SINCE:
        pytest.skip(
            f"nginx {'.'.join(map(str, version))} predates `server … resolve` in an upstream "
            f"({'.'.join(map(str, RESOLVE_SINCE))}, the version docker-compose.yml runs): it refuses the shipped "
            "line `server app:8000 resolve;`, so only the rendering with the test apps is checked here"
        )
    checked = _nginx_t(nginx_binary, tmp_path, NGINX_CONF, "-g", f"pid {tmp_path}/nginx.pid;")
    assert checked.returncode == 0, checked.stderr


def test_nginx_accepts_the_config_with_the_test_apps_swapped_in_and_warns_of_nothing(compose, nginx_binary):
    prefix = _nginx_prefix()
    try:
        conf = prefix / "nginx.conf"
        conf.write_text(
            render_for_test(
                compose, listen_port=free_port(), backends=["127.0.0.1:1"], prefix=prefix, log_level="notice"
            )
        )
        checked = _nginx_t(nginx_binary, prefix, conf)
    finally:
        shutil.rmtree(prefix, ignore_errors=True)
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr
    complaints = [line for line in checked.stderr.splitlines() if re.search(r"\[(warn|error|crit|alert|emerg)\]", line)]
    assert not complaints, complaints


@pytest.mark.slow
async def test_readers_on_both_apps_get_an_entry_a_reporter_posts_through_the_proxy_once(proxied):
    proxy = proxied.proxy
    await proxy.create_blog()
    token = (await proxy.mint())["token"]
    async with AsyncExitStack() as stack:
        readers = [await stack.enter_async_context(proxy.live()) for _ in range(6)]
        for reader in readers:
            assert (await receive(reader))["type"] == "snapshot"
        # An app counts a reader before it sends the snapshot: the counts are complete now.
        counts = [await proxied.live_readers(app) for app in proxied.apps]
        assert sum(counts) == len(readers) and min(counts) >= 1, f"readers per app: {counts}"

        first = await proxy.post(token=token, body="<p>first</p>")
        second = await proxy.post(token=token, body="<p>second</p>")
        for reader in readers:
            # The first entry once: the next thing after it is the second.
            got = [await receive(reader), await receive(reader)]
            assert [(m["type"], m["entry"]["id"]) for m in got] == [("event", first["id"]), ("event", second["id"])]


@pytest.mark.slow
async def test_sse_readers_get_each_event_through_the_proxy_while_the_response_is_open(proxied):
    proxy = proxied.proxy
    await proxy.create_blog()
    async with proxy.http.stream("GET", "/api/v1/blogs/ukraine/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = EventStream(response)
        _, snapshot = await stream.message()
        assert snapshot["type"] == "snapshot"
        entry = await proxy.post(body="<p>as it happens</p>")
        _, event = await stream.message()
        assert event["type"] == "event" and event["entry"]["id"] == entry["id"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "proxied",
    [{"LIVEBLOG_READER_BUFFER_BYTES": str(64 * 1024), "LIVEBLOG_WRITES_PER_TOKEN_PER_SECOND": "100000"}],
    indirect=True,
)
async def test_a_stalled_sse_reader_behind_the_proxy_is_still_cut_off_by_the_app(proxied):
    """A proxy that buffered the stream would soak up a stalled reader's backlog (nginx: up to
    1 GiB, on disk) where the app cannot see it; this one passes it back, and the app ends the
    stream with 4408 once its own buffer for the reader is full."""
    proxy = proxied.proxy
    await proxy.create_blog()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", proxied.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        writer.write(b"GET /api/v1/blogs/ukraine/events HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"retry: "), RECV_TIMEOUT)  # sent once the reader is subscribed
        writer.transport.pause_reading()  # from here on this reader reads nothing, like a stalled phone

        async def cut_off() -> float:
            return sum([await proxied.metric(app, "liveblog_slow_reader_closes") for app in proxied.apps])

        big_body = "<p>" + "Eyewitness account. " * 900 + "</p>"  # ~18 KB an event
        for posted in range(1, 4001):  # 72 MB: far more than the sockets between app and reader hold
            await proxy.post(body=big_body)
            if posted % 25 == 0 and await cut_off():
                break
        assert await cut_off() == 1, f"the app never saw the stalled reader's backlog ({posted} events)"

        writer.transport.resume_reading()
        tail = b""
        while not tail.endswith(b"\r\n0\r\n\r\n"):  # the end of the chunked response
            chunk = await asyncio.wait_for(reader.read(1 << 16), RECV_TIMEOUT)
            assert chunk, "the proxy hung up before the end of the response"
            tail = (tail + chunk)[-4096:]
    finally:
        writer.close()
    assert b'event: close\ndata: {"code":4408' in tail


@pytest.mark.slow
async def test_the_proxy_takes_every_post_the_app_takes_and_refuses_the_rest_in_the_apps_error_shape(proxied, compose):
    limit = _app_settings(compose).max_body_bytes
    proxy = proxied.proxy
    await proxy.create_blog()

    def padded(size: int) -> bytes:
        """A valid entry, padded with JSON whitespace to ``size`` bytes."""
        entry = b'{"body": "<p>a long one</p>"}'
        return entry[:-1] + b" " * (size - len(entry)) + b"}"

    async def post(content: bytes) -> httpx.Response:
        headers = {**proxy.auth(), "Content-Type": "application/json"}
        return await proxy.http.post("/api/v1/blogs/ukraine/entries", content=content, headers=headers)

    at_the_limit = await post(padded(limit))
    assert at_the_limit.status_code == 201, at_the_limit.text
    over = await post(padded(limit + 1))
    assert assert_error(over, 413)["code"] == "too_large"


@pytest.mark.slow
@pytest.mark.parametrize("proxied", [{"LIVEBLOG_MAX_READERS_PER_IP": "1"}], indirect=True)
async def test_the_apps_limit_readers_by_the_address_they_come_from_not_one_they_claim(proxied):
    """With one live reader per address per app, the address an app counts is observable: it
    admits a second reader only from another address. Readers connect from 127.0.0.5 and
    127.0.0.6 (loopback, like nginx itself, which reaches the apps from 127.0.0.1), each claiming
    an X-Forwarded-For of its own."""
    proxy = proxied.proxy
    await proxy.create_blog()

    def reader(source: str, claimed: str):
        return proxy.live(local_addr=(source, 0), additional_headers={"X-Forwarded-For": claimed})

    # least_conn puts the second reader on the other app: one reader from 127.0.0.5 on each.
    async with reader("127.0.0.5", "203.0.113.1") as first, reader("127.0.0.5", "203.0.113.2") as second:
        for ws in (first, second):
            assert (await receive(ws))["type"] == "snapshot"
        async with reader("127.0.0.5", "203.0.113.3") as third:
            with pytest.raises(ConnectionClosed) as closed:
                await receive(third)
            assert closed.value.rcvd.code == 4429, "a claimed X-Forwarded-For was believed"
        # Another reader is counted apart, even when it claims the first one's address; were
        # every reader the proxy's 127.0.0.1 to the apps, this one would be refused too.
        async with reader("127.0.0.6", "127.0.0.5") as elsewhere:
            try:
                assert (await receive(elsewhere))["type"] == "snapshot"
            except ConnectionClosed as refused:
                raise AssertionError(f"a reader from another address was refused: {refused}") from None


@pytest.mark.slow
async def test_links_the_app_builds_point_where_the_reader_reached_the_proxy(proxied):
    proxy = proxied.proxy
    await proxy.create_blog()
    # A reader on plain http who claims https is not believed either.
    feed = await proxy.http.get("/blogs/ukraine/feed.json", headers={"X-Forwarded-Proto": "https"})
    assert feed.status_code == 200
    assert feed.json()["home_page_url"] == f"{proxied.url}/blogs/ukraine", "host with its port, and the scheme"


@pytest.mark.slow
async def test_every_path_the_app_serves_answers_the_same_through_the_proxy(proxied):
    proxy = proxied.proxy
    for blog in BLOG_IDS:
        await proxy.create_blog(blog)
    async with httpx.AsyncClient(base_url=proxied.apps[0].url) as direct:
        for route in [*api.routes, *web.routes]:
            if isinstance(route, WebSocketRoute) or route is EVENTS or route.path == "/metrics":
                continue  # live channels: the stories above; metrics: the next story
            for path in _sample_paths(route):
                through, straight = await proxy.http.get(path), await direct.get(path)
                assert (through.status_code, through.headers.get("content-type")) == (
                    straight.status_code,
                    straight.headers.get("content-type"),
                ), path


async def test_the_public_cannot_read_the_metrics_through_the_proxy(proxied):
    response = await proxied.proxy.http.get("/metrics")
    assert_error(response, 404)
    assert "liveblog_" not in response.text
    async with httpx.AsyncClient(base_url=proxied.apps[0].url) as direct:  # the scraper's way in
        assert "liveblog_" in (await direct.get("/metrics")).text


def _timeouts(dump: str, location: str) -> dict[str, float]:
    """The proxy timeouts the ``location`` block (named as nginx's debug log names it) sets itself,
    from ``nginx -T``'s dump of the config it loaded. The shipped locations hold no inner blocks."""
    text = re.sub(r"#[^\n]*", "", dump)
    pattern = rf"\blocation\s+(?:[=~^*]+\s+)?{re.escape(location)}\s*\{{([^{{}}]*)\}}"
    (body,) = re.findall(pattern, text)
    return {name: _seconds(value) for name, value in re.findall(r"\b(proxy_\w+_timeout)\s+(\S+);", body)}


def _seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", value).groups()
    return int(number) * units[unit or "s"]


def test_the_proxy_does_not_cut_off_quiet_live_readers(compose, nginx_binary):
    """Which location nginx serves each live path from, as its debug log says (Debian builds nginx
    ``--with-debug``), and that location's timeouts, as ``nginx -T`` shows them: a quiet period
    longer than nginx's default (60 s) is not waited out for real."""
    nginx, port = start_nginx(nginx_binary, compose, backends=[f"127.0.0.1:{free_port()}"], log_level="debug")
    probes = [*_sample_paths(LIVE), *_sample_paths(EVENTS), "/api/v1/blogs/live/entries", "/"]
    try:
        for path in probes:  # no app behind it: each gets a 502, after nginx picked its location
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                assert client.get(path).status_code == 502, path
        dump = _nginx_t(nginx_binary, nginx.prefix, nginx.conf, "-T").stdout
    finally:
        log = nginx.stop()

    served_from: dict[str, str] = {}
    pending: dict[str, str] = {}  # connection → its request's path
    for connection, what, value in re.findall(r'\*(\d+) (http request line: |using configuration )"([^"]*)"', log):
        if what == "http request line: ":
            pending[connection] = value.split()[1]
        elif connection in pending:
            served_from[pending.pop(connection)] = value
    assert served_from.keys() == set(probes), "no location in nginx's debug log: was it built --with-debug?"

    for path in [*_sample_paths(LIVE), *_sample_paths(EVENTS)]:
        timeouts = _timeouts(dump, served_from[path])
        for timeout in ("proxy_read_timeout", "proxy_send_timeout"):
            seconds = timeouts.get(timeout, 60)  # nginx's default
            assert seconds >= LONG_LIVED, (path, timeout, seconds)
            assert seconds > 3 * max(DEFAULTS.ws_ping_interval, sse.HEARTBEAT), (path, timeout, seconds)
    # The long timeouts stay on the live channels: other paths keep nginx's defaults.
    assert served_from["/api/v1/blogs/live/entries"] == served_from["/"]
    assert served_from["/"] not in {served_from[path] for path in _sample_paths(LIVE)}
