"""``liveblog blogs|tokens|post|follow``: the admin commands, run against a service over its API
with :mod:`liveblog.client`.

Each prints JSON (one object, or one line per item) and exits with a code scripts can rely on:
0 done, 1 the API refused (its message on stderr, one line), 2 bad usage, 3 the service could not
be reached or stayed unavailable (503) after every retry.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from .client import BlogCreate, Client, EntryCreate, LiveblogError, TokenCreate, Viewers

DEFAULT_URL = "http://127.0.0.1:8000"
LOCAL_TOKEN = Path("liveblog-data") / "admin-token"
EXIT_API, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_encode = msgspec.json.Encoder().encode


def add_commands(commands: Any) -> None:
    """Add the admin commands to ``liveblog``'s subparsers; each sets ``run`` to its function."""
    remote = argparse.ArgumentParser(add_help=False)
    remote.add_argument("--url", help=f"the service (LIVEBLOG_URL, default {DEFAULT_URL})")
    remote.add_argument("--token", help=f"bearer token (LIVEBLOG_TOKEN; on a loopback URL, default ./{LOCAL_TOKEN})")

    def group(name: str, what: str) -> Any:
        parser = commands.add_parser(name, help=what, description=what.capitalize() + ".")
        return parser.add_subparsers(dest="action", required=True)

    def command(group: Any, name: str, what: str, function: Callable[..., Any]) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = group.add_parser(name, parents=[remote], help=what)
        parser.set_defaults(main=functools.partial(run, function))
        return parser

    blogs = group("blogs", "create, list or end blogs")
    create = command(blogs, "create", "create a blog; prints it", _create_blog)
    create.add_argument("id", help="the blog's slug, e.g. ukraine")
    create.add_argument("--title", required=True)
    create.add_argument("--description", default="")
    create.add_argument("--language", default="en")
    create.add_argument("--timezone", default="UTC", help="IANA name for its pages' times")
    create.add_argument("--embed-origin", action="append", default=[], help="an origin that may embed it (repeat)")
    command(blogs, "list", "one JSON line per blog", _list_blogs)
    command(blogs, "end", "end a blog's coverage; prints it", _end_blog).add_argument("id")

    tokens = group("tokens", "mint, list or revoke tokens")
    mint = command(tokens, "mint", "mint a token; prints it with its secret, once", _mint)
    mint.add_argument("--name", required=True, help="the byline its entries get")
    mint.add_argument("--role", required=True, choices=["editor", "reporter", "contributor"])
    mint.add_argument("--blog", action="append", default=[], help="a blog it may write to (repeat)")
    command(tokens, "list", "one JSON line per token", _list_tokens)
    command(tokens, "revoke", "revoke a token, at once", _revoke).add_argument("id")

    post = commands.add_parser(
        "post", parents=[remote], help="post an entry", description="Post an entry; prints it. Retried safely."
    )
    post.add_argument("blog", help="the blog's id")
    post.add_argument("file", nargs="?", type=Path, help="the body (default: stdin)")
    post.add_argument("--format", choices=["markdown", "html", "text"], default="markdown", help="default markdown")
    post.add_argument("--headline", help="plain text, above the body")
    post.add_argument("--key-event", action="store_true", help="mark it a key event (in the blog's summary)")
    post.add_argument("--pin", action="store_true", help="pin it above the stream")
    post.add_argument("--idempotency-key", help="reuse one to make a rerun of this command post nothing new")
    post.set_defaults(main=functools.partial(run, _post))

    follow = commands.add_parser(
        "follow",
        parents=[remote],
        help="print live events as JSON lines",
        description="Print the blog's snapshot and then each event, one JSON line each, resuming after disconnects.",
    )
    follow.add_argument("blog", help="the blog's id")
    follow.add_argument("--cursor", help="start after this cursor")
    follow.add_argument("--cursor-file", type=Path, help="resume from and keep the last cursor in this file")
    follow.set_defaults(main=functools.partial(run, _follow))


def run(command: Callable[[Client, argparse.Namespace], None], args: argparse.Namespace) -> int:
    """Run the admin ``command`` with its parsed ``args``; its exit code. Errors are one line on
    stderr. (Each subcommand's ``main`` default is this, with its command bound.)"""
    logging.basicConfig(format="liveblog: %(message)s", level=logging.WARNING)  # retries and reconnects
    url = args.url or os.environ.get("LIVEBLOG_URL") or DEFAULT_URL
    try:
        with Client(url, _token(args.token, url)) as client:
            command(client, args)
    except LiveblogError as exc:
        print(f"liveblog: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE if exc.code == "unreachable" or exc.status == 503 else EXIT_API
    except OSError as exc:  # a body file or cursor file
        print(f"liveblog: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return 0


def _token(given: str | None, url: str) -> str | None:
    """The token to send. The local admin token is only ever sent to this machine's own service."""
    token = given or os.environ.get("LIVEBLOG_TOKEN")
    if token:
        return token
    if urlsplit(url).hostname in _LOOPBACK and LOCAL_TOKEN.exists():
        return LOCAL_TOKEN.read_text().strip()
    return None


def _print(value: object) -> None:
    sys.stdout.write(_encode(value).decode() + "\n")
    sys.stdout.flush()


def _create_blog(client: Client, args: argparse.Namespace) -> None:
    create = BlogCreate(
        id=args.id,
        title=args.title,
        description=args.description,
        language=args.language,
        timezone=args.timezone,
        embed_origins=args.embed_origin,
    )
    _print(client.create_blog(create))


def _list_blogs(client: Client, args: argparse.Namespace) -> None:
    for blog in client.list_blogs():
        _print(blog)


def _end_blog(client: Client, args: argparse.Namespace) -> None:
    _print(client.end_blog(args.id))


def _mint(client: Client, args: argparse.Namespace) -> None:
    _print(client.mint_token(TokenCreate(name=args.name, role=args.role, blogs=args.blog)))


def _list_tokens(client: Client, args: argparse.Namespace) -> None:
    for token in client.list_tokens():
        _print(token)


def _revoke(client: Client, args: argparse.Namespace) -> None:
    client.revoke_token(args.id)


def _post(client: Client, args: argparse.Namespace) -> None:
    body = args.file.read_text() if args.file else sys.stdin.read()
    entry = EntryCreate(
        body=body, body_format=args.format, headline=args.headline, key_event=args.key_event, pinned=args.pin
    )
    _print(client.post(args.blog, entry, idempotency_key=args.idempotency_key))


def _follow(client: Client, args: argparse.Namespace) -> None:
    path: Path | None = args.cursor_file
    cursor = args.cursor
    if cursor is None and path is not None and path.exists():
        cursor = path.read_text().strip() or None
    stop = _Stop()
    for message in client.follow(args.blog, cursor):
        if isinstance(message, Viewers):
            continue
        with stop.deferred():
            _print(message)
            if path is not None:
                _save(path, message.cursor)


class _Stop:
    """SIGINT and SIGTERM end ``follow`` with exit 0, but never between printing a line and saving
    its cursor: a follow stopped and started again prints each event once. (Masking the signals
    would not do: websockets' sync client reads in a thread of its own, which would take them.)"""

    def __init__(self) -> None:
        self.busy = self.asked = False
        signal.signal(signal.SIGINT, self._signalled)
        signal.signal(signal.SIGTERM, self._signalled)

    def _signalled(self, signum: int, frame: object) -> None:
        if not self.busy:
            raise SystemExit(0)
        self.asked = True

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self.busy = True
        try:
            yield
        finally:
            self.busy = False
        if self.asked:
            raise SystemExit(0)


def _save(path: Path, cursor: str) -> None:
    """Replace the cursor file at once: a crash leaves the old cursor or the new, never half."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(cursor + "\n")
    os.replace(temporary, path)
