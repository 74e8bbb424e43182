"""A live reader's connection after the handshake: client frames, keepalive, and what it costs.

The frame parser is checked against websockets' own serializer as the oracle; the rest runs
against the real service with real clients over real sockets.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import json
import os
import socket
import struct
import termios
from dataclasses import replace

import pytest
import websockets
from conftest import UNLIMITED, assert_error_shape, receive, running_service
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Close, Frame, Opcode

import liveblog.connection as connection_module
from liveblog.connection import PONG_BACKLOG, Connections, LiveConnection
from liveblog.wire import CloseCode, FrameError, parse_client_frames

KEEPALIVE_FAILED = CloseCode.INTERNAL_ERROR
MESSAGE_TOO_BIG = CloseCode.MESSAGE_TOO_BIG
PROTOCOL_ERROR = CloseCode.PROTOCOL_ERROR

MAX = 1024

data_frames = st.builds(
    Frame,
    st.sampled_from([Opcode.TEXT, Opcode.BINARY, Opcode.CONT]),
    st.binary(max_size=MAX),
    st.booleans(),
)
control_frames = st.one_of(
    st.builds(Frame, st.sampled_from([Opcode.PING, Opcode.PONG]), st.binary(max_size=125)),
    st.builds(
        lambda code, reason: Frame(Opcode.CLOSE, Close(code, reason).serialize()),
        st.sampled_from([1000, 1001, 4000]),
        st.text(max_size=30).filter(lambda r: len(r.encode()) <= 120),
    ),
)


@given(st.lists(st.one_of(data_frames, control_frames), max_size=8), st.lists(st.integers(1, 300), max_size=10))
def test_frames_are_parsed_as_websockets_wrote_them_however_the_bytes_are_split(frames, cuts):
    wire = b"".join(frame.serialize(mask=True) for frame in frames)
    parsed, pending, offset = [], b"", 0
    for size in [*cuts, len(wire)]:  # arrive in chunks of these sizes, then the rest
        chunk, offset = wire[offset : offset + size], offset + size
        more, pending = parse_client_frames(pending + chunk, MAX)
        parsed += more
    assert pending == b""
    assert [(opcode, payload) for opcode, payload, _ in parsed] == [
        (frame.opcode.value, frame.data) for frame in frames
    ]


@pytest.mark.parametrize(
    "wire, code",
    [
        (Frame(Opcode.TEXT, b"hi").serialize(mask=False), PROTOCOL_ERROR),  # clients must mask
        (bytes([0xC1, 0x80]) + os.urandom(4), PROTOCOL_ERROR),  # RSV1: no extension was agreed
        (bytes([0x83, 0x80]) + os.urandom(4), PROTOCOL_ERROR),  # opcode 3 is reserved
        (bytes([0x09, 0x81]) + os.urandom(5), PROTOCOL_ERROR),  # a fragmented control frame
        (bytes([0x89, 0xFE, 0, 200]) + b"\0" * 204, PROTOCOL_ERROR),  # control payload > 125
        (Frame(Opcode.TEXT, b"x" * (MAX + 1)).serialize(mask=True), MESSAGE_TOO_BIG),
        (bytes([0x81, 0xFF]) + struct.pack("!Q", 2**62), MESSAGE_TOO_BIG),  # refused before the payload
    ],
)
def test_frames_breaking_the_protocol_or_the_size_limit_are_refused_with_the_right_code(wire, code):
    with pytest.raises(FrameError) as error:
        parse_client_frames(wire, MAX)
    assert error.value.code == code


async def raw_reader(ws_url: str, blog_id: str = "ukraine") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket client that does the handshake and then nothing at all (a phone that left)."""
    host, port = ws_url.removeprefix("ws://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /api/v1/blogs/{blog_id}/live HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    return first & 0x0F, await reader.readexactly(length)


async def test_a_reader_that_stops_answering_pings_is_dropped_and_one_that_answers_stays(redis_server):
    settings = replace(UNLIMITED, ws_ping_interval=0.2)
    async with running_service(redis_server.url, settings) as service:
        await service.create_blog()
        async with service.live() as answering:  # websockets answers pings by itself
            assert (await receive(answering))["type"] == "snapshot"
            reader, writer = await raw_reader(service.ws_url)
            frames = []
            while not frames or frames[-1][0] != Opcode.CLOSE.value:
                frames.append(await asyncio.wait_for(read_frame(reader), 5))
            assert [opcode for opcode, _ in frames[1:-1]] == [Opcode.PING.value]  # snapshot, one ping, close
            assert Close.parse(frames[-1][1]).code == KEEPALIVE_FAILED
            assert await asyncio.wait_for(reader.read(), 5) == b""  # and the server hung up
            writer.close()
            # the answering reader has been pinged as often, and is still served
            await service.post(headline="Still here")
            message = await receive(answering)
            assert message["event"] == "entry.created" and message["entry"]["headline"] == "Still here"


async def test_a_client_ping_is_answered_and_a_client_close_is_echoed(service):
    await service.create_blog()
    async with service.live() as ws:
        await receive(ws)
        # websockets resolves this only on a pong carrying the ping's own bytes
        await asyncio.wait_for(await ws.ping(b"are you there"), 5)
        await ws.close(4000, "bye")
        assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 4000


def app_calls() -> list[asyncio.Task]:
    """The server's running ASGI calls for WebSocket connections (it runs in this loop)."""
    return [task for task in asyncio.all_tasks() if task.get_coro().__qualname__.endswith("LiveProtocol._run")]


async def test_an_idle_reader_holds_no_task_on_the_server(service, monkeypatch):
    """What a reader costs while nothing happens: after the join, the app call has returned."""
    await service.create_blog()
    store = service.services.store
    snapshot, snapshot_read = store.snapshot, asyncio.Event()

    async def held_snapshot(*args):
        await snapshot_read.wait()
        return await snapshot(*args)

    monkeypatch.setattr(store, "snapshot", held_snapshot)  # every join waits for its snapshot until told
    url = f"{service.ws_url}/api/v1/blogs/ukraine/live"
    readers = await asyncio.gather(*(websockets.connect(url) for _ in range(20)))
    try:
        assert len(app_calls()) == 20, "app_calls() sees each reader's app call while it joins"
        snapshot_read.set()
        for ws in readers:
            assert (await receive(ws))["type"] == "snapshot"
        # each reader's app call ended as its snapshot was written, before the reader could read it
        assert app_calls() == []
        await service.post(headline="To all twenty")
        for ws in readers:
            assert (await receive(ws))["entry"]["headline"] == "To all twenty"
    finally:
        snapshot_read.set()
        for ws in readers:
            await ws.close()


async def test_keepalive_spreads_one_ping_per_connection_over_the_interval():
    """10k pings at once would hold up an entry's fan-out; each connection is pinged once."""
    keepalive = Connections(0.2)
    pinged: dict[int, list[float]] = {}
    all_pinged = asyncio.Event()

    class Connection:
        def __init__(self, n: int):
            self.n = n

        def ping(self, now: float, timeout: float) -> None:
            pinged.setdefault(self.n, []).append(now)
            if len(pinged) == 40:
                all_pinged.set()

    for n in range(40):
        keepalive.watch(Connection(n))
    running = asyncio.create_task(keepalive.run())
    try:
        await asyncio.wait_for(all_pinged.wait(), 5)
    finally:
        running.cancel()
    assert all(len(times) == 1 for times in pinged.values())
    assert len({times[0] for times in pinged.values()}) == Connections.TICKS  # 2 per tick


def live_connection(service) -> LiveConnection:
    """The server's only live connection (the service runs in this process)."""
    [connection] = list(service.services.connections)
    return connection


async def stopped_reader(service) -> tuple[LiveConnection, asyncio.StreamWriter]:
    """A reader that read its snapshot and reads nothing more (a phone that stalled)."""
    reader, writer = await raw_reader(service.ws_url)
    writer.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await asyncio.wait_for(read_frame(reader), 5)
    return live_connection(service), writer


async def fill_backlog(service, connection: LiveConnection, at_least: int) -> int:
    """Post long entries until ``at_least`` bytes wait in the server for a reader that does not
    read (its kernel buffers are full by then); how many were posted."""
    connection._transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    posted = 0
    while connection._transport.get_write_buffer_size() < at_least:
        await service.post(body="<p>" + "x" * 15_000 + "</p>")
        posted += 1
    return posted


async def stall_with_pings(service) -> tuple[LiveConnection, asyncio.StreamWriter]:
    """A reader that pings the server hard and reads nothing; returns once the server read it all."""
    connection, writer = await stopped_reader(service)
    server_socket = connection._transport.get_extra_info("socket")
    ping = bytes([0x89, 0x80 | 125]) + b"\0\0\0\0" + b"p" * 125  # masked with a zero key
    for _ in range(20):  # 100k pings: 12.7 MB of pongs if each were answered
        writer.write(ping * 5000)
        await writer.drain()
    while fcntl.ioctl(server_socket.fileno(), termios.FIONREAD, b"\0\0\0\0") != b"\0\0\0\0":
        await asyncio.sleep(0.01)  # until the server has read every ping
    return connection, writer


async def test_a_client_that_pings_without_reading_cannot_grow_the_servers_buffer(service):
    await service.create_blog()
    connection, writer = await stall_with_pings(service)
    unsent = connection._transport.get_write_buffer_size()
    assert unsent <= PONG_BACKLOG + 127  # 12.7 MB of pongs if each ping were answered
    writer.close()


async def test_a_reader_that_reads_nothing_does_not_hold_up_a_graceful_shutdown(redis_server, monkeypatch):
    monkeypatch.setattr(connection_module, "CLOSE_GRACE", 0.5)
    async with running_service(redis_server.url, UNLIMITED) as service:
        await service.create_blog()
        _, writer = await stall_with_pings(service)
    # cut off CLOSE_GRACE after its close frame; not still open when uvicorn's shutdown timeout gave up on it
    assert not list(service.services.connections)
    writer.close()


@pytest.mark.parametrize("how", ["keepalive timeout", "client close"])
async def test_a_reader_that_stopped_reading_is_let_go_after_the_close_grace(redis_server, monkeypatch, how):
    """Its connection, counts and subscription are released, whatever it still had to read."""
    monkeypatch.setattr(connection_module, "CLOSE_GRACE", 0.5)
    settings = replace(UNLIMITED, ws_ping_interval=0.2 if how == "keepalive timeout" else 3600)
    async with running_service(redis_server.url, settings) as service:
        await service.create_blog()
        connection, writer = await stopped_reader(service)
        await fill_backlog(service, connection, 100_000)
        if how == "client close":
            writer.write(bytes([0x88, 0x82, 0, 0, 0, 0]) + struct.pack("!H", 1000))
        state = service.services
        deadline = asyncio.get_running_loop().time() + 10
        while connection in list(service.services.connections):
            assert asyncio.get_running_loop().time() < deadline, "the stalled reader is still held"
            await asyncio.sleep(0.05)
        assert (state.readers.count, state.hub.readers("ukraine")) == (0, 0)
        writer.close()


async def test_a_ping_that_came_during_a_backlog_is_answered_once_it_drains(service):
    """A browser or proxy that pings during a burst must get its pong, or it drops a good reader."""
    await service.create_blog()
    port = int(service.base_url.rsplit(":", 1)[1])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.connect(("127.0.0.1", port))
    url = f"{service.ws_url}/api/v1/blogs/ukraine/live"
    ws = await websockets.connect(url, sock=sock, max_queue=1, ping_interval=None)
    try:
        assert (await receive(ws))["type"] == "snapshot"
        posted = await fill_backlog(service, live_connection(service), PONG_BACKLOG + 10_000)
        pong = await ws.ping(b"still there?")
        for _ in range(posted):  # the reader catches up with everything that waited
            await receive(ws)
        await asyncio.wait_for(pong, 5)
    finally:
        await ws.close()


@pytest.mark.parametrize("first", ["nothing", "an HTTP request"])
async def test_an_upgrade_is_answered_as_rfc_6455_says_first_thing_or_after_an_http_request(service, first):
    """The guard hands a connection's first request, parsed, to the live protocol; an upgrade
    after a keep-alive HTTP request comes the other way, from uvicorn as bytes. Either way the
    reader gets the 101 of RFC 6455's own example, and its snapshot."""
    await service.create_blog()
    host, port = service.ws_url.removeprefix("ws://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        if first == "an HTTP request":
            writer.write(f"GET /api/v1/blogs/ukraine HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200"), head
            length = next(
                int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
        writer.write(
            f"GET /api/v1/blogs/ukraine/live?limit=5 HTTP/1.1\r\nHost: {host}\r\nUpgrade: WebSocket\r\n"
            "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        status, *lines = head.decode().removesuffix("\r\n\r\n").split("\r\n")
        fields = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines)}
        assert status == "HTTP/1.1 101 Switching Protocols"
        assert fields["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 §1.3
        assert (fields["upgrade"].lower(), fields["connection"].lower()) == ("websocket", "upgrade")
        assert fields["date"].endswith(" GMT")
        opcode, payload = await asyncio.wait_for(read_frame(reader), 5)
        assert (opcode, json.loads(payload)["type"]) == (Opcode.TEXT.value, "snapshot")
    finally:
        writer.close()


#: Where Linux's ``struct tcp_info`` keeps ``tcpi_data_segs_in``: segments that carried data.
TCPI_DATA_SEGS_IN = 152


@pytest.mark.skipif(not hasattr(socket, "TCP_INFO"), reason="Linux's TCP_INFO counts the segments received")
async def test_a_reader_joining_a_blog_read_here_gets_the_101_and_its_snapshot_in_one_packet(service, monkeypatch):
    """Readers on phones pay per packet and per wake-up: when the snapshot is at hand (the blog
    has readers here), the handshake's answer and the snapshot leave in one write."""
    await service.create_blog()
    await service.post(headline="Kept")
    host, port = service.ws_url.removeprefix("ws://").split(":")
    # The blog's record stays at hand however slow the machine (else re-read: a write of its own).
    monkeypatch.setattr(service.services.pages, "ttl", 3600.0)
    async with service.live() as first:
        assert (await receive(first))["type"] == "snapshot"  # the feed runs; its snapshot is kept
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(
                f"GET /api/v1/blogs/ukraine/live HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 101 ")
            opcode, payload = await asyncio.wait_for(read_frame(reader), 5)
            assert json.loads(payload)["entries"][0]["headline"] == "Kept"
            info = writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
            assert struct.unpack_from("I", info, TCPI_DATA_SEGS_IN)[0] == 1
        finally:
            writer.close()


@pytest.mark.parametrize(
    "header, status",
    [
        ("Sec-WebSocket-Version: 8", 400),  # an old draft of the protocol
        ("Sec-WebSocket-Key: not-a-key", 400),
    ],
)
async def test_a_malformed_upgrade_is_refused_in_the_contracts_error_shape(service, header, status):
    await service.create_blog()
    host, port = service.ws_url.removeprefix("ws://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    headers = {"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}
    name, value = header.split(": ")
    headers[name] = value
    writer.write(
        f"GET /api/v1/blogs/ukraine/live HTTP/1.1\r\nHost: {host}\r\n".encode()
        + b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
        + b"\r\n"
    )
    response = await asyncio.wait_for(reader.read(), 5)  # and the server hangs up
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines)
    assert_error_shape(int(status_line.split()[1]), body, fields["Content-Type"], status)
    assert int(fields["Content-Length"]) == len(body)
