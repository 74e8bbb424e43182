"""What goes over the wire to readers: close codes, WebSocket frames, SSE records, and messages
encoded once for every reader.

Server frames are built here (RFC 6455 §5.2: unmasked; RSV1 set on a message compressed with
permessage-deflate, :mod:`liveblog.deflate`) and client frames parsed here, without websockets'
parser, which keeps per-connection state a reader holding its page open for hours does not need.
``tests/test_wire.py`` checks both against websockets' own framing.
"""

from __future__ import annotations

import enum
import struct

from . import deflate
from .cursor import Cursor, stream_id_key
from .storage import LogEvent


class CloseCode(enum.IntEnum):
    """Every close code the live channel sends (the contract's, in DESIGN §3, and RFC 6455's)."""

    NORMAL = 1000
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    INVALID_DATA = 1007
    MESSAGE_TOO_BIG = 1009
    #: An internal error, or a reader that stopped answering pings.
    INTERNAL_ERROR = 1011
    #: The server restarts, or the blog's log was reset: reconnect with the last cursor.
    SERVICE_RESTART = 1012
    ORIGIN_NOT_ALLOWED = 4403
    NO_SUCH_BLOG = 4404
    #: The reader's unsent data passed the limit: reconnect with the last cursor.
    TOO_SLOW = 4408
    TOO_MANY_CONNECTIONS = 4429


class Opcode(enum.IntEnum):
    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


#: Close codes a client may send (RFC 6455 §7.4): the registered ones and 3000-4999.
_CLIENT_CLOSE_CODES = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014))
_OPCODES = frozenset(Opcode)
_MAX_REASON = 123  # a control frame's payload is at most 125 bytes, two of them the code
#: A frame's first byte: the last fragment of its message.
FIN = 0x80
#: A frame's first byte: the message is compressed (the first frame of a compressed message).
RSV1 = 0x40


def frame(opcode: Opcode, payload: bytes, compressed: bool = False) -> bytes:
    """One whole, unmasked server frame; ``compressed``: ``payload`` is deflated (RSV1)."""
    size = len(payload)
    first = FIN | RSV1 | opcode if compressed else FIN | opcode
    if size < 126:
        head = struct.pack("!BB", first, size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", first, 126, size)
    else:
        head = struct.pack("!BBQ", first, 127, size)
    return head + payload


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame with ``code`` and ``reason`` (cut to fit a control frame)."""
    encoded = reason.encode()[:_MAX_REASON].decode(errors="ignore").encode()
    return frame(Opcode.CLOSE, struct.pack("!H", code) + encoded)


PING_FRAME = frame(Opcode.PING, b"")
EMPTY_CLOSE_FRAME = frame(Opcode.CLOSE, b"")


class FrameError(Exception):
    """The client broke RFC 6455; the connection is failed with ``code``."""

    def __init__(self, code: CloseCode, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def unmask(payload: bytes, key: bytes) -> bytes:
    """A client frame's payload XORed with its 4-byte masking key (RFC 6455 §5.3)."""
    size = len(payload)
    if not size:
        return payload
    repeated = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(size, "big")


def parse_client_frames(
    data: bytes, max_size: int, compressed: bool = False
) -> tuple[list[tuple[int, bytes, int]], bytes]:
    """Split bytes a client sent into its complete frames, as ``(opcode, unmasked payload, flags)``
    (``flags``: the :data:`FIN` and :data:`RSV1` bits), and the incomplete rest, to be parsed
    again with what comes next. ``compressed``: permessage-deflate was agreed, so RSV1 may mark
    the first frame of a data message.

    Raises :class:`FrameError` on a protocol violation (unmasked frame, reserved bits, unknown
    opcode, fragmented or oversized control frame) or a frame over ``max_size`` bytes. Fragments
    are returned as they are: this channel ignores text and refuses binary at its first frame.
    """
    frames = []
    offset, end = 0, len(data)
    while end - offset >= 2:
        first, second = data[offset], data[offset + 1]
        opcode, length = first & 0x0F, second & 0x7F
        if first & 0x30 or (first & RSV1 and not (compressed and Opcode.CONT < opcode < Opcode.CLOSE)):
            raise FrameError(CloseCode.PROTOCOL_ERROR, "reserved bits set")
        if not second & 0x80:
            raise FrameError(CloseCode.PROTOCOL_ERROR, "client frames must be masked")
        if opcode not in _OPCODES:
            raise FrameError(CloseCode.PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
        if opcode >= Opcode.CLOSE and (length > 125 or not first & 0x80):
            raise FrameError(CloseCode.PROTOCOL_ERROR, "control frames are unfragmented and at most 125 bytes")
        header = 2 + {126: 2, 127: 8}.get(length, 0)
        if end - offset < header:
            break
        if header > 2:
            length = int.from_bytes(data[offset + 2 : offset + header], "big")
        if length > max_size:
            raise FrameError(CloseCode.MESSAGE_TOO_BIG, f"frames are limited to {max_size} bytes")
        start = offset + header + 4
        if end - start < length:
            break
        frames.append((opcode, unmask(data[start : start + length], data[start - 4 : start]), first & (FIN | RSV1)))
        offset = start + length
    return frames, data[offset:]


def parse_close(payload: bytes) -> int | None:
    """The code of a client's close frame, None if it has none; :class:`FrameError` if invalid."""
    if not payload:
        return None
    if len(payload) < 2:
        raise FrameError(CloseCode.PROTOCOL_ERROR, "a close frame's code takes two bytes")
    code = int.from_bytes(payload[:2], "big")
    if code not in _CLIENT_CLOSE_CODES and not 3000 <= code < 5000:
        raise FrameError(CloseCode.PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameError(CloseCode.INVALID_DATA, "a close reason must be UTF-8") from None
    return code


class Message:
    """One message to readers, encoded once; every reader of a blog gets the same object.

    A message may also be a batch: consecutive events of one blog read together, written to each
    reader at once (one write, not one per event, when the tailer is behind). ``first`` and
    ``position`` are the log positions of its first and last event. A message outside the log (a
    viewer count) has no cursor, and a position before every event's, so that it never moves a
    reader's place in the log.
    """

    __slots__ = ("first", "position", "cursor", "json", "parts", "_ws_frame", "_sse_frame", "_deflated", "_sse_gzip")

    #: The position of messages outside the log.
    EPHEMERAL = (-1, -1)

    def __init__(self, cursor: Cursor | None, json: bytes):
        self.position = self.first = stream_id_key(cursor.stream_id) if cursor is not None else self.EPHEMERAL
        self.cursor = str(cursor).encode() if cursor is not None else None
        self.json = json
        self.parts: tuple[Message, ...] = (self,)
        self._ws_frame: bytes | None = None
        self._sse_frame: bytes | None = None
        self._deflated: dict[int, bytes] | None = None
        self._sse_gzip: bytes | None = None

    @classmethod
    def batch(cls, messages: list[Message]) -> Message:
        if len(messages) == 1:
            return messages[0]
        batch = cls.__new__(cls)
        batch.first, batch.position, batch.cursor = messages[0].position, messages[-1].position, messages[-1].cursor
        batch.parts = tuple(messages)
        batch.json = b"".join(message.json for message in messages)  # what a held batch weighs
        batch._ws_frame = b"".join(message.ws_frame for message in messages)
        batch._sse_frame = b"".join(message.sse_frame for message in messages)
        batch._deflated = batch._sse_gzip = None
        return batch

    @classmethod
    def viewers(cls, count: int) -> Message:
        """How many read the blog now, across every process: not part of the log, no cursor."""
        return cls(None, b'{"type":"viewers","count":%d}' % count)

    @classmethod
    def event(cls, epoch: str, event: LogEvent) -> Message:
        return cls(Cursor(epoch, event.stream_id), event.with_cursor(epoch, b'"type":"event",'))

    @property
    def ws_frame(self) -> bytes:
        """The whole WebSocket text frame: the same bytes for everyone."""
        if self._ws_frame is None:
            self._ws_frame = frame(Opcode.TEXT, self.json)
        return self._ws_frame

    def deflated_frame(self, window_bits: int) -> bytes:
        """The WebSocket frame for readers that agreed on permessage-deflate with ``window_bits``:
        compressed on first use, once for all of them (readers who did not agree cost nothing).
        A small message is the plain frame (RSV1 clear). A batch is its events' frames, each
        compressed on its own, as they are for a reader who gets them one by one."""
        deflated = self._deflated
        if deflated is None:
            deflated = self._deflated = {}
        elif (found := deflated.get(window_bits)) is not None:
            return found
        if len(self.parts) > 1:
            data = b"".join(part.deflated_frame(window_bits) for part in self.parts)
        else:
            payload = deflate.compress(self.json, window_bits)
            data = self.ws_frame if payload is None else frame(Opcode.TEXT, payload, compressed=True)
        deflated[window_bits] = data
        return data

    @property
    def sse_frame(self) -> bytes:
        """The Server-Sent Events record; its ``id`` is the cursor, so ``Last-Event-ID`` resumes."""
        if self._sse_frame is None:
            # No id for messages without a cursor: Last-Event-ID must keep the last real cursor.
            record_id = b"id: %s\n" % self.cursor if self.cursor is not None else b""
            self._sse_frame = b"%sdata: %s\n\n" % (record_id, self.json)
        return self._sse_frame

    @property
    def sse_gzip(self) -> bytes:
        """The SSE record compressed on its own, once for every reader whose response is gzipped:
        deflate blocks that fit anywhere in a reader's gzip stream (:func:`deflate.sync_block`)."""
        if self._sse_gzip is None:
            if len(self.parts) > 1:
                self._sse_gzip = b"".join(part.sse_gzip for part in self.parts)
            elif len(self.sse_frame) < deflate.MIN_SIZE:
                self._sse_gzip = deflate.stored_block(self.sse_frame)
            else:
                self._sse_gzip = deflate.sync_block(self.sse_frame)
        return self._sse_gzip
