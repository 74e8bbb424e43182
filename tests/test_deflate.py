"""permessage-deflate on the live channel: what readers that offer it, and readers that don't, get.

A real client (websockets, which offers permessage-deflate by default) and hand-written raw
clients (to see the frames as they are on the wire) against the real service; the offer parser
is checked on its own, without sockets.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import tracemalloc
import zlib
from dataclasses import replace

import pytest
from conftest import UNLIMITED, receive, running_service
from websockets.exceptions import ConnectionClosedError

from liveblog.deflate import Agreement, InflateError, Inflater, negotiate

#: An entry like a newsroom's: a few paragraphs of prose with markup, about 1.5 KB.
BODY = "".join(
    f"<p>Update {i}: officials in the <strong>regional administration</strong> said that emergency crews "
    f"were working through the night to restore power to the districts hit by the strikes, and that "
    f'<a href="https://example.com/story/{i}">shelters remain open</a> until further notice.</p>'
    for i in range(6)
)
TAIL = b"\x00\x00\xff\xff"


class RawReader:
    """A WebSocket client written by hand: the handshake's response head, and frames as they are
    on the wire (RSV1 included), so that a test sees what the server sent, not what a library
    made of it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes):
        self.reader, self.writer, self.head = reader, writer, head

    @classmethod
    async def connect(cls, ws_url: str, extensions: str | None, blog_id: str = "ukraine") -> RawReader:
        host, port = ws_url.removeprefix("ws://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        key = base64.b64encode(os.urandom(16)).decode()
        offer = f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions is not None else ""
        writer.write(
            f"GET /api/v1/blogs/{blog_id}/live HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer, head)

    def extension(self) -> str | None:
        """The handshake response's Sec-WebSocket-Extensions, if any."""
        for line in self.head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "sec-websocket-extensions":
                return value.strip()
        return None

    async def frame(self) -> tuple[int, bytes, bytes]:
        """The next frame: its first byte, its payload, and the whole frame as it came."""
        head = await asyncio.wait_for(self.reader.readexactly(2), 5)
        first, length = head[0], head[1] & 0x7F
        extra = b""
        if length == 126:
            extra = await self.reader.readexactly(2)
            (length,) = struct.unpack("!H", extra)
        elif length == 127:
            extra = await self.reader.readexactly(8)
            (length,) = struct.unpack("!Q", extra)
        payload = await self.reader.readexactly(length)
        return first, payload, head + extra + payload

    async def message(self, window_bits: int = 15) -> tuple[dict, bytes]:
        """The next text message, decoded (inflated if RSV1 says so), and its frame's bytes;
        viewer counts are skipped."""
        while True:
            first, payload, whole = await self.frame()
            assert first & 0x80 and first & 0x0F == 0x1, f"not a whole text frame: {first:#x}"
            if first & 0x40:
                payload = zlib.decompressobj(-window_bits).decompress(payload + TAIL)
            message = json.loads(payload)
            if message["type"] != "viewers":
                return message, whole

    def send(self, first: int, payload: bytes) -> None:
        """A masked client frame (with a zero key: the payload goes as it is)."""
        size = len(payload)
        length = bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + struct.pack("!H", size)
        self.writer.write(bytes([first]) + length + b"\0\0\0\0" + payload)

    async def close_code(self) -> int:
        """The code of the close frame the server sends next (skipping anything before it)."""
        while True:
            first, payload, _ = await self.frame()
            if first & 0x0F == 0x8:
                return int.from_bytes(payload[:2], "big")

    def close(self) -> None:
        self.writer.close()


def deflated(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


# --- a real client ----------------------------------------------------------------------------------


async def test_a_websockets_reader_negotiates_compression_and_reads_snapshots_and_events(service):
    await service.create_blog()
    before = await service.post(headline="Earlier", body=BODY)
    async with service.live() as ws:  # websockets offers permessage-deflate unless told not to
        agreed = ws.response.headers["Sec-WebSocket-Extensions"]
        assert agreed.startswith("permessage-deflate") and "server_no_context_takeover" in agreed
        snapshot = await receive(ws)
        assert snapshot["type"] == "snapshot" and [e["id"] for e in snapshot["entries"]] == [before["id"]]
        for i in range(3):
            posted = await service.post(headline=f"Live {i}", body=BODY)
            event = await receive(ws)
            assert event["entry"]["id"] == posted["id"] and "regional administration" in event["entry"]["body"]
        # a reader's own messages are compressed too, and ignored; the connection carries on
        await ws.send("hello " * 500)
        await asyncio.wait_for(await ws.ping(b"still there?"), 5)

    async with service.live(cursor=snapshot["cursor"]) as ws:  # a resumed reader gets what it missed
        assert (await receive(ws))["entry"]["headline"] == "Live 0"


async def test_compressed_frames_carry_the_same_messages_in_a_fraction_of_the_bytes(service):
    await service.create_blog()
    await service.post(headline="Earlier", body=BODY)
    compressed = await RawReader.connect(service.ws_url, "permessage-deflate; client_max_window_bits")
    plain = await RawReader.connect(service.ws_url, None)
    small = await RawReader.connect(service.ws_url, "permessage-deflate; server_max_window_bits=10")
    try:
        assert compressed.extension() == "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        assert small.extension() == (
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"
        )
        assert plain.extension() is None
        sizes: dict[str, list[int]] = {"compressed": [], "plain": [], "small": []}
        for i in range(3):
            if i:
                await service.post(headline=f"Live {i}", body=BODY)
            got_plain, plain_frame = await plain.message()
            got_compressed, compressed_frame = await compressed.message()
            got_small, small_frame = await small.message(window_bits=10)  # would fail if it took a larger one
            assert got_compressed == got_plain == got_small  # the same message, whichever way it came
            assert compressed_frame[0] & 0x40 and small_frame[0] & 0x40 and not plain_frame[0] & 0x40
            sizes["plain"].append(len(plain_frame))
            sizes["compressed"].append(len(compressed_frame))
            sizes["small"].append(len(small_frame))
        # snapshot and events alike: a third of the bytes at most, for this prose
        assert all(3 * c <= p for c, p in zip(sizes["compressed"], sizes["plain"], strict=True)), sizes
    finally:
        for raw in (compressed, plain, small):
            raw.close()


async def test_a_reader_that_offers_no_compression_gets_the_frames_it_always_got(service):
    await service.create_blog()
    plain = await RawReader.connect(service.ws_url, None)
    try:
        snapshot, _ = await plain.message()
        posted = await service.post(headline="Plain", body=BODY)
        event, whole = await plain.message()
        assert event["entry"]["id"] == posted["id"]
        payload = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
        # one unfragmented text frame, RSV1 clear, the JSON as it is
        assert whole[:2] == b"\x81\x7e" and whole[4:] == payload and len(whole) == 4 + len(payload)
    finally:
        plain.close()


async def test_compression_can_be_turned_off(redis_server):
    async with running_service(redis_server.url, replace(UNLIMITED, compression=0)) as service:
        await service.create_blog()
        async with service.live() as ws:
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            assert (await receive(ws))["type"] == "snapshot"
        await service.post(body=BODY)
        listing = await service.http.get("/api/v1/blogs/ukraine/entries", headers={"Accept-Encoding": "gzip"})
        assert "content-encoding" not in listing.headers and len(listing.content) > 1024
        page = await service.http.get("/blogs/ukraine", headers={"Accept-Encoding": "gzip"})
        assert page.status_code == 200 and "content-encoding" not in page.headers


# --- what readers send ------------------------------------------------------------------------------


async def test_a_compressed_message_that_inflates_past_the_limit_is_refused_with_1009(service):
    await service.create_blog()
    async with service.live() as ws:
        assert (await receive(ws))["type"] == "snapshot"
        # 1 MB of zeros is a ~1 KB frame, under the 4 KiB frame limit: only inflating shows its size
        await ws.send("\0" * (1 << 20))
        with pytest.raises(ConnectionClosedError) as closed:
            while True:
                await receive(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_a_fragmented_compressed_bomb_is_refused_and_a_small_message_is_not(service):
    await service.create_blog()
    raw = await RawReader.connect(service.ws_url, "permessage-deflate")
    try:
        await raw.message()
        raw.send(0xC1, deflated(b"a" * 3000))  # fits: inflated and ignored
        raw.send(0x89, b"ping")
        while (await raw.frame())[0] & 0x0F != 0xA:
            pass  # the pong: the connection is still served
        bomb = deflated(b"\0" * (1 << 20))
        raw.send(0x41, bomb[:500])  # RSV1, no FIN: the first fragment
        raw.send(0x80, bomb[500:])  # the last one
        assert await raw.close_code() == 1009
    finally:
        raw.close()


async def test_corrupt_compressed_data_closes_with_1007_and_rsv1_without_agreement_with_1002(service):
    await service.create_blog()
    raw = await RawReader.connect(service.ws_url, "permessage-deflate")
    plain = await RawReader.connect(service.ws_url, None)
    try:
        await raw.message()
        raw.send(0xC1, b"\xff\xff\xff\xff not deflate")
        assert await raw.close_code() == 1007
        await plain.message()
        plain.send(0xC1, deflated(b"hello"))  # compressed, but nothing was agreed
        assert await plain.close_code() == 1002
    finally:
        raw.close()
        plain.close()


def test_inflating_a_bomb_costs_the_limit_not_what_it_would_inflate_to():
    bomb = deflated(b"\0" * (64 << 20))  # 64 MiB in about 64 KB
    inflater = Inflater(4096)
    tracemalloc.start()
    try:
        with pytest.raises(InflateError) as refused:
            inflater.feed(bomb, last=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.too_big and peak < 1 << 20


# --- offers -----------------------------------------------------------------------------------------

BOTH = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"


@pytest.mark.parametrize(
    ("offers", "agreed"),
    [
        (["permessage-deflate"], Agreement(15, BOTH)),
        (["permessage-deflate; client_max_window_bits"], Agreement(15, BOTH)),  # what browsers offer
        (["permessage-deflate; client_max_window_bits=10"], Agreement(15, BOTH)),
        (["Permessage-Deflate; Server_No_Context_Takeover"], Agreement(15, BOTH)),
        (["permessage-deflate; server_max_window_bits=12"], Agreement(12, f"{BOTH}; server_max_window_bits=12")),
        (['permessage-deflate; server_max_window_bits="9"'], Agreement(9, f"{BOTH}; server_max_window_bits=9")),
        # the first offer that can be honoured wins
        (["permessage-deflate; server_max_window_bits=8, permessage-deflate"], Agreement(15, BOTH)),
        (["x-webkit-deflate-frame", "permessage-deflate; client_no_context_takeover"], Agreement(15, BOTH)),
        # declined: the reader is served uncompressed
        ([], None),
        (["x-webkit-deflate-frame"], None),
        (["permessage-deflate; server_max_window_bits"], None),  # a value is required
        (["permessage-deflate; server_max_window_bits=8"], None),  # zlib cannot compress with 256 bytes
        (["permessage-deflate; server_max_window_bits=16"], None),
        (["permessage-deflate; server_max_window_bits=010"], None),
        (["permessage-deflate; server_max_window_bits=1e1"], None),
        (["permessage-deflate; client_max_window_bits=7"], None),
        (["permessage-deflate; server_no_context_takeover=1"], None),
        (["permessage-deflate; server_no_context_takeover; server_no_context_takeover"], None),
        (["permessage-deflate; client_max_window_bits; client_max_window_bits=9"], None),
        (["permessage-deflate; mystery_option"], None),
        (['permessage-deflate; server_max_window_bits="10'], None),  # unbalanced quote: the header is refused
        (["permessage-deflate; ; server_no_context_takeover"], None),
        (["permessage-deflate;;"], None),
        (["permessage deflate"], None),
        (['permessage-deflate; server_max_window_bits="1 0"'], None),
        (["permessage-deflate; server_max_window_bits=1=0"], None),
        # a header that does not parse is declined whole, even with a good offer in it
        (["permessage-deflate; x=a=b, permessage-deflate"], None),
    ],
)
def test_offers_are_read_strictly(offers, agreed):
    assert negotiate(offers) == agreed


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; server_max_window_bits=8",
        "permessage-deflate; mystery_option",
        'permessage-deflate; server_max_window_bits="',
        "permessage-deflate; server_no_context_takeover=yes",
        "permessage-deflate; a=b=c",
    ],
)
async def test_a_malformed_offer_gets_an_uncompressed_connection_not_a_failed_handshake(service, offer):
    await service.create_blog()
    raw = await RawReader.connect(service.ws_url, offer)
    try:
        assert raw.extension() is None
        assert (await raw.message())[0]["type"] == "snapshot"
        posted = await service.post(headline="Anyway", body=BODY)
        message, whole = await raw.message()
        assert message["entry"]["id"] == posted["id"] and not whole[0] & 0x40
    finally:
        raw.close()
