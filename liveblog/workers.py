"""``liveblog serve --workers N``: one parent process, N worker processes serving one port.

The parent does what must happen once (the admin token, the embedded Redis, binding the port;
see :mod:`liveblog.cli`), then forks the workers and supervises them: each worker runs what a
single ``liveblog serve`` runs (the app, its hub, uvicorn) on that port (see :func:`listen`).
A worker that dies is replaced; its readers reconnect with their cursor and lose nothing.
SIGTERM or SIGINT to the parent stops the workers gracefully (readers are closed with 1012).
SIGHUP replaces the workers without closing the port: N new ones start, and once all of them
serve the old ones are stopped as SIGTERM stops them; their readers come back to the new ones.
The new workers are forked from the parent, so they run the code and settings the parent
started with: SIGHUP renews the processes (their memory, their Redis connections), it does not
deploy new code; for that, ``--reuse-port`` and a new ``liveblog serve`` (see the README).
A worker also stops when its parent dies, even by SIGKILL (Linux: ``PR_SET_PDEATHSIG``), so
none is ever orphaned.

The parent runs no event loop and no thread: it waits in ``select()`` on two pipes, one carrying
the signals it receives (``signal.set_wakeup_fd``), one on which each worker writes its pid once
it is serving. Signal handlers only wake it up, so no signal can interrupt it halfway through
starting or reaping a worker.
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from .embedded import die_with_parent
from .guard import cap_send_buffer
from .metrics import worker_exited

log = logging.getLogger("liveblog.workers")

#: More workers than this per CPU only cost memory and Redis connections: each is one event loop.
MAX_WORKERS_PER_CPU = 4
#: How long stopping workers get before they are killed (README, "Shutdown": within 15 s).
STOP_TIMEOUT = 15.0
#: A worker that dies within this long of being started is replaced after this long, not at once,
#: so that one failing on start cannot fork in a tight loop.
RESTART_DELAY = 1.0

#: Sent by the parent to a replaced worker: stop listening (it still serves its readers), then
#: say so on the ready pipe (``left <pid>``); SIGTERM follows once all replaced workers have.
LEAVE_PORT = signal.SIGUSR1
#: How long replaced workers get to leave the port before they are stopped anyway.
LEAVE_TIMEOUT = 5.0

#: The worker's body: serve on the socket, call ``ready()`` once serving, return when stopped.
WorkerBody = Callable[[socket.socket, Callable[[], None]], None]


def max_workers() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return MAX_WORKERS_PER_CPU * cpus


#: Linux spreads connections over ``SO_REUSEPORT`` listeners; elsewhere the workers share one socket.
REUSEPORT = sys.platform == "linux"


def listen(host: str, port: int, backlog: int, share: bool = False) -> socket.socket:
    """The parent's socket on ``host:port`` (port 0: the kernel picks one, once, here), queueing
    up to ``backlog`` connections where the workers share it (each worker's own socket listens
    with uvicorn's ``backlog``, the same setting).

    On Linux every worker listens on a socket of its own on that port, with ``SO_REUSEPORT``, and
    this one only keeps the port reserved (bound, never listening: it is given no connections).
    Measured with 2 workers and 1,000 WebSocket readers connecting at once, as they do after a
    restart: the kernel, hashing each connection to one worker's queue, split them 452/548 at
    worst over 5 runs, while one shared listening socket split them 239/761 at worst (each worker
    accepts all it can when woken, so whichever wakes first takes a whole burst; libuv's
    ``UV_TCP_SINGLE_ACCEPT`` did not help: 345/655). Arriving over 5 s, both split them within
    475/525. The price: connections still queued on a worker that dies are reset (the clients
    reconnect, like its readers).

    ``SO_REUSEPORT`` would let us share the port with another process of the same user (another
    liveblog on the same port, say) without a word; binding a plain socket first makes that fail.
    ``share`` (``--reuse-port``) skips that check: the operator asked for a port shared with a
    ``liveblog serve --reuse-port`` being replaced (Linux only).
    """
    if share and not REUSEPORT:
        raise SystemExit("--reuse-port (LIVEBLOG_REUSE_PORT) with --workers needs Linux's SO_REUSEPORT")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        if REUSEPORT and not share:
            with socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((host, port))
                port = probe.getsockname()[1]
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if REUSEPORT:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        cap_send_buffer(sock)
        sock.bind((host, port))
        if not REUSEPORT:
            sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise SystemExit(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def leave_port(sock: socket.socket) -> None:
    """Stop taking connections on ``sock`` at once, if it shares its port (``SO_REUSEPORT``) with
    another process: the kernel then hands every new connection to the others. Done before the
    readers are told to come back (1012), so that none comes back to a process that is leaving:
    a connection queued here but not yet accepted would be reset when the socket closes."""
    if not (hasattr(socket, "SO_REUSEPORT") and sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)):
        return  # the port's only listener (or one socket shared by workers): uvicorn closes it
    try:
        sock.shutdown(socket.SHUT_RD)  # Linux: a listening socket stops listening, leaves the group
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            return  # it left already (a replaced worker is told to before it is stopped)
        log.warning("could not stop listening on %s before the shutdown: %s", sock.getsockname(), exc)


def _worker_socket(parent: socket.socket) -> socket.socket:
    """Runs in a worker: its own socket on the parent's port (see :func:`listen`), bound only:
    uvicorn makes it listen once the worker's app has started, so that the kernel queues no
    connection on a worker that cannot serve it yet."""
    if not REUSEPORT:
        return parent
    sock = socket.socket(parent.family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    cap_send_buffer(sock)
    sock.bind(parent.getsockname())
    parent.close()
    return sock


@dataclass
class _Worker:
    pid: int
    started_at: float
    serving: bool = False


_SIGNAL_NAMES = {sig.value: sig.name for sig in signal.Signals}


def _describe(status: int) -> str:
    """``exit code 1``, or ``exit code -9 (SIGKILL)`` for a worker killed by a signal."""
    code = os.waitstatus_to_exitcode(status)
    return f"exit code {code}" + (f" ({_SIGNAL_NAMES[-code]})" if -code in _SIGNAL_NAMES else "")


def _woken(signum: int, frame: object) -> None:
    """The handler of the signals the parent waits for: their number reaches the wakeup pipe."""


class Supervisor:
    """Starts ``count`` workers running ``body`` on ``sock`` and keeps that many running."""

    HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP)

    def __init__(self, count: int, sock: socket.socket, body: WorkerBody):
        self.count, self.sock, self.body = count, sock, body
        self.parent = os.getpid()
        self.workers: dict[int, _Worker] = {}
        self.restarts: list[float] = []  # when to start a replacement (monotonic)
        self.stop_deadline: float | None = None
        self.exit_code = 0
        self.announced = False  # all workers have served once: from now on, a dead one is replaced
        self.ready_lines = b""  # what workers wrote on the ready pipe, up to a partial line
        self.fresh: set[int] = set()  # after SIGHUP: the new workers, until all of them serve
        self.retiring: set[int] = set()  # workers told to stop because new ones replace them
        self.leaving: set[int] = set()  # replaced workers told to leave the port, not yet gone from it
        self.leave_deadline: float | None = None  # when to stop them even if some have not said so

    def run(self, on_serving: Callable[[list[int]], None]) -> int:
        """Supervise until told to stop; ``on_serving(pids)`` is called once all workers first serve.
        Returns the exit code: 0 after SIGTERM/SIGINT, 1 if a worker failed to start."""
        self.wake_r, self.wake_w = os.pipe()
        self.ready_r, self.ready_w = os.pipe()
        for fd in (self.wake_r, self.wake_w, self.ready_r):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        previous = {sig: signal.signal(sig, _woken) for sig in self.HANDLED}
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self.wake_r, selectors.EVENT_READ)
                selector.register(self.ready_r, selectors.EVENT_READ)
                for _ in range(self.count):
                    self._start()
                while self.workers or (self.restarts and self.stop_deadline is None):
                    selector.select(self._timeout())
                    self._handle_signals()
                    self._handle_ready()
                    self._retire_replaced()
                    if not self.announced and self.stop_deadline is None and self._all_serving():
                        self.announced = True
                        on_serving(sorted(self.workers))
                    self._tick()
        finally:
            signal.set_wakeup_fd(-1)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for fd in (self.wake_r, self.wake_w, self.ready_r, self.ready_w):
                os.close(fd)
        return self.exit_code

    def _all_serving(self) -> bool:
        return len(self.workers) == self.count and all(w.serving for w in self.workers.values())

    def _timeout(self) -> float | None:
        deadlines = [self.stop_deadline] if self.stop_deadline is not None else list(self.restarts)
        if self.leave_deadline is not None:
            deadlines.append(self.leave_deadline)
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def _handle_signals(self) -> None:
        try:
            received = os.read(self.wake_r, 512)
        except BlockingIOError:
            return
        for signum in received:
            if signum == signal.SIGCHLD:
                self._reap()
            elif signum == signal.SIGHUP:
                self._replace()
            else:
                self._stop(f"{signal.Signals(signum).name} received")

    def _handle_ready(self) -> None:
        try:
            self.ready_lines += os.read(self.ready_r, 4096)
        except BlockingIOError:
            return
        *lines, self.ready_lines = self.ready_lines.split(b"\n")
        for line in lines:
            if line.startswith(b"left "):
                self.leaving.discard(int(line[5:]))
            elif (worker := self.workers.get(int(line))) is not None:
                worker.serving = True
        self._stop_left()

    def _replace(self) -> None:
        """SIGHUP: start as many new workers as are asked for; the old ones stop once all serve."""
        if self.stop_deadline is not None or not self.announced or self.fresh:
            log.warning("SIGHUP received while the workers are starting, stopping or being replaced: ignored")
            return
        self.fresh = {self._start() for _ in range(self.count)}
        log.info("SIGHUP received: started workers %s; the old ones stop once they all serve", sorted(self.fresh))

    def _retire_replaced(self) -> None:
        if not self.fresh or not all(self.workers[pid].serving for pid in self.fresh):
            return
        old = sorted(set(self.workers) - self.fresh - self.retiring)
        print(f"{len(self.fresh)} new workers serving, pids {' '.join(map(str, sorted(self.fresh)))}", flush=True)
        log.info("workers %s replaced by %s: stopping them", old, sorted(self.fresh))
        # Two steps: every old worker leaves the port first, and only then are they stopped (their
        # readers told 1012), so that no reader comes back to an old worker still listening and
        # is told to go a second time.
        for pid in old:
            _signal(pid, LEAVE_PORT)
        self.retiring.update(old)
        self.leaving.update(old)
        self.leave_deadline = time.monotonic() + LEAVE_TIMEOUT
        self.fresh = set()
        self.restarts.clear()  # a replacement due for an old worker that died: the new ones are all there
        self._stop_left()

    def _stop_left(self) -> None:
        """Stop the replaced workers once all have left the port (or some never said so in time)."""
        if self.leave_deadline is None:
            return
        self.leaving &= set(self.workers)
        if self.leaving and time.monotonic() < self.leave_deadline:
            return
        if self.leaving:
            log.warning(
                "workers %s did not leave the port within %gs: stopping them", sorted(self.leaving), LEAVE_TIMEOUT
            )
        self.leaving = set()
        self.leave_deadline = None
        for pid in sorted(self.retiring & set(self.workers)):
            _signal(pid, signal.SIGTERM)

    def _reap(self) -> None:
        """Collect the workers that exited (only those: the embedded Redis is reaped by its owner)."""
        for pid, worker in list(self.workers.items()):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if not done:
                continue
            del self.workers[pid]
            worker_exited(pid)
            if pid in self.retiring:
                self.retiring.discard(pid)
                log.info("replaced worker %d exited with %s", pid, _describe(status))
                continue
            if self.stop_deadline is not None:
                continue
            if pid in self.fresh:
                # A new worker that cannot start: keep the old ones, which still serve.
                log.error(
                    "new worker %d exited with %s before serving; keeping workers %s",
                    pid,
                    _describe(status),
                    sorted(set(self.workers) - self.fresh),
                )
                self.fresh.discard(pid)
                for other in self.fresh:
                    _signal(other, signal.SIGTERM)
                self.retiring.update(self.fresh)
                self.fresh = set()
                continue
            if not self.announced:
                log.error("worker %d exited with %s while the workers were starting; stopping", pid, _describe(status))
                self.exit_code = 1
                self._stop("a worker failed to start")
                continue
            log.warning("worker %d exited with %s; starting another", pid, _describe(status))
            lived = time.monotonic() - worker.started_at
            self.restarts.append(time.monotonic() + (RESTART_DELAY if lived < RESTART_DELAY else 0.0))

    def _tick(self) -> None:
        self._stop_left()
        now = time.monotonic()
        if self.stop_deadline is not None:
            if now >= self.stop_deadline and self.workers:
                log.warning("workers %s did not stop within %gs; killing them", sorted(self.workers), STOP_TIMEOUT)
                for pid in self.workers:
                    _signal(pid, signal.SIGKILL)
                self.stop_deadline = now + STOP_TIMEOUT  # they die now; reaped on their SIGCHLD
            return
        due = [when for when in self.restarts if when <= now]
        self.restarts = [when for when in self.restarts if when > now]
        for _ in due:
            pid = self._start()
            log.info("worker %d started", pid)

    def _stop(self, why: str) -> None:
        if self.stop_deadline is not None:
            return
        log.info("%s: stopping %d workers", why, len(self.workers))
        self.stop_deadline = time.monotonic() + STOP_TIMEOUT
        self.restarts.clear()
        self.fresh = set()  # a replacement under way: the new workers stop with the others
        for pid in self.workers:
            # SIGTERM, whatever the parent got: a second SIGINT would make uvicorn skip its
            # graceful shutdown, and Ctrl-C in a terminal already sent every worker one.
            _signal(pid, signal.SIGTERM)

    def _start(self) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._become_worker()  # never returns
        self.workers[pid] = _Worker(pid, time.monotonic())
        return pid

    def _become_worker(self) -> None:
        code = 1
        try:
            signal.set_wakeup_fd(-1)  # the parent's pipe; the worker's event loop sets its own
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for fd in (self.wake_r, self.wake_w, self.ready_r):
                os.close(fd)
            die_with_parent()
            if os.getppid() != self.parent:  # it died before the line above
                os._exit(1)

            def ready() -> None:
                os.write(self.ready_w, b"%d\n" % os.getpid())

            sock = _worker_socket(self.sock)

            def leave(signum: int, frame: object) -> None:
                leave_port(sock)
                os.write(self.ready_w, b"left %d\n" % os.getpid())

            signal.signal(LEAVE_PORT, leave)
            self.body(sock, ready)
            code = 0
        except SystemExit as exit:
            if isinstance(exit.code, int) or exit.code is None:
                code = exit.code or 0
            else:
                print(exit.code, file=sys.stderr)
        except BaseException:
            log.exception("worker %d failed", os.getpid())
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)  # never the parent's cleanup (the embedded Redis is the parent's)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
