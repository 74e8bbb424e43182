"""Cursors: the position of a reader in a blog's change log, as an opaque string.

A cursor is ``(epoch, stream id)``. The epoch names one incarnation of the log; if Redis lost the
log, the blog gets a new epoch and every older cursor is recognised as unusable instead of
silently skipping what was lost. Clients only store cursors and send them back.
"""

from __future__ import annotations

import re
import time
from typing import NamedTuple

_STREAM_ID = re.compile(r"^([0-9]{1,20})-([0-9]{1,20})\Z")
_EPOCH = re.compile(r"^[a-z0-9]{1,16}\Z")
MAX_LENGTH = 64


class BadCursor(ValueError):
    """The text is not a cursor this service issued."""


class Cursor(NamedTuple):
    epoch: str
    stream_id: str

    def __str__(self) -> str:
        return f"{self.epoch}.{self.stream_id}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        if len(text) > MAX_LENGTH:
            raise BadCursor("cursor is too long")
        epoch, dot, stream_id = text.partition(".")
        match = _STREAM_ID.match(stream_id)
        if not dot or not _EPOCH.match(epoch) or not match or max(map(int, match.groups())) >= 2**64:
            raise BadCursor("not a cursor issued by this service")
        return cls(epoch, stream_id)


def stream_id_key(stream_id: str) -> tuple[int, int]:
    """Sort key of a Redis stream id (``"ms-seq"``), for comparing positions without Redis."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq)


def waited(stream_id: str, offset: float = 0.0) -> float:
    """Seconds since Redis stamped ``stream_id`` (its ms part is the node's clock), by our clock,
    for a node whose clock is ``offset`` seconds ahead of ours; never negative."""
    return max(0.0, time.time() + offset - stream_id_key(stream_id)[0] / 1000)
