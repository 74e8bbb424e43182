"""The ``export``, ``import`` and ``archive`` subcommands, each talking to Redis directly as
``serve`` does: ``--redis-url`` (``LIVEBLOG_REDIS_URL``), or the embedded Redis kept in the data
directory, started for the command and stopped after it. Failures are one line on stderr and a
non-zero exit, never a traceback."""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import functools
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import redis.exceptions

from . import archive, export
from .config import Settings
from .embedded import EmbeddedRedis
from .storage import Conflict, NotFound, NotReplicated
from .store import Store
from .topology import close, connect

log = logging.getLogger("liveblog")


def add_commands(commands: Any) -> None:
    """Add the subcommands to ``commands`` (``ArgumentParser.add_subparsers()``)."""

    def where(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--redis-url", help="the service's Redis (LIVEBLOG_REDIS_URL)")
        parser.add_argument("--data-dir", type=Path, help="else the embedded Redis kept here (LIVEBLOG_DATA_DIR)")

    out = commands.add_parser("export", help="write a blog as JSON Lines to stdout")
    out.add_argument("blog", help="the blog's id")
    out.add_argument("--drafts", action="store_true", help="include drafts, submissions and scheduled entries")
    where(out)
    out.set_defaults(main=functools.partial(run_command, _export))
    into = commands.add_parser("import", help="restore a blog from an export on stdin (idempotent)")
    where(into)
    into.set_defaults(main=functools.partial(run_command, _import))
    static = commands.add_parser("archive", help="write an ended blog as static files")
    static.add_argument("blog", help="the blog's id")
    static.add_argument("--to", type=Path, required=True, help="the directory to write into")
    where(static)
    static.set_defaults(main=functools.partial(run_command, _archive))


def run_command(
    command: Callable[[Settings, argparse.Namespace], Coroutine[None, None, None]], args: argparse.Namespace
) -> None:
    """Run the store ``command`` with its parsed ``args``; errors end the program with one line.
    (Each subcommand's ``main`` default is this, with its command bound.)"""
    settings = Settings.from_env(redis_url=args.redis_url, data_dir=args.data_dir)
    try:
        asyncio.run(command(settings, args))
    except (export.BadExport, archive.ArchiveError, NotFound, Conflict, NotReplicated) as exc:
        raise SystemExit(f"liveblog {args.command}: {exc}") from None
    except KeyboardInterrupt:
        raise SystemExit(f"liveblog {args.command}: interrupted") from None
    except (redis.exceptions.RedisError, OSError) as exc:
        # One line for the operator; the traceback only for whoever turns on debug logging.
        log.debug("liveblog %s failed", args.command, exc_info=True)
        raise SystemExit(f"liveblog {args.command}: {type(exc).__name__}: {exc}") from None
    raise SystemExit(0)


@asynccontextmanager
async def _redis_url(settings: Settings) -> AsyncIterator[str]:
    if settings.redis_url:
        yield settings.redis_url
        return
    data_dir = settings.data_dir
    if not (data_dir / "redis").is_dir():
        raise SystemExit(f"liveblog: no embedded Redis in {data_dir.resolve()}; give --data-dir or --redis-url")
    fd = os.open(data_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(
                f"liveblog: a liveblog serve uses {data_dir.resolve()}; stop it, or pass its Redis as --redis-url"
            ) from None
        embedded = EmbeddedRedis(data_dir / "redis")
        try:
            embedded.start()
        except RuntimeError as exc:
            raise SystemExit(f"liveblog: the embedded Redis in {data_dir.resolve()} did not start: {exc}") from None
        try:
            yield embedded.url
        finally:
            embedded.stop()
    finally:
        os.close(fd)


@asynccontextmanager
async def _store(settings: Settings) -> AsyncIterator[Store]:
    async with _redis_url(settings) as url:
        client = await connect(url)
        try:
            yield Store(
                client,
                log_maxlen=settings.log_maxlen,
                versions_kept=settings.versions_kept,
                min_replicas=settings.redis_min_replicas,
                wait_ms=settings.redis_wait_ms,
            )
        finally:
            await close(client)


async def _export(settings: Settings, args: argparse.Namespace) -> None:
    async with _store(settings) as store:
        await export.export(store, args.blog, args.drafts, sys.stdout.buffer)


async def _import(settings: Settings, args: argparse.Namespace) -> None:
    # Every line is read and checked before Redis is touched: a bad file changes nothing.
    parsed = export.parse(export.read_lines(sys.stdin.buffer))
    async with _store(settings) as store:
        changed = await export.restore(store, parsed)
    print(
        f"Imported blog {parsed.blog.id!r}: {len(parsed.entries)} entries, {changed} records changed",
        file=sys.stderr,
        flush=True,
    )


async def _archive(settings: Settings, args: argparse.Namespace) -> None:
    async with _redis_url(settings) as url:
        written = await archive.archive(settings, url, args.blog, args.to)
    print(f"Archived blog {args.blog!r}: {len(written)} files in {args.to.resolve()}", file=sys.stderr, flush=True)
