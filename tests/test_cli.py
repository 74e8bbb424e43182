"""The operator's view: `liveblog serve` on a data dir, stopped and started again."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Served
from websockets.sync.client import connect


def _admin_token(served: Served) -> str:
    match = re.search(r"Admin token \(shown once; kept in (\S+)\):\s*(\S+)", served.text)
    assert match, served.text
    return match.group(2)


@pytest.mark.slow
def test_service_keeps_every_acknowledged_entry_across_a_restart(data_dir: Path):
    first = Served(data_dir)
    admin = {"Authorization": f"Bearer {_admin_token(first)}"}
    assert first.http.get("/readyz").status_code == 200
    assert (
        first.http.post(
            "/api/v1/blogs", json={"id": "election", "title": "Live: election night"}, headers=admin
        ).status_code
        == 201
    )
    posted = []
    for i in range(5):
        response = first.http.post("/api/v1/blogs/election/entries", json={"body": f"<p>result {i}</p>"}, headers=admin)
        assert response.status_code == 201
        posted.append(response.json()["id"])
    with connect(first.url.replace("http", "ws") + "/api/v1/blogs/election/live", open_timeout=5) as ws:
        cursor = json.loads(ws.recv(timeout=5))["cursor"]
    after_cursor = first.http.post("/api/v1/blogs/election/entries", json={"body": "<p>late</p>"}, headers=admin).json()
    assert first.stop() == 0
    assert "Embedded redis-server stopped." in first.text

    second = Served(data_dir)
    try:
        assert "shown once" not in second.text, "the admin token is printed only on first start"
        listed = second.http.get("/api/v1/blogs/election/entries").json()["entries"]
        assert [e["id"] for e in listed] == [after_cursor["id"], *reversed(posted)]
        caught_up = second.http.get("/api/v1/blogs/election/entries", params={"since": cursor}).json()
        assert [e["entry"]["id"] for e in caught_up["events"]] == [after_cursor["id"]]
        with connect(
            second.url.replace("http", "ws") + f"/api/v1/blogs/election/live?cursor={cursor}", open_timeout=5
        ) as ws:
            resumed = json.loads(ws.recv(timeout=5))
        assert resumed["type"] == "event" and resumed["entry"]["id"] == after_cursor["id"]
        assert (
            second.http.post("/api/v1/blogs/election/entries", json={"body": "<p>x</p>"}, headers=admin).status_code
            == 201
        )
    finally:
        assert second.stop() == 0


def test_configured_admin_token_and_external_redis_start_nothing_else(data_dir: Path, redis_server):
    served = Served(data_dir, env={"LIVEBLOG_ADMIN_TOKEN": "ops-secret", "LIVEBLOG_REDIS_URL": redis_server.url})
    try:
        assert "Embedded redis-server" not in served.text
        assert "Admin token" not in served.text
        response = served.http.post(
            "/api/v1/blogs", json={"id": "ops", "title": "Ops"}, headers={"Authorization": "Bearer ops-secret"}
        )
        assert response.status_code == 201
    finally:
        assert served.stop() == 0
    assert not (data_dir / "redis").exists()


def test_serve_prints_the_consoles_address_beside_its_own(data_dir: Path, redis_server):
    served = Served(data_dir, env={"LIVEBLOG_ADMIN_TOKEN": "ops-secret", "LIVEBLOG_REDIS_URL": redis_server.url})
    try:
        assert served.http.get("/").status_code == 200
        assert served.http.get("/console").status_code == 200
    finally:
        assert served.stop() == 0
    assert f"Reporter console: {served.url}/console\n" in served.text


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LIVEBLOG_MAX_BODY_BYTES", "abc"),
        ("LIVEBLOG_SEND_TIMEOUT", "0"),
        ("LIVEBLOG_HEAD_TIMEOUT", "-1"),
        ("LIVEBLOG_BACKLOG", "0"),
        ("LIVEBLOG_BACKLOG", "65536"),
        ("LIVEBLOG_MAX_READERS", "-5"),
        ("LIVEBLOG_WS_PING_INTERVAL", "nan"),
    ],
)
def test_bad_configuration_is_refused_with_a_message(data_dir: Path, name: str, value: str):
    result = subprocess.run(
        [sys.executable, "-m", "liveblog.cli", "serve", "--data-dir", str(data_dir)],
        env={**os.environ, name: value},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode != 0
    assert name in result.stderr


def test_tokens_and_request_bodies_never_reach_the_logs(data_dir: Path, redis_server):
    admin_secret = "ops-secret-never-logged"
    served = Served(data_dir, env={"LIVEBLOG_ADMIN_TOKEN": admin_secret, "LIVEBLOG_REDIS_URL": redis_server.url})
    admin = {"Authorization": f"Bearer {admin_secret}"}
    try:
        assert served.http.post("/api/v1/blogs", json={"id": "ops", "title": "Ops"}, headers=admin).status_code == 201
        minted = served.http.post(
            "/api/v1/tokens", json={"name": "R", "role": "reporter", "blogs": ["ops"]}, headers=admin
        )
        reporter = minted.json()["token"]
        body = {"body": "<p>BODY-MARKER-sensitive source name</p>"}
        headers = {"Authorization": f"Bearer {reporter}"}
        assert served.http.post("/api/v1/blogs/ops/entries", json=body, headers=headers).status_code == 201
        bogus = {"Authorization": "Bearer lb_0000_bogus-secret-guess"}
        assert served.http.post("/api/v1/blogs/ops/entries", json=body, headers=bogus).status_code == 401
        assert served.http.post("/api/v1/blogs/ops/entries", content=b"{", headers=headers).status_code == 400
    finally:
        assert served.stop() == 0
    # lb_<id>_<secret>, and the secret (url-safe base64) may hold "_" itself
    for secret in (admin_secret, reporter, reporter.split("_", 2)[2], "bogus-secret-guess", "BODY-MARKER"):
        assert secret not in served.text


def test_production_logs_are_one_json_object_per_line(data_dir: Path):
    nowhere = f"unix://{data_dir}/no-redis-here.sock"
    served = Served(
        data_dir, env={"LIVEBLOG_LOG_FORMAT": "json", "LIVEBLOG_REDIS_URL": nowhere, "LIVEBLOG_ADMIN_TOKEN": "t"}
    )
    try:
        refused = served.http.post(
            "/api/v1/blogs", json={"id": "x", "title": "X"}, headers={"Authorization": "Bearer t"}
        )
        assert refused.status_code == 503
    finally:
        served.stop()
    logged = [json.loads(line) for line in served.output if line.startswith("{")]
    warning = next(line for line in logged if line["logger"] == "liveblog.errors")
    assert warning["level"] == "warning" and "Redis unavailable" in warning["message"]
    assert warning["time"].endswith("Z")


@pytest.mark.slow
def test_a_sigkilled_service_takes_its_embedded_redis_down_and_restarts_with_every_entry(data_dir: Path):
    first = Served(data_dir, env={"LIVEBLOG_ADMIN_TOKEN": "t"})
    admin = {"Authorization": "Bearer t"}
    assert first.http.post("/api/v1/blogs", json={"id": "x", "title": "X"}, headers=admin).status_code == 201
    posted = first.http.post("/api/v1/blogs/x/entries", json={"body": "<p>acknowledged</p>"}, headers=admin).json()
    redis_pid = int((data_dir / "redis" / "redis.pid").read_text())
    first.kill()
    second = Served(data_dir, env={"LIVEBLOG_ADMIN_TOKEN": "t"})  # waits for the old redis-server to go
    try:
        cmdline = Path(f"/proc/{redis_pid}/cmdline")
        gone = not cmdline.exists() or cmdline.read_bytes() == b""  # gone, or a zombie nobody reaped yet
        assert gone, "the orphaned redis-server stopped with its owner"
        listed = second.http.get("/api/v1/blogs/x/entries").json()["entries"]
        assert [e["id"] for e in listed] == [posted["id"]]
    finally:
        assert second.stop() == 0


@pytest.mark.parametrize("args", [["--help"], ["serve", "--help"]])
def test_help_reads_as_plain_text_and_names_every_setting_it_takes(args: list[str]):
    result = subprocess.run([sys.executable, "-m", "liveblog.cli", *args], capture_output=True, text=True, check=True)
    assert "``" not in result.stdout and ":class:" not in result.stdout, result.stdout
    if args[0] == "serve":
        for variable in ("LIVEBLOG_HOST", "LIVEBLOG_PORT", "LIVEBLOG_DATA_DIR", "LIVEBLOG_REDIS_URL"):
            assert variable in result.stdout


def test_the_version_is_the_packages():
    from importlib.metadata import version

    result = subprocess.run([sys.executable, "-m", "liveblog.cli", "--version"], capture_output=True, text=True)
    assert result.stdout.strip() == f"liveblog {version('liveblog')}"


def _serve_once(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "liveblog.cli", "serve", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_backlog_out_of_range_on_the_command_line_is_refused_naming_the_setting(data_dir: Path):
    result = _serve_once(data_dir, "--backlog", "-5")
    assert result.returncode == 1
    assert result.stderr.strip() == "LIVEBLOG_BACKLOG (--backlog) must be from 1 to 65535, not -5"
    assert not data_dir.exists(), "nothing started, nothing made"


def listen_backlogs(port: int) -> set[int]:
    """The listen queues' sizes on ``port`` (one socket per worker), as ``ss`` reports them
    (Send-Q of a listening socket)."""
    if shutil.which("ss") is None:
        pytest.skip("needs ss (Debian's iproute2) to read a listening socket's backlog")
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return {int(line.split()[2]) for line in out.splitlines()}


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_port_queues_as_many_connections_as_the_operator_says(data_dir: Path, redis_server, workers: str):
    # A deploy sends 10k readers back within a few seconds: past the listen queue the kernel
    # drops their SYNs, and each waits out a 1 s retransmit.
    env = {"LIVEBLOG_REDIS_URL": redis_server.url, "LIVEBLOG_ADMIN_TOKEN": "t" * 32}
    served = Served(data_dir, env, ("--backlog", "100", "--workers", workers))
    try:
        assert listen_backlogs(int(served.url.rsplit(":", 1)[1])) == {
            100
        }  # under 128, the least somaxconn a kernel caps it to
    finally:
        assert served.stop() == 0


def test_a_port_in_use_is_one_line_and_exit_1(data_dir: Path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _serve_once(data_dir, "--port", str(port))
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"liveblog: cannot listen on 127.0.0.1:{port}: Address already in use"), line
    assert not data_dir.exists(), "nothing started, nothing made"


def test_a_second_service_on_a_data_directory_in_use_is_refused_at_once_saying_by_whom(data_dir: Path):
    first = Served(data_dir)
    try:
        result = _serve_once(data_dir, "--port", "0")
    finally:
        first.stop()
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert f"another liveblog serve (pid {first.process.pid}) uses the data directory {data_dir.resolve()}" in line


def test_the_service_says_which_data_directory_it_uses_and_when_it_made_it(tmp_path: Path):
    relative = Path("somewhere") / "data"
    first = Served(tmp_path / relative)
    first.stop()
    assert f"Data directory: {(tmp_path / relative).resolve()} (new)" in first.text
    assert f"kept in {(tmp_path / relative).resolve()}/admin-token" in first.text
    again = Served(tmp_path / relative)
    again.stop()
    assert f"Data directory: {(tmp_path / relative).resolve()}\n" in again.text


def test_reuse_port_without_a_redis_of_its_own_is_one_line_and_exit_1(data_dir: Path):
    # An embedded Redis stops with its process: two processes handing over need one that stays.
    result = _serve_once(data_dir, "--port", "0", "--reuse-port")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("liveblog: --reuse-port (LIVEBLOG_REUSE_PORT) needs LIVEBLOG_REDIS_URL"), line
    assert not data_dir.exists(), "nothing started, nothing made"


def test_a_service_without_reuse_port_never_shares_the_port_of_one_with_it(data_dir: Path, redis_server):
    env = {"LIVEBLOG_REDIS_URL": redis_server.url, "LIVEBLOG_ADMIN_TOKEN": "t" * 32}
    first = Served(data_dir, {**env, "LIVEBLOG_REUSE_PORT": "1"})
    port = first.url.rsplit(":", 1)[1]
    try:
        result = subprocess.run(
            [sys.executable, "-m", "liveblog.cli", "serve", "--data-dir", str(data_dir), "--port", port],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        assert first.stop() == 0
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "Address already in use" in line and "start both with --reuse-port" in line, line
