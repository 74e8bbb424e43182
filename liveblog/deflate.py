"""permessage-deflate (RFC 7692) for the live channel: the offer, the answer, and both directions.

Without I/O. For the WebSocket: :func:`negotiate` reads the client's ``Sec-WebSocket-Extensions`` offers and returns
the :class:`Agreement` (or None: the connection goes uncompressed, the handshake does not fail);
:func:`compress` makes one message's payload; :class:`Inflater` checks one compressed message from
the client within a size bound.

The answer always says ``server_no_context_takeover`` (RFC 7692 §7.1.1.1 lets a server say it
unasked): every message is compressed on its own, so one compression of an event serves every
reader whose window is at least as large, and no reader holds a compressor (about 256 KiB of
zlib state each). It always says ``client_no_context_takeover`` too (§7.1.1.2, equally allowed
unasked): each message a reader sends is inflated on its own, so no reader holds an inflater
between messages (readers send nearly nothing, and 10k idle inflaters would be 400 MiB).

For Server-Sent Events (``Content-Encoding: gzip``): :func:`sync_block`, :func:`stored_block`
and :func:`gzip_trailer` make one gzip stream per reader out of events compressed once (below).
"""

from __future__ import annotations

import re
import struct
import zlib
from typing import NamedTuple

NAME = "permessage-deflate"
#: What RFC 7692 §7.2.1 strips from the end of each compressed message, and the inflater adds back.
TAIL = b"\x00\x00\xff\xff"
#: Messages shorter than this are sent uncompressed (RSV1 clear; RFC 7692 §6 allows it per
#: message): the viewer count (31 bytes) would grow, 80 bytes save 7 (bench/deflate_costs.py).
MIN_SIZE = 100
#: zlib's default level. Level 1 takes 10-15 % less time for 1-2 % more bytes on entries
#: (bench/deflate_costs.py), but the time is per event (15-35 µs), not per reader.
LEVEL = 6
#: The window the server compresses with when the client sets none: zlib's largest.
MAX_WINDOW_BITS = 15
#: zlib cannot compress raw deflate with an 8-bit window (it would use 9, which a client holding
#: 256 bytes could not read back): an offer that asks for 8 is declined.
MIN_WINDOW_BITS = 9

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_PARAM = re.compile(r'\s*([^\s=;,"]+)\s*(?:=\s*("[^"]*"|[^\s;,"]+))?\s*')
_BITS = re.compile(r"[1-9][0-9]?")


class Agreement(NamedTuple):
    """What one connection agreed on."""

    #: The window our messages are compressed with (9-15): messages compressed once for a window
    #: serve every reader that agreed on that window.
    window_bits: int
    #: The ``Sec-WebSocket-Extensions`` value of the handshake's response.
    response: str


class OfferError(ValueError):
    """An offer (or the whole header) that cannot be accepted as written."""


def negotiate(values: list[str]) -> Agreement | None:
    """The first permessage-deflate offer among the ``Sec-WebSocket-Extensions`` header
    ``values`` that can be honoured, or None (none made, or none valid: RFC 7692 §5 says to
    decline, not to fail). A header that does not parse is declined whole."""
    try:
        offers = [offer for value in values for offer in _extensions(value)]
    except OfferError:
        return None
    for name, params in offers:
        if name.lower() != NAME:
            continue
        try:
            return _accept(params)
        except OfferError:
            continue
    return None


def _accept(params: list[tuple[str, str | None]]) -> Agreement:
    seen: set[str] = set()
    window_bits = MAX_WINDOW_BITS
    answer = [NAME, "server_no_context_takeover", "client_no_context_takeover"]
    for name, value in params:
        name = name.lower()
        if name in seen:
            raise OfferError(f"{name} given twice")
        seen.add(name)
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                raise OfferError(f"{name} takes no value")
        elif name == "server_max_window_bits":
            window_bits = _window_bits(value)
            if window_bits < MIN_WINDOW_BITS:
                raise OfferError("an 8-bit window cannot be honoured")
            answer.append(f"server_max_window_bits={window_bits}")
        elif name == "client_max_window_bits":
            if value is not None:
                _window_bits(value)  # only checked: our inflater takes any window up to 15
        else:
            raise OfferError(f"unknown parameter {name}")
    return Agreement(window_bits, "; ".join(answer))


def _window_bits(value: str | None) -> int:
    if value is None or not _BITS.fullmatch(value) or not 8 <= int(value) <= 15:
        raise OfferError(f"a window size is 8 to 15 bits, not {value!r}")
    return int(value)


def _extensions(value: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """``Sec-WebSocket-Extensions`` (RFC 6455 §9.1) as ``(name, [(param, value or None)])``."""
    extensions = []
    for item in _split(value, ","):
        if not item.strip():
            continue  # empty list elements are allowed (RFC 7230 §7)
        name, *params = _split(item, ";")
        name = name.strip()
        if not _TOKEN.fullmatch(name):
            raise OfferError(f"not an extension name: {name!r}")
        parsed: list[tuple[str, str | None]] = []
        for param in params:
            match = _PARAM.fullmatch(param)
            if match is None or not _TOKEN.fullmatch(match[1]):
                raise OfferError(f"not a parameter: {param!r}")
            raw = match[2]
            if raw is not None:
                if raw.startswith('"'):
                    raw = raw[1:-1]
                if not _TOKEN.fullmatch(raw):  # RFC 6455 §9.1: a value, even quoted, is a token
                    raise OfferError(f"not a token: {raw!r}")
            parsed.append((match[1], raw))
        extensions.append((name, parsed))
    return extensions


def _split(text: str, separator: str) -> list[str]:
    """``text`` split at ``separator`` outside double quotes; unbalanced quotes are refused."""
    parts, start, quoted = [], 0, False
    for index, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append(text[start:index])
            start = index + 1
    if quoted:
        raise OfferError("unbalanced quotes")
    parts.append(text[start:])
    return parts


def compress(payload: bytes, window_bits: int) -> bytes | None:
    """``payload`` compressed as one message (no context taken over), or None when it is not
    worth it: under :data:`MIN_SIZE`, or no smaller compressed."""
    if len(payload) < MIN_SIZE:
        return None
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -window_bits)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    # Z_SYNC_FLUSH ends with an empty stored block, 00 00 ff ff, which RFC 7692 §7.2.1 removes.
    data = data[:-4]
    return data if len(data) < len(payload) else None


class InflateError(Exception):
    """A compressed client message that is corrupt, or that inflates past the limit."""

    def __init__(self, too_big: bool, reason: str):
        super().__init__(reason)
        self.too_big = too_big
        self.reason = reason


class Inflater:
    """One compressed message from the client, fragment by fragment: inflated to check it, and
    thrown away (the channel ignores what readers send). At most ``limit`` bytes of output are
    ever produced, so a small message that would inflate to gigabytes (a "zip bomb") costs
    ``limit`` bytes and an :class:`InflateError`, not memory."""

    __slots__ = ("_zlib", "_left")

    def __init__(self, limit: int):
        # 15: the largest window, which reads a message compressed with any smaller one.
        self._zlib = zlib.decompressobj(-MAX_WINDOW_BITS)
        self._left = limit

    def feed(self, data: bytes, last: bool) -> None:
        """Inflate the next fragment (``last``: the message ends with it)."""
        if last:
            data += TAIL
        try:
            out = self._zlib.decompress(data, self._left + 1)
        except zlib.error as exc:
            raise InflateError(False, f"bad compressed data: {exc}") from None
        self._left -= len(out)
        if self._left < 0 or self._zlib.unconsumed_tail:
            raise InflateError(True, "a message inflates past the limit")


# --- gzip streams for Server-Sent Events -------------------------------------------------------------
#
# An SSE response is one gzip stream per reader, yet each event is compressed once for all of
# them: a deflate stream is a run of blocks, and a block that refers to nothing before it (a
# message compressed on its own, ended with a sync flush so that the next starts on a byte) is
# as valid in the middle of any reader's stream as at its start. What is the reader's own (the
# retry line, heartbeats, the closing record) goes in stored blocks, and each reader keeps only
# the CRC-32 and length of what it was sent, for the trailer.

#: A gzip member's header (RFC 1952 §2.3): deflate, no name, no time, unknown OS.
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
#: The last block: empty, fixed Huffman codes, BFINAL set.
_FINAL_BLOCK = b"\x03\x00"


def sync_block(data: bytes) -> bytes:
    """``data`` compressed on its own into deflate blocks that end on a byte boundary (with the
    sync flush's empty stored block), to be placed anywhere in a deflate stream."""
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -MAX_WINDOW_BITS)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


def stored_block(data: bytes) -> bytes:
    """``data`` as stored (uncompressed) deflate blocks, non-final (RFC 1951 §3.2.4)."""
    out = []
    for start in range(0, len(data), 0xFFFF):
        part = data[start : start + 0xFFFF]
        out.append(b"\x00" + struct.pack("<HH", len(part), 0xFFFF ^ len(part)) + part)
    return b"".join(out)


def gzip_trailer(crc: int, size: int) -> bytes:
    """The end of a gzip stream whose uncompressed bytes had ``crc`` (CRC-32) and ``size``."""
    return _FINAL_BLOCK + struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF)
