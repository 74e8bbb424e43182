"""A reader's connection rules without sockets, loop or clock: keepalive, pings, both closing
handshakes, refused data and frame errors, as the reader sees them.

:class:`~liveblog.connection.Rules` is fed client frames written by websockets' own serializer,
clock readings as plain numbers and the server's requests; what it answers is decoded with
websockets' own client-side parser, so every byte it writes is checked to be an RFC 6455 server
frame (unmasked, no reserved bits, control frames whole and at most 125 bytes, a valid close
code and a UTF-8 reason).
"""

from __future__ import annotations

import json
import struct

import pytest
from conftest import received
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Close, Frame, Opcode

from liveblog.connection import PONG_BACKLOG, After, Rules, State
from liveblog.wire import CloseCode

MAX = 1024
TIMEOUT = 10.0
START = 1000.0  # a monotonic clock does not start at 0


# -- the client's side


def client(opcode: Opcode, data: bytes = b"", fin: bool = True) -> bytes:
    """A frame as a browser writes it: masked with a random key."""
    return Frame(opcode, data, fin).serialize(mask=True)


def client_close(code: int | None = None, reason: bytes = b"") -> bytes:
    """A close frame with any code, valid or not (websockets' ``Close`` refuses invalid ones)."""
    return client(Opcode.CLOSE, b"" if code is None else struct.pack("!H", code) + reason)


def close_code(frame: Frame) -> int:
    assert frame.opcode is Opcode.CLOSE
    return Close.parse(bytes(frame.data)).code


def ping_sent(rules: Rules, now: float) -> bytes:
    """The keepalive visits the connection: the payload of the ping it writes."""
    written, after = rules.on_tick(now, TIMEOUT)
    [ping] = received(written)
    assert (ping.opcode, after) == (Opcode.PING, After.NOTHING)
    return bytes(ping.data)


def answered(result: tuple[bytes, After]) -> tuple[list[Frame], After]:
    written, after = result
    return received(written), after


def closed_with(result: tuple[bytes, After]) -> tuple[int, After]:
    """The code of the one close frame written, and what comes next."""
    [frame], after = answered(result)
    return close_code(frame), after


NOTHING_WRITTEN = ([], After.NOTHING)
HUNG_UP = ([], After.HANG_UP)


# -- keepalive


def test_a_reader_that_never_answers_a_ping_is_failed_with_1011_once_the_timeout_has_passed_and_not_before():
    rules = Rules(MAX)
    ping_sent(rules, START)
    assert answered(rules.on_tick(START + TIMEOUT - 0.001, TIMEOUT)) == NOTHING_WRITTEN  # no second ping either
    assert closed_with(rules.on_tick(START + TIMEOUT, TIMEOUT)) == (CloseCode.INTERNAL_ERROR, After.HANG_UP)
    assert rules.state is State.CLOSING
    assert answered(rules.on_tick(START + 2 * TIMEOUT, TIMEOUT)) == NOTHING_WRITTEN  # failed once


def test_a_reader_that_answers_every_ping_keeps_its_connection_and_is_pinged_again():
    rules = Rules(MAX)
    for visit in range(5):
        now = START + visit * TIMEOUT
        payload = ping_sent(rules, now)  # a new ping each visit, not a close
        assert answered(rules.on_data(client(Opcode.PONG, payload), 0)) == NOTHING_WRITTEN
    assert rules.state is State.OPEN


def test_each_ping_carries_its_own_payload_so_that_an_old_answer_cannot_be_taken_for_a_new_one():
    rules = Rules(MAX)
    first = ping_sent(rules, START)
    rules.on_data(client(Opcode.PONG, first), 0)
    assert ping_sent(rules, START + TIMEOUT) != first


@pytest.mark.parametrize(
    "pong",
    [
        pytest.param(lambda ours, earlier: b"", id="empty"),
        pytest.param(lambda ours, earlier: b"heartbeat", id="other payload"),
        pytest.param(lambda ours, earlier: ours[::-1], id="our payload reversed"),
        pytest.param(lambda ours, earlier: earlier, id="the answer to an earlier ping"),
    ],
)
def test_an_unsolicited_pong_does_not_keep_a_reader_that_reads_nothing(pong):
    """Pongs are allowed as a one-way heartbeat; a client that sends them and reads nothing
    is failed at the timeout all the same."""
    rules = Rules(MAX)
    earlier = ping_sent(rules, START - TIMEOUT)
    rules.on_data(client(Opcode.PONG, earlier), 0)
    ours = ping_sent(rules, START)
    assert answered(rules.on_data(client(Opcode.PONG, pong(ours, earlier)), 0)) == NOTHING_WRITTEN
    assert closed_with(rules.on_tick(START + TIMEOUT, TIMEOUT)) == (CloseCode.INTERNAL_ERROR, After.HANG_UP)


def test_a_pong_before_any_ping_does_not_answer_the_next_one():
    rules = Rules(MAX)
    # even one that guessed the payload (today the time of the ping)
    rules.on_data(client(Opcode.PONG, struct.pack("!d", START)), 0)
    rules.on_data(client(Opcode.PONG, struct.pack("!d", 0.0)), 0)
    ping_sent(rules, START)
    assert closed_with(rules.on_tick(START + TIMEOUT, TIMEOUT)) == (CloseCode.INTERNAL_ERROR, After.HANG_UP)


def test_a_closing_connection_is_not_pinged_nor_failed_by_the_keepalive():
    """Once a close frame is sent the grace period decides, not the keepalive."""
    rules = Rules(MAX)
    rules.on_close(CloseCode.TOO_SLOW, "too slow")
    assert answered(rules.on_tick(START, TIMEOUT)) == NOTHING_WRITTEN
    assert answered(rules.on_tick(START + 5 * TIMEOUT, TIMEOUT)) == NOTHING_WRITTEN


# -- the client's pings


@pytest.mark.parametrize("backlog", [0, PONG_BACKLOG])
@pytest.mark.parametrize("payload", [b"", b"are you there", b"\x00\xff" * 62 + b"!"])
def test_a_clients_ping_is_answered_with_a_pong_of_the_same_payload(backlog, payload):
    frames, after = answered(Rules(MAX).on_data(client(Opcode.PING, payload), backlog))
    assert frames == [Frame(Opcode.PONG, payload)]
    assert after is After.NOTHING


def test_several_pings_in_one_read_get_one_pong_for_the_latest():
    wire = client(Opcode.PING, b"one") + client(Opcode.PING, b"two") + client(Opcode.PING, b"three")
    assert answered(Rules(MAX).on_data(wire, 0)) == ([Frame(Opcode.PONG, b"three")], After.NOTHING)


def test_a_ping_that_comes_during_a_backlog_is_answered_once_when_it_drains():
    """A client that pings and reads nothing cannot grow the server's buffer with pongs, and a
    browser pinging during a burst still gets its answer."""
    rules = Rules(MAX)
    assert answered(rules.on_data(client(Opcode.PING, b"still there?"), PONG_BACKLOG + 1)) == NOTHING_WRITTEN
    assert received(rules.on_drained()) == [Frame(Opcode.PONG, b"still there?")]
    assert rules.on_drained() == b""  # exactly once


def test_of_the_pings_that_came_during_a_backlog_only_the_latest_is_answered():
    rules = Rules(MAX)
    for n in range(100):
        assert answered(rules.on_data(client(Opcode.PING, b"%d" % n), PONG_BACKLOG * 2)) == NOTHING_WRITTEN
    assert received(rules.on_drained()) == [Frame(Opcode.PONG, b"99")]
    assert rules.on_drained() == b""


def test_nothing_is_owed_when_the_backlog_drains_without_a_ping():
    assert Rules(MAX).on_drained() == b""


@pytest.mark.parametrize(
    "ending",
    [
        pytest.param(lambda rules: rules.on_close(CloseCode.TOO_SLOW, "too slow"), id="server close"),
        pytest.param(lambda rules: rules.on_data(client_close(1000), 0), id="client close"),
        pytest.param(lambda rules: rules.on_shutdown(), id="shutdown"),
        pytest.param(lambda rules: rules.on_lost(), id="lost"),
    ],
)
def test_a_pong_owed_to_a_connection_that_has_since_closed_is_not_sent(ending):
    rules = Rules(MAX)
    rules.on_data(client(Opcode.PING, b"late"), PONG_BACKLOG + 1)
    ending(rules)
    assert rules.on_drained() == b""


# -- the client's close


@pytest.mark.parametrize("code", [1000, 1001, 1008, 1011, 3000, 4000, 4999])
def test_a_clients_close_is_echoed_with_its_code_and_the_server_hangs_up(code):
    rules = Rules(MAX)
    assert closed_with(rules.on_data(client_close(code, b"bye"), 0)) == (code, After.HANG_UP)
    assert rules.state is State.CLOSING


def test_a_clients_close_without_a_code_is_echoed_without_one():
    rules = Rules(MAX)
    assert answered(rules.on_data(client_close(), 0)) == ([Frame(Opcode.CLOSE, b"")], After.HANG_UP)
    assert rules.state is State.CLOSING


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 65535])
def test_a_close_with_a_code_no_client_may_send_fails_the_connection_with_1002(code):
    rules = Rules(MAX)
    assert closed_with(rules.on_data(client_close(code), 0)) == (CloseCode.PROTOCOL_ERROR, After.HANG_UP)
    assert rules.state is State.CLOSING


def test_a_close_with_a_one_byte_payload_fails_the_connection_with_1002():
    assert closed_with(Rules(MAX).on_data(client(Opcode.CLOSE, b"\x03"), 0)) == (
        CloseCode.PROTOCOL_ERROR,
        After.HANG_UP,
    )


@pytest.mark.parametrize("reason", [b"\xff", b"caf\xc3", b"\xed\xa0\x80", b"ok \xc0\xaf"])
def test_a_close_whose_reason_is_not_utf8_fails_the_connection_with_1007(reason):
    assert closed_with(Rules(MAX).on_data(client_close(1000, reason), 0)) == (CloseCode.INVALID_DATA, After.HANG_UP)


@pytest.mark.parametrize(
    "close, code",
    [
        pytest.param(lambda rules: rules.on_close(CloseCode.TOO_SLOW, "too slow"), CloseCode.TOO_SLOW, id="too slow"),
        pytest.param(
            lambda rules: rules.on_data(client(Opcode.BINARY, b"\x00"), 0), CloseCode.UNSUPPORTED_DATA, id="binary"
        ),
    ],
)
def test_the_clients_answer_to_our_close_is_not_echoed_and_the_server_hangs_up(close, code):
    rules = Rules(MAX)
    assert closed_with(close(rules))[0] == code
    assert answered(rules.on_data(client_close(code), 0)) == HUNG_UP
    assert rules.state is State.CLOSING


def test_what_came_before_a_clients_close_in_the_same_read_is_handled_first():
    rules = Rules(MAX)
    wire = client(Opcode.TEXT, b"hello") + client(Opcode.BINARY, b"\x00") + client_close(1000)
    assert closed_with(rules.on_data(wire, 0)) == (CloseCode.UNSUPPORTED_DATA, After.HANG_UP)  # no echo


# -- messages from the reader


def test_a_binary_message_is_refused_with_1003():
    rules = Rules(MAX)
    code, _ = closed_with(rules.on_data(client(Opcode.BINARY, b"\x00\x01"), 0))
    assert code == CloseCode.UNSUPPORTED_DATA
    assert rules.state is State.CLOSING
    # and only once, however much binary follows
    assert answered(rules.on_data(client(Opcode.BINARY, b"more"), 0)) == NOTHING_WRITTEN


def test_a_fragmented_binary_message_is_refused_at_its_first_fragment():
    rules = Rules(MAX)
    code, _ = closed_with(rules.on_data(client(Opcode.BINARY, b"\x00", fin=False), 0))
    assert code == CloseCode.UNSUPPORTED_DATA
    assert answered(rules.on_data(client(Opcode.CONT, b"\x01"), 0)) == NOTHING_WRITTEN


def test_a_reader_refused_for_a_binary_message_is_cut_off_if_it_never_answers_the_close():
    rules = Rules(MAX)
    code, after = closed_with(rules.on_data(client(Opcode.BINARY, b"\x00\x01"), 0))
    assert code == CloseCode.UNSUPPORTED_DATA
    assert after is After.AWAIT_CLOSE


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(client(Opcode.TEXT, b"hello"), id="text"),
        pytest.param(client(Opcode.TEXT, b""), id="empty text"),
        pytest.param(client(Opcode.TEXT, b"x" * MAX), id="text at max size"),
        pytest.param(client(Opcode.TEXT, b"hel", fin=False) + client(Opcode.CONT, b"lo"), id="fragmented text"),
    ],
)
def test_a_text_message_from_the_reader_is_ignored(wire):
    rules = Rules(MAX)
    assert answered(rules.on_data(wire, 0)) == NOTHING_WRITTEN
    assert rules.state is State.OPEN
    assert answered(rules.on_data(client(Opcode.PING, b"p"), 0)) == ([Frame(Opcode.PONG, b"p")], After.NOTHING)


# -- frames breaking the protocol


@pytest.mark.parametrize(
    "wire, code",
    [
        pytest.param(Frame(Opcode.TEXT, b"hi").serialize(mask=False), CloseCode.PROTOCOL_ERROR, id="unmasked"),
        pytest.param(bytes([0xC1, 0x80, 1, 2, 3, 4]), CloseCode.PROTOCOL_ERROR, id="reserved bit"),
        pytest.param(bytes([0x83, 0x80, 1, 2, 3, 4]), CloseCode.PROTOCOL_ERROR, id="reserved opcode"),
        pytest.param(client(Opcode.TEXT, b"x" * (MAX + 1)), CloseCode.MESSAGE_TOO_BIG, id="oversized"),
        pytest.param(bytes([0x81, 0xFF]) + struct.pack("!Q", 2**62), CloseCode.MESSAGE_TOO_BIG, id="oversized head"),
    ],
)
def test_a_frame_breaking_the_protocol_or_the_size_limit_fails_the_connection(wire, code):
    rules = Rules(MAX)
    assert closed_with(rules.on_data(wire, 0)) == (code, After.HANG_UP)
    assert rules.state is State.CLOSING


def test_a_frame_error_after_our_close_hangs_up_without_a_second_close():
    rules = Rules(MAX)
    rules.on_close(CloseCode.TOO_SLOW, "too slow")
    assert answered(rules.on_data(Frame(Opcode.TEXT, b"hi").serialize(mask=False), 0)) == HUNG_UP


# -- the server's close and shutdown


def test_the_server_closes_once_however_often_it_is_asked():
    rules = Rules(MAX)
    assert closed_with(rules.on_close(CloseCode.TOO_SLOW, "too slow")) == (CloseCode.TOO_SLOW, After.AWAIT_CLOSE)
    assert rules.state is State.CLOSING
    assert answered(rules.on_close(CloseCode.NO_SUCH_BLOG, "gone")) == NOTHING_WRITTEN


def test_the_servers_close_reason_reaches_the_reader():
    [frame], _ = answered(Rules(MAX).on_close(CloseCode.TOO_SLOW, "too slow: reconnect with your cursor"))
    assert Close.parse(bytes(frame.data)) == Close(CloseCode.TOO_SLOW, "too slow: reconnect with your cursor")


def test_a_shutdown_close_reason_says_when_to_come_back_in_json():
    [frame], _ = answered(Rules(MAX).on_shutdown(retry_ms=59_999))
    close = Close.parse(bytes(frame.data))
    assert close.code == CloseCode.SERVICE_RESTART
    assert json.loads(close.reason)["retry_ms"] == 59_999
    assert len(close.reason.encode()) <= 123  # what a close frame's reason may take


def test_at_shutdown_an_open_connection_is_told_1012_and_hung_up():
    rules = Rules(MAX)
    assert closed_with(rules.on_shutdown()) == (CloseCode.SERVICE_RESTART, After.HANG_UP)
    assert rules.state is State.CLOSING


@pytest.mark.parametrize(
    "close",
    [
        pytest.param(lambda rules: rules.on_close(CloseCode.TOO_SLOW, "too slow"), id="our close"),
        pytest.param(lambda rules: rules.on_data(client_close(1000), 0), id="client close"),
        pytest.param(lambda rules: rules.on_shutdown(), id="shutdown"),
    ],
)
def test_at_shutdown_a_closing_connection_is_hung_up_without_another_close_frame(close):
    rules = Rules(MAX)
    close(rules)
    assert answered(rules.on_shutdown()) == HUNG_UP
    assert rules.state is State.CLOSING


# -- after the transport is gone


def test_once_the_connection_is_lost_requests_do_nothing_and_data_is_a_bug():
    rules = Rules(MAX)
    rules.on_data(client(Opcode.PING, b"owed"), PONG_BACKLOG + 1)
    rules.on_lost()
    assert rules.state is State.CLOSED
    assert answered(rules.on_close(CloseCode.TOO_SLOW, "too slow")) == NOTHING_WRITTEN
    assert answered(rules.on_tick(START, TIMEOUT)) == NOTHING_WRITTEN
    assert answered(rules.on_shutdown()) == NOTHING_WRITTEN
    assert rules.on_drained() == b""
    assert rules.state is State.CLOSED
    with pytest.raises(RuntimeError):
        rules.on_data(client(Opcode.TEXT, b"hi"), 0)


def test_a_connection_lost_while_closing_is_closed():
    rules = Rules(MAX)
    rules.on_close(CloseCode.TOO_SLOW, "too slow")
    rules.on_lost()
    assert rules.state is State.CLOSED
    assert answered(rules.on_shutdown()) == NOTHING_WRITTEN


# -- however the bytes arrive


#: In a conversation, the client's answer to the server's ping, whatever its payload.
OUR_PONG = "our pong"

RANK = {After.NOTHING: 0, After.AWAIT_CLOSE: 1, After.HANG_UP: 2}


def conversation(frames: list[bytes | str], cut=lambda wire: [wire]) -> tuple[list[Frame], After, State]:
    """The server pings the reader; the reader sends ``frames`` (``OUR_PONG`` answers the
    ping), which arrive cut into reads by ``cut``, while the backlog is small; the server visits
    it again at the timeout. Every frame the reader got, the strongest ``After`` asked for, the
    state at the end."""
    rules = Rules(MAX)
    written, strongest = rules.on_tick(START, TIMEOUT)
    [ping] = received(written)
    wire = b"".join(client(Opcode.PONG, bytes(ping.data)) if item == OUR_PONG else item for item in frames)
    for chunk in cut(wire):
        more, after = rules.on_data(chunk, 0)
        written += more
        strongest = max(strongest, after, key=RANK.__getitem__)
    more, after = rules.on_tick(START + TIMEOUT, TIMEOUT)
    strongest = max(strongest, after, key=RANK.__getitem__)
    return received(written + more), strongest, rules.state


def bytewise(wire: bytes) -> list[bytes]:
    return [wire[i : i + 1] for i in range(len(wire))]


def cut_at(cuts: list[int]):
    def cut(wire: bytes) -> list[bytes]:
        ends = sorted({n % (len(wire) + 1) for n in cuts})
        return [wire[start:end] for start, end in zip([0, *ends], [*ends, len(wire)], strict=True)]

    return cut


GOOD_READER = [
    client(Opcode.TEXT, b"hel", fin=False),
    client(Opcode.PONG, b"unsolicited"),
    client(Opcode.CONT, b"lo"),
    OUR_PONG,
    client(Opcode.TEXT, b"x" * 300),  # a 16-bit length
    client_close(4000, "bye \u2713".encode()),
]
SILENT_BINARY_READER = [client(Opcode.TEXT, b"hello"), client(Opcode.BINARY, b"\x00" * 200), client(Opcode.TEXT, b"!")]


@pytest.mark.parametrize("frames", [GOOD_READER, SILENT_BINARY_READER], ids=["good reader", "binary, no answer"])
def test_a_conversation_split_at_any_byte_gets_the_same_answers(frames):
    whole = conversation(frames)
    assert whole[0][-1].opcode is Opcode.CLOSE  # the story ends in a close
    assert conversation(frames, bytewise) == whole
    pong = client(Opcode.PONG, ping_sent(Rules(MAX), START))
    for n in range(sum(len(pong if item == OUR_PONG else item) for item in frames) + 1):
        assert conversation(frames, cut_at([n])) == whole, n


def test_pings_fed_a_byte_at_a_time_are_each_answered():
    wire = client(Opcode.PING, b"one") + client(Opcode.PING, b"two")
    rules = Rules(MAX)
    written = b"".join(rules.on_data(chunk, 0)[0] for chunk in bytewise(wire))
    assert received(written) == [Frame(Opcode.PONG, b"one"), Frame(Opcode.PONG, b"two")]


client_frames = st.one_of(
    st.builds(client, st.just(Opcode.TEXT), st.binary(max_size=MAX)),
    st.builds(client, st.just(Opcode.BINARY), st.binary(max_size=300)),
    st.builds(client, st.just(Opcode.PONG), st.binary(max_size=125)),
    st.just(OUR_PONG),
    st.builds(client_close, st.sampled_from([None, 1000, 1001, 4000, 1005, 999])),
    st.builds(client_close, st.just(1000), st.sampled_from([b"bye", b"\xff", "\u00e9".encode()])),
)


@given(st.lists(client_frames, max_size=8), st.lists(st.integers(0, 20_000), max_size=12))
def test_however_a_clients_frames_are_split_the_reader_gets_the_same_answers(frames, cuts):
    """Pings aside (one read's pings get one pong), the answers do not depend on how the
    network cut the bytes."""
    assert conversation(frames, cut_at(cuts)) == conversation(frames)


@given(st.lists(st.binary(max_size=125), min_size=1, max_size=8), st.lists(st.integers(0, 2_000), max_size=12))
def test_however_a_clients_pings_are_split_the_latest_is_answered(payloads, cuts):
    wire = b"".join(client(Opcode.PING, payload) for payload in payloads)
    rules = Rules(MAX)
    written = b"".join(rules.on_data(chunk, 0)[0] for chunk in cut_at(cuts)(wire))
    pongs = received(written)
    assert all(pong.opcode is Opcode.PONG for pong in pongs)
    assert pongs[-1].data == payloads[-1]
    pings = iter(payloads)  # and each pong answers one of the pings, in their order
    assert all(any(pong.data == payload for payload in pings) for pong in pongs)
