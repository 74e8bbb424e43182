"""What goes over the wire, checked against websockets as the oracle: server frames as its
client-side parser reads them, close frames that fit, unmasking, messages encoded once, the close
codes of the contract; and the registry that tells every reader at shutdown.
"""

from __future__ import annotations

import asyncio

import pytest
from conftest import received
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Close, Frame
from websockets.frames import Opcode as WsOpcode
from websockets.utils import apply_mask

from liveblog.connection import Connections, reconnect_delays
from liveblog.cursor import Cursor
from liveblog.storage import LogEvent
from liveblog.wire import (
    EMPTY_CLOSE_FRAME,
    PING_FRAME,
    CloseCode,
    Message,
    Opcode,
    close_frame,
    frame,
    unmask,
)

# -- server frames


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_a_frame_of_any_size_reads_back_as_written(opcode, size):
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    written = frame(opcode, payload)
    assert received(written, check_close=False) == [Frame(WsOpcode(opcode), payload, fin=True)]  # any bytes
    # and its length takes as few bytes as it can (RFC 6455 §5.2), as websockets writes it
    assert written == Frame(WsOpcode(opcode), payload).serialize(mask=False)


data_opcodes = st.sampled_from([Opcode.TEXT, Opcode.BINARY])
control_opcodes = st.sampled_from([Opcode.PING, Opcode.PONG, Opcode.CLOSE])


@given(
    st.one_of(
        st.tuples(data_opcodes, st.binary(max_size=70_000)),
        st.tuples(control_opcodes, st.binary(max_size=125)),
    )
)
def test_every_frame_reads_back_as_written(message):
    opcode, payload = message
    written = frame(opcode, payload)
    assert received(written, check_close=False) == [Frame(WsOpcode(opcode), payload, fin=True)]  # any bytes
    assert written == Frame(WsOpcode(opcode), payload).serialize(mask=False)


def test_the_prepared_control_frames_are_an_empty_ping_and_an_empty_close():
    assert received(PING_FRAME + EMPTY_CLOSE_FRAME) == [Frame(WsOpcode.PING, b""), Frame(WsOpcode.CLOSE, b"")]


# -- close frames


def close_of(written: bytes) -> Close:
    [parsed] = received(written)
    assert parsed.opcode is WsOpcode.CLOSE
    return Close.parse(bytes(parsed.data))  # raises on an invalid code or a reason not UTF-8


@pytest.mark.parametrize(
    "reason",
    [
        pytest.param("x" * 200, id="ascii"),
        *(pytest.param("x" * lead + "é" * 80, id=f"2-byte, {lead} ahead") for lead in range(2)),
        *(pytest.param("x" * lead + "€" * 60, id=f"3-byte, {lead} ahead") for lead in range(3)),
        *(pytest.param("x" * lead + "😀" * 40, id=f"4-byte, {lead} ahead") for lead in range(4)),
    ],
)
def test_a_long_close_reason_is_cut_to_fit_a_control_frame_without_breaking_a_character(reason):
    written = close_frame(CloseCode.TOO_SLOW, reason)
    [parsed] = received(written)
    assert len(parsed.data) <= 125
    close = close_of(written)
    assert close.code == CloseCode.TOO_SLOW
    assert reason.startswith(close.reason)
    # as much as fits: the next character would not have
    assert len(close.reason.encode()) + len(reason[len(close.reason)].encode()) > 123


@given(st.text(max_size=200), st.sampled_from(list(CloseCode)))
def test_every_close_frame_is_valid_and_keeps_as_much_of_the_reason_as_fits(reason, code):
    close = close_of(close_frame(code, reason))
    assert close.code == code
    assert reason.startswith(close.reason)
    if close.reason != reason:
        assert len(close.reason.encode()) + len(reason[len(close.reason)].encode()) > 123
    else:
        assert len(reason.encode()) <= 123


def test_a_short_close_reason_is_kept_whole():
    assert close_of(close_frame(CloseCode.NO_SUCH_BLOG, "no such blog")) == Close(4404, "no such blog")
    assert close_of(close_frame(CloseCode.NORMAL)) == Close(1000, "")


# -- unmasking


@given(st.binary(max_size=5000), st.binary(min_size=4, max_size=4))
def test_unmasking_is_what_websockets_does(payload, key):
    assert unmask(payload, key) == apply_mask(payload, key)


@given(st.binary(max_size=1000), st.binary(min_size=4, max_size=4))
def test_unmasking_twice_gives_the_payload_back(payload, key):
    assert unmask(unmask(payload, key), key) == payload


# -- messages


def event(n: int) -> Message:
    return Message.event("ep", LogEvent(f"{n}-0", b'{"event":"entry.created","entry":{"n":%d}}' % n, "ep"))


def test_a_message_is_one_text_frame_of_its_json_with_its_cursor():
    message = event(7)
    assert received(message.ws_frame) == [Frame(WsOpcode.TEXT, message.json)]
    assert message.json.startswith(b'{"type":"event","cursor":"ep.7-0",')
    assert message.cursor == b"ep.7-0"
    assert message.sse_frame == b"id: ep.7-0\ndata: %s\n\n" % message.json


def test_a_batch_is_its_messages_frames_joined_from_the_first_position_to_the_last():
    parts = [event(3), event(4), event(9)]
    batch = Message.batch(parts)
    assert received(batch.ws_frame) == [Frame(WsOpcode.TEXT, part.json) for part in parts]
    assert batch.sse_frame == b"".join(part.sse_frame for part in parts)
    assert (batch.first, batch.position) == ((3, 0), (9, 0))
    assert batch.cursor == parts[-1].cursor  # a reader who got the batch resumes after its last
    assert batch.parts == tuple(parts)


def test_a_batch_of_one_is_that_message():
    message = event(1)
    assert Message.batch([message]) is message


def test_a_viewer_count_has_no_cursor_and_never_moves_a_readers_place():
    viewers = Message.viewers(12)
    assert received(viewers.ws_frame) == [Frame(WsOpcode.TEXT, b'{"type":"viewers","count":12}')]
    assert viewers.cursor is None
    assert viewers.first == viewers.position
    earliest = Message(Cursor("ep", "0-1"), b"{}")  # the first id Redis gives
    assert viewers.position < earliest.position < event(1).position
    assert viewers.sse_frame == b'data: {"type":"viewers","count":12}\n\n'  # Last-Event-ID keeps the cursor


# -- close codes


def test_the_close_codes_are_the_contracts_and_each_means_one_thing():
    assert sorted(CloseCode) == [1000, 1002, 1003, 1007, 1009, 1011, 1012, 4403, 4404, 4408, 4429]
    assert len(CloseCode.__members__) == len(CloseCode)  # no code is an alias of another


def test_every_close_code_is_one_a_client_accepts():
    for code in CloseCode:
        assert close_of(close_frame(code)).code == code


# -- the process's registry


class Reader:
    """A reader as the registry sees it: told to go, and counted."""

    def __init__(self) -> None:
        self.told = 0
        self.retry_ms: int | None = None

    def shutdown(self, retry_ms: int | None = None) -> None:
        self.told += 1
        self.retry_ms = retry_ms


async def has_finished(task: asyncio.Task) -> bool:
    await asyncio.sleep(0)  # one turn of the loop for the task: not a wait for time
    return task.done()


@pytest.mark.parametrize("last", ["socket", "stream"])
async def test_at_shutdown_every_reader_is_told_once_and_the_server_waits_until_all_have_gone(last):
    connections = Connections(interval=5.0)
    sockets, streams = [Reader(), Reader()], [Reader(), Reader()]
    for reader in sockets:
        connections.watch(reader)
    for reader in streams:
        connections.watch_stream(reader)
    assert [reader.told for reader in sockets + streams] == [0, 0, 0, 0]
    connections.begin_shutdown()
    assert [reader.told for reader in sockets + streams] == [1, 1, 1, 1]
    closed = asyncio.create_task(connections.wait_closed())
    gone = [lambda: connections.forget(sockets[0]), lambda: connections.forget_stream(streams[0])]
    gone += [lambda: connections.forget(sockets[1]), lambda: connections.forget_stream(streams[1])]
    if last == "socket":
        gone.reverse()
    for leaves in gone[:-1]:
        leaves()
        assert not await has_finished(closed)
    gone[-1]()
    await asyncio.wait_for(closed, 5)
    assert [reader.told for reader in sockets + streams] == [1, 1, 1, 1]


def frozen() -> float:
    """A clock that does not move: telling the readers takes no time."""
    return 0.0


async def test_at_shutdown_each_reader_gets_its_own_reconnect_delay_within_the_spread():
    connections = Connections(interval=5.0, reconnect_spread_ms=4000, clock=frozen)
    sockets, streams = [Reader() for _ in range(30)], [Reader() for _ in range(10)]
    for reader in sockets:
        connections.watch(reader)
    for reader in streams:
        connections.watch_stream(reader)
    connections.begin_shutdown()
    delays = sorted(reader.retry_ms for reader in sockets + streams)  # type: ignore[type-var]
    assert len(set(delays)) == 40, "no two readers come back in the same millisecond"
    # evenly: one per 100 ms slot of the 4 s spread, not clumped as independent draws would be
    assert [delay // 100 for delay in delays] == list(range(40))
    late = Reader()
    connections.watch(late)
    assert late.retry_ms is not None and 0 <= late.retry_ms < 4000


async def test_readers_come_back_in_their_slots_however_long_telling_them_takes():
    # A deploy tells 10k readers on a core they also need to come back: a few hundred ms. Each
    # is told the time left until its moment, counted from the first 1012, so the last reader
    # is not sent 4 s further on top of the time it took to reach it.
    now = [0.0]

    class Slow(Reader):
        """A reader that takes 62.5 ms of the clock to be told (exact in binary: no rounding)."""

        told_at = 0.0

        def shutdown(self, retry_ms: int | None = None) -> None:
            super().shutdown(retry_ms)
            self.told_at = now[0]
            now[0] += 0.0625

    connections = Connections(interval=5.0, reconnect_spread_ms=4000, clock=lambda: now[0])
    readers = [Slow() for _ in range(40)]
    for reader in readers:
        connections.watch(reader)
    connections.begin_shutdown()
    assert now[0] == 2.5, "telling them took 2.5 s"
    back_ms = sorted(1000 * reader.told_at + reader.retry_ms for reader in readers)  # type: ignore[operator]
    # one per 100 ms slot from the first 1012, the last before 4 s
    assert [int(ms) // 100 for ms in back_ms] == list(range(40)), back_ms


def test_reconnect_delays_fill_their_slots_and_come_in_random_order():
    delays = reconnect_delays(1000, 3000)
    assert sorted(delay // 3 for delay in delays) == list(range(1000))
    assert delays != sorted(delays)
    assert reconnect_delays(0, 3000) == []
    assert reconnect_delays(5, 0) == [0] * 5


async def test_with_a_floor_no_reader_is_sent_back_before_it():
    # A restart with a gap: nobody listens for the first 2.5 s, so nobody is told to come sooner.
    connections = Connections(interval=5.0, reconnect_spread_ms=1000, reconnect_floor_ms=2500, clock=frozen)
    readers = [Reader() for _ in range(50)]
    for reader in readers:
        connections.watch(reader)
    connections.begin_shutdown()
    late = Reader()
    connections.watch(late)
    delays = sorted(reader.retry_ms for reader in [*readers, late])  # type: ignore[type-var]
    assert 2500 <= delays[0] and delays[-1] < 3500, delays
    # still evenly, one per 20 ms slot above the floor
    assert sorted((reader.retry_ms - 2500) // 20 for reader in readers) == list(range(50))  # type: ignore[operator]


async def test_a_reader_that_joins_during_the_shutdown_is_told_at_once():
    connections = Connections(interval=5.0)
    connections.watch(Reader())
    connections.begin_shutdown()
    late_socket, late_stream = Reader(), Reader()
    connections.watch(late_socket)
    connections.watch_stream(late_stream)
    assert (late_socket.told, late_stream.told) == (1, 1)


async def test_a_server_without_readers_is_closed_as_soon_as_it_stops():
    connections = Connections(interval=5.0)
    reader = Reader()
    connections.watch(reader)
    connections.forget(reader)
    waiting = asyncio.create_task(connections.wait_closed())
    assert not await has_finished(waiting)  # an idle server is not a stopped one
    connections.begin_shutdown()
    await asyncio.wait_for(waiting, 5)
    assert reader.told == 0


async def test_the_server_waits_for_a_reader_that_joined_during_the_shutdown():
    connections = Connections(interval=5.0)
    early, late = Reader(), Reader()
    connections.watch(early)
    connections.begin_shutdown()
    connections.watch(late)
    assert late.told == 1
    closed = asyncio.create_task(connections.wait_closed())
    connections.forget(early)
    try:
        assert not await has_finished(closed)  # the late reader has not gone yet
    finally:
        closed.cancel()
