"""The command line: ``liveblog serve`` runs the service, with an embedded Redis unless
``LIVEBLOG_REDIS_URL`` is set."""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import functools
import gc
import logging
import os
import secrets
import shutil
import signal
import socket
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path

from . import __version__, admin, logs, metrics, workers
from .commands import add_commands
from .config import Settings
from .doors import raise_descriptor_limit
from .embedded import EmbeddedRedis, private_dir
from .server import bind, build

#: Allocations between young collections (CPython's default is 700). Under a few hundred posts a
#: second each young collection promotes whatever requests are in flight at that moment, and
#: enough promotions trigger a full collection, which walks every reader's objects (20-50 ms at
#: 10k readers): at 700, one about every second or two, each a stall in the fan-out's tail.
#: Collecting young objects 14x less often promotes about 14x fewer, for young collections of
#: ~10k objects (about a millisecond). Measured in bench/RESULTS.md ("many blogs").
GC_YOUNG_THRESHOLD = 10_000

#: How far a stopping process lowers its CPU priority (its niceness, of 19) once it has told its
#: readers to come back. What it still has to do (close 10k connections, write their access-log
#: lines, finish requests in flight) can wait for a free core; the new process seating those
#: readers, often on the same core, cannot. In a handover the old process took 1.1-1.6 s of the
#: core while the new one seated its readers (bench/RESULTS.md, "a deploy without a gap").
STOPPING_NICENESS = 10

log = logging.getLogger("liveblog")


def _lock_data_dir(data_dir: Path) -> None:
    """Claim ``data_dir`` for this process (made, private, if it is new), or stop with one line
    saying who has it: two services on one data directory would run two Redis on one AOF."""
    is_new = not data_dir.exists()
    private_dir(data_dir)
    where = data_dir.resolve()
    fd = os.open(data_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise SystemExit(
            f"liveblog: another liveblog serve (pid {holder}) uses the data directory {where}; "
            "stop it, or give this one its own --data-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _held_locks.append(fd)  # held, open, until the process exits
    print(f"Data directory: {where}" + (" (new)" if is_new else ""), flush=True)


_held_locks: list[int] = []


def _listen(settings: Settings) -> socket.socket:
    """The service's port, bound before anything starts; a port in use is one line and exit 1."""
    try:
        if settings.workers > 1:
            return workers.listen(settings.host, settings.port, settings.backlog, share=bool(settings.reuse_port))
        return bind(settings.host, settings.port, settings.backlog, reuse_port=bool(settings.reuse_port))
    except OSError as exc:
        raise SystemExit(
            f"liveblog: cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc} "
            "(is something else on that port? choose another with --port or LIVEBLOG_PORT; "
            "to replace a liveblog serve without a gap, start both with --reuse-port)"
        ) from None


def _needs_data_dir(settings: Settings) -> bool:
    """Whether this process must hold the data directory alone: it runs the embedded Redis, or
    may create the admin token there. With ``--reuse-port`` an old and a new process share the
    directory while they hand over; they share a Redis of the operator's, and read a token that
    exists already."""
    if not settings.redis_url:
        return True
    if settings.admin_token:
        return False
    return not (settings.reuse_port and (settings.data_dir / "admin-token").exists())


def metrics_dir(settings: Settings) -> Path:
    """Where ``--workers N`` share their metrics: one directory per group. With ``--reuse-port``
    two groups overlap during a handover, and each empties its directory when it starts."""
    name = f"metrics-{os.getpid()}" if settings.reuse_port else "metrics"
    return settings.data_dir / name


def _admin_token(settings: Settings) -> str:
    """The configured admin token, or the one kept in the data dir (made and printed once)."""
    if settings.admin_token:
        return settings.admin_token
    path = settings.data_dir.resolve() / "admin-token"
    if path.exists():
        print(f"Admin token: in {path}", flush=True)
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    private_dir(settings.data_dir)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(token + "\n")
    print(f"Admin token (shown once; kept in {path}):\n    {token}", flush=True)
    return token


async def _serve(
    settings: Settings,
    redis_url: str,
    sockets: list[socket.socket] | None = None,
    on_serving: Callable[[], None] | None = None,
) -> None:
    """Run the app until a signal stops it: on ``settings``' address, or on ``sockets`` (a worker),
    announcing it serves with the URL line, or with ``on_serving`` (a worker tells its parent)."""
    if sockets is None:
        sockets = [bind(settings.host, settings.port, settings.backlog)]
    # log_config=None: uvicorn's loggers go through the handler logs.configure() installed.
    server = build(settings, redis_url, on_readers_told=_yield_cpu, log_config=None)
    serving = asyncio.create_task(server.serve(sockets=sockets))
    while not server.started and not serving.done():
        await asyncio.sleep(0.02)
    if server.started:
        # What exists now (modules, the app) lives as long as the process: keep the collector from
        # walking it again on every full collection, which at 5k readers stalled the loop ~0.4 s.
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        if on_serving is None:
            port = sockets[0].getsockname()[1]
            print(f"liveblog is serving on http://{settings.host}:{port}", flush=True)
            print(f"Reporter console: http://{settings.host}:{port}/console", flush=True)
        else:
            on_serving()
    await serving
    if not server.started:
        raise SystemExit(1)


def _yield_cpu() -> None:
    """Lower this process's CPU priority: it is stopping, and every reader has been told so.
    (On Linux ``nice`` is the calling thread's: the event loop's, which does the work.)"""
    try:
        os.nice(STOPPING_NICENESS)
    except OSError as exc:
        log.warning("a stopping process could not lower its CPU priority (it stops all the same): %s", exc)


def _exit_quietly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _run(main: Coroutine[None, None, None]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def _supervise(settings: Settings, redis_url: str, listening: socket.socket) -> int:
    """Run ``settings.workers`` workers on ``listening`` until SIGTERM/SIGINT; the exit code."""

    def worker(sock: socket.socket, ready: Callable[[], None]) -> None:
        # What a single `liveblog serve` runs, on the parent's port; the parent prints the URL.
        signal.signal(signal.SIGTERM, _exit_quietly)
        signal.signal(signal.SIGINT, _exit_quietly)
        _run(_serve(settings, redis_url, [sock], on_serving=ready))

    def serving(pids: list[int]) -> None:
        print(f"{len(pids)} workers serving, pids {' '.join(map(str, pids))}", flush=True)
        print(f"liveblog is serving on http://{settings.host}:{listening.getsockname()[1]}", flush=True)
        print(f"Reporter console: http://{settings.host}:{listening.getsockname()[1]}/console", flush=True)

    return workers.Supervisor(settings.workers, listening, worker).run(serving)


def serve(settings: Settings) -> None:
    raise_descriptor_limit()
    if settings.reuse_port and not settings.redis_url:
        raise SystemExit(
            "liveblog: --reuse-port (LIVEBLOG_REUSE_PORT) needs LIVEBLOG_REDIS_URL: the old and the new "
            "process serve one Redis while they hand over, and an embedded one stops with its process"
        )
    # The port first: one in use fails before anything starts.
    listening = _listen(settings)
    if _needs_data_dir(settings):
        _lock_data_dir(settings.data_dir)
    settings = replace(settings, admin_token=_admin_token(settings))
    embedded = None
    if settings.redis_url:
        redis_url = settings.redis_url
    else:
        embedded = EmbeddedRedis(settings.data_dir / "redis").start()
        redis_url = embedded.url
        print(f"Embedded redis-server: {redis_url} (AOF on, data in {embedded.data_dir})", flush=True)
    # uvicorn handles SIGTERM/SIGINT gracefully, then re-raises the signal once it has stopped;
    # turning that into SystemExit lets the embedded Redis below be shut down cleanly.
    signal.signal(signal.SIGTERM, _exit_quietly)
    signal.signal(signal.SIGINT, _exit_quietly)
    code = 0
    try:
        if settings.workers == 1:
            _run(_serve(settings, redis_url, [listening]))
        else:
            code = _supervise(settings, redis_url, listening)
    finally:
        if embedded is not None:
            embedded.stop()
            print("Embedded redis-server stopped.", flush=True)
        if settings.workers > 1 and settings.reuse_port:
            shutil.rmtree(metrics_dir(settings), ignore_errors=True)  # named after this process: nobody's next
    if code:
        raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="liveblog",
        description="A live-blog backend: reporters post over HTTP, readers get each entry pushed live.",
    )
    parser.add_argument("--version", action="version", version=f"liveblog {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "serve",
        help="run the service",
        description="Run the service. Without LIVEBLOG_REDIS_URL it starts an embedded redis-server "
        "that keeps its data in the data directory.",
    )
    run.add_argument("--host", help="listen address (LIVEBLOG_HOST, default 127.0.0.1)")
    run.add_argument("--port", type=int, help="listen port, 0 for any free one (LIVEBLOG_PORT, default 8000)")
    run.add_argument("--data-dir", type=Path, help="embedded Redis data and admin token (LIVEBLOG_DATA_DIR)")
    run.add_argument("--redis-url", help="use this Redis instead of an embedded one (LIVEBLOG_REDIS_URL)")
    run.add_argument(
        "--log-format", choices=["text", "json"], help="log lines for people or machines (LIVEBLOG_LOG_FORMAT)"
    )
    run.add_argument("--workers", type=int, help="processes serving the port, one Redis (LIVEBLOG_WORKERS, default 1)")
    run.add_argument(
        "--reuse-port",
        action="store_const",
        const=1,
        help="share the port with another liveblog serve --reuse-port, to replace it without a gap; "
        "needs LIVEBLOG_REDIS_URL (LIVEBLOG_REUSE_PORT)",
    )
    run.add_argument(
        "--backlog",
        type=int,
        help="connections the kernel queues before they are accepted (LIVEBLOG_BACKLOG, default 4096)",
    )
    run.set_defaults(main=functools.partial(_serve_command, run))
    admin.add_commands(commands)  # blogs, tokens, post, follow: over the HTTP API
    add_commands(commands)  # export, import, archive: straight to the store
    args = parser.parse_args(argv)
    # Every subcommand's parser set ``main``: the one function that runs it, with its parsed args.
    raise SystemExit(args.main(args))


def _serve_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    settings = Settings.from_env(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        redis_url=args.redis_url,
        log_format=args.log_format,
        workers=args.workers,
        reuse_port=args.reuse_port,
        backlog=args.backlog,
    )
    most = workers.max_workers()
    if not 1 <= settings.workers <= most:
        parser.error(
            f"--workers (LIVEBLOG_WORKERS) must be from 1 to {most} here ({workers.MAX_WORKERS_PER_CPU} per CPU; "
            f"one per CPU is plenty), not {settings.workers}"
        )
    if settings.workers > 1:
        metrics.share_between_workers(metrics_dir(settings))  # may re-execute this command
    logs.configure(settings.log_format, pid=settings.workers > 1)
    serve(settings)


if __name__ == "__main__":
    main()
