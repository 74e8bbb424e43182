"""The operator's deployment: docker-compose.yml, the Dockerfile and deploy/nginx.conf agree with the app.

Docker cannot run where these tests run, so they read the files instead: the compose file with
PyYAML, the Dockerfile line by line, and nginx.conf with a small tokenizer that resolves which
``location`` nginx would pick for a path and which directives it would inherit there. Every
expectation is checked against the app itself (its ``Settings`` defaults and its routes), so a
change on either side that breaks the other fails here.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import sys
from dataclasses import dataclass, field, fields
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml
from conftest import UNLIMITED, running_service
from starlette.routing import Route, WebSocketRoute

from liveblog import api, sse, web
from liveblog.config import Settings

ROOT = Path(__file__).resolve().parent.parent
DEFAULTS = Settings()
#: Blog ids to try the proxy's path patterns with, including ids that look like route words.
BLOG_IDS = ("ukraine-war", "live", "events", "a")
LONG_LIVED = 10 * 60  # seconds: what "a long timeout for long-lived connections" means here


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


# --- nginx.conf ------------------------------------------------------------------------------------


@dataclass
class Block:
    """One nginx directive; ``children`` is None for a simple one, a list for a block."""

    name: str
    args: list[str]
    children: list[Block] | None = None
    parent: Block | None = None

    def directives(self, name: str) -> list[Block]:
        return [child for child in self.children or [] if child.name == name]

    def one(self, name: str) -> Block:
        found = self.directives(name)
        assert len(found) == 1, f"expected one {name!r} in {self.name} {' '.join(self.args)}, found {len(found)}"
        return found[0]

    def effective(self, name: str) -> list[Block]:
        """The ``name`` directives in force here: nginx inherits a directive from the enclosing
        block only when this block sets none of its own (all-or-nothing for proxy_set_header)."""
        block: Block | None = self
        while block is not None:
            own = block.directives(name)
            if own:
                return own
            block = block.parent
        return []

    def header(self, name: str) -> str | None:
        """The value this location sends upstream for the header ``name``."""
        for directive in self.effective("proxy_set_header"):
            if directive.args[0].lower() == name.lower():
                return directive.args[1]
        return None


def _tokens(text: str) -> list[str]:
    pattern = r"""#[^\n]*|'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"|([{};])|([^\s{};'"#]+)"""
    tokens = []
    for match in re.finditer(pattern, text):
        single, double, punct, word = match.groups()
        if match.group(0).startswith("#"):
            continue
        tokens.append(next(t for t in (single, double, punct, word) if t is not None))
    return tokens


def parse_nginx(text: str) -> Block:
    root = Block("main", [], [])
    stack, words = [root], []
    for token in _tokens(text):
        if token == ";":
            stack[-1].children.append(Block(words[0], words[1:], parent=stack[-1]))
            words = []
        elif token == "{":
            block = Block(words[0], words[1:], [], parent=stack[-1])
            stack[-1].children.append(block)
            stack.append(block)
            words = []
        elif token == "}":
            assert not words, f"unterminated directive {words}"
            stack.pop()
        else:
            words.append(token)
    assert len(stack) == 1 and not words, "unbalanced braces in nginx.conf"
    return root


def choose_location(server: Block, path: str) -> Block:
    """The location nginx serves ``path`` from: ``=`` exact, else the longest prefix unless it
    is ``^~``, else the first matching regex in file order, else that longest prefix."""
    prefixes, regexes = [], []
    for location in server.directives("location"):
        modifier, pattern = location.args if len(location.args) == 2 else ("", location.args[0])
        if modifier == "=" and path == pattern:
            return location
        if modifier in ("", "^~") and path.startswith(pattern):
            prefixes.append((len(pattern), modifier, location))
        if modifier in ("~", "~*"):
            regexes.append((re.compile(pattern, re.IGNORECASE if modifier == "~*" else 0), location))
    longest = max(prefixes, key=lambda item: item[0], default=None)
    if longest and longest[1] == "^~":
        return longest[2]
    for regex, location in regexes:
        if regex.search(path):
            return location
    assert longest, f"no location serves {path}"
    return longest[2]


def _seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", value).groups()
    return int(number) * units[unit or "s"]


def _bytes(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kKmMgG])?", value).groups()
    return int(number) * {"": 1, "k": 1024, "m": 1 << 20, "g": 1 << 30}[(unit or "").lower()]


@pytest.fixture(scope="module")
def nginx() -> Block:
    return parse_nginx((ROOT / "deploy" / "nginx.conf").read_text())


@pytest.fixture(scope="module")
def server(nginx: Block) -> Block:
    return nginx.one("http").one("server")


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


def test_two_app_replicas_sit_behind_the_proxy_on_the_port_the_app_listens_on(compose, nginx, server):
    apps = _app_services(compose)
    assert sum(_replicas(svc) for svc in apps.values()) >= 2, "a restart of one app must leave another serving"

    upstreams = {u.args[0]: u for u in nginx.one("http").directives("upstream")}
    (upstream,) = upstreams.values()
    servers = upstream.directives("server")
    assert {s.args[0] for s in servers} == {f"{name}:{DEFAULTS.port}" for name in apps}
    for entry in servers:
        name = entry.args[0].split(":")[0]
        if _replicas(apps[name]) > 1:
            # Without `resolve`, nginx resolves a name once at start: later replicas never get traffic.
            assert "resolve" in entry.args, f"{name} has replicas but nginx would resolve it only once"
            assert upstream.directives("zone") and nginx.one("http").directives("resolver")

    # Every request the app can answer goes to that upstream, whichever location serves it.
    for route in [*api.routes, *web.routes]:
        for path in _sample_paths(route):
            location = choose_location(server, path)
            assert location.effective("proxy_pass")[0].args == [f"http://{upstream.args[0]}"], path


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


def test_websocket_readers_get_through_the_proxy_and_are_not_cut_off_while_quiet(nginx, server):
    upgrade = [m for m in nginx.one("http").directives("map") if m.args == ["$http_upgrade", "$connection_upgrade"]]
    assert upgrade, "map $http_upgrade $connection_upgrade { … } is missing"
    assert upgrade[0].one("default").args == ["upgrade"]

    for path in _sample_paths(LIVE):
        location = choose_location(server, path)
        assert location.effective("proxy_http_version")[0].args == ["1.1"], "WebSocket needs HTTP/1.1 upstream"
        assert location.header("Upgrade") == "$http_upgrade", path
        assert location.header("Connection") == "$connection_upgrade", path
        for timeout in ("proxy_read_timeout", "proxy_send_timeout"):
            (directive,) = location.effective(timeout) or [Block(timeout, ["60s"])]  # nginx's default
            seconds = _seconds(directive.args[0])
            assert seconds >= LONG_LIVED and seconds > 3 * DEFAULTS.ws_ping_interval, (timeout, seconds)

    # The long timeouts stay on the live channel: other API paths keep nginx's defaults.
    assert choose_location(server, "/api/v1/blogs/live/entries") is not choose_location(server, "/api/v1/blogs/x/live")


def test_sse_readers_get_each_event_as_it_happens(server):
    for path in _sample_paths(EVENTS):
        location = choose_location(server, path)
        buffering = location.effective("proxy_buffering")
        assert buffering and buffering[0].args == ["off"], f"{path}: buffered events arrive late, in lumps"
        (read_timeout,) = location.effective("proxy_read_timeout") or [Block("t", ["60s"])]
        assert _seconds(read_timeout.args[0]) >= max(LONG_LIVED, 3 * sse.HEARTBEAT)


def test_the_app_sees_the_readers_address_and_scheme_not_the_proxys(compose, server):
    for svc in _app_services(compose).values():
        trusted = _environment(svc)["LIVEBLOG_FORWARDED_ALLOW_IPS"]
        assert trusted != DEFAULTS.forwarded_allow_ips, "with the default, every reader looks like the proxy"
    # uvicorn, trusting "*", takes the first X-Forwarded-For address: a header the client could
    # prefill ($proxy_add_x_forwarded_for) would let anyone dodge the per-address limits.
    for path in ["/", *_sample_paths(LIVE), *_sample_paths(EVENTS), "/readyz"]:
        location = choose_location(server, path)
        assert location.header("X-Forwarded-For") == "$remote_addr", path
        assert location.header("X-Forwarded-Proto") == "$scheme", path
        # With the port: the app builds its links and oEmbed URL checks from the Host it is sent.
        assert location.header("Host") == "$http_host", path


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


def test_nginx_refuses_exactly_the_bodies_the_app_would_refuse(server):
    limit = _bytes(server.one("client_max_body_size").args[0])
    assert limit <= DEFAULTS.max_body_bytes, "bigger posts would travel to an app only to be refused"
    assert limit == DEFAULTS.max_body_bytes, "a lower limit would refuse posts the app accepts"
    # nginx's own 413 page is HTML; the API promises its JSON error shape.
    (error_page,) = server.directives("error_page")
    assert error_page.args[0] == "413"
    (named,) = [loc for loc in server.directives("location") if loc.args == [error_page.args[-1]]]
    assert '"code":"too_large"' in named.one("return").args[1]


def test_the_proxy_is_published_on_8080_with_this_config(compose, server):
    proxy = compose["services"]["proxy"]
    (published,) = proxy["ports"]
    host_port, container_port = str(published).split(":")[-2:]
    assert host_port == "8080"
    assert [d.args[0].split(":")[-1] for d in server.directives("listen")] == [container_port]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in proxy["volumes"]
    image, version = proxy["image"].split(":")
    assert image == "nginx"
    # `server … resolve` in an upstream is in open-source nginx from 1.27.3 on.
    assert tuple(int(n) for n in re.match(r"[\d.]+", version).group(0).rstrip(".").split(".")) >= (1, 27, 3)


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
