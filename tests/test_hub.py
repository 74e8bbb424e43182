"""The hub's bookkeeping without I/O: what a joining reader is given, once and in order, and when."""

from __future__ import annotations

import asyncio

from liveblog.cursor import Cursor
from liveblog.hub import SLICE, START, Subscription, hand_out
from liveblog.metrics import Metrics
from liveblog.storage import LogEvent
from liveblog.wire import CloseCode, Message

TOO_SLOW = CloseCode.TOO_SLOW


class Socket:
    """A reader's connection as the hub sees it: what was written, and how much is unsent."""

    def __init__(self, unsent_after_each: int = 0):
        self.frames: list[bytes] = []
        self.unsent_after_each = unsent_after_each
        self.closed_with: int | None = None

    def send(self, message: Message) -> int:
        self.frames.append(message.ws_frame)
        return self.unsent_after_each * len(self.frames)

    def close(self, code: int, reason: str) -> None:
        self.closed_with = code


def event(n: int) -> Message:
    return Message.event("ep", LogEvent(f"{n}-0", b'{"event":"entry.created","entry":{"n":%d}}' % n, "ep"))


def test_a_batch_the_reader_partly_has_is_delivered_from_where_it_is():
    socket = Socket()
    reader = Subscription("b", socket, limit=1 << 20, metrics=Metrics())
    reader.seek((2, 0))  # caught up from its cursor to event 2
    reader.go_live()
    reader.push(Message.batch([event(1), event(2), event(3), event(4)]))
    reader.push(event(4))  # and nothing twice
    assert socket.frames == [event(3).ws_frame, event(4).ws_frame]


def test_a_batch_is_one_write_of_all_its_frames():
    socket = Socket()
    reader = Subscription("b", socket, limit=1 << 20, metrics=Metrics())
    reader.go_live()
    reader.push(Message.batch([event(1), event(2)]))
    assert socket.frames == [event(1).ws_frame + event(2).ws_frame]


def test_what_arrives_while_joining_is_held_then_delivered_after_the_snapshot():
    socket = Socket()
    reader = Subscription("b", socket, limit=1 << 20, metrics=Metrics())
    reader.push(event(1))
    reader.push(event(2))
    assert socket.frames == []
    snapshot = Message(Cursor("ep", "1-0"), b'{"type":"snapshot"}')
    reader.seek(START)
    reader.send(snapshot)
    reader.go_live()
    assert socket.frames == [snapshot.ws_frame, event(2).ws_frame]


def test_a_reader_whose_backlog_passes_the_limit_is_closed_with_4408():
    socket = Socket(unsent_after_each=400)
    reader = Subscription("b", socket, limit=1000, metrics=Metrics())
    reader.go_live()
    for n in range(1, 5):
        reader.push(event(n))
    assert socket.closed_with == TOO_SLOW
    assert len(socket.frames) == 3  # nothing is written once it is closed


async def test_a_large_fan_out_lets_other_work_run_between_slices_of_readers():
    """A reporter's POST must not wait until 10k readers have been written to."""
    sockets = [Socket() for _ in range(2 * SLICE + 1)]
    readers = [Subscription("b", socket, limit=1 << 20, metrics=Metrics()) for socket in sockets]
    for reader in readers:
        reader.go_live()
    written_when_others_ran: list[int] = []

    async def other_work() -> None:
        while len(written_when_others_ran) < 3:
            written_when_others_ran.append(sum(1 for socket in sockets if socket.frames))
            await asyncio.sleep(0)

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(hand_out(readers, Subscription.push, event(1)))
        tasks.create_task(other_work())
    assert written_when_others_ran == [SLICE, 2 * SLICE, 2 * SLICE + 1]  # it ran after each slice
    assert all(socket.frames == [event(1).ws_frame] for socket in sockets)


def test_a_viewer_count_that_comes_while_joining_is_sent_once_live_after_the_held_events():
    socket = Socket()
    reader = Subscription("b", socket, limit=1 << 20, metrics=Metrics())
    reader.push_ephemeral(Message.viewers(7))
    reader.push(event(1))
    reader.push_ephemeral(Message.viewers(8))  # only the latest count matters
    reader.go_live()
    assert socket.frames == [event(1).ws_frame, Message.viewers(8).ws_frame]


def test_a_reader_is_not_cut_off_for_the_size_of_its_own_snapshot():
    socket = Socket(unsent_after_each=3000)  # a slow phone: nothing drains
    reader = Subscription("b", socket, limit=1000, metrics=Metrics())
    snapshot = Message(Cursor("ep", "1-0"), b'{"type":"snapshot","entries":["%s"]}' % (b"x" * 3000))
    reader.send_snapshot(snapshot)
    reader.go_live()
    assert socket.closed_with is None  # 3,000 bytes unsent, over the limit of 1,000: its snapshot
    reader.push(event(2))
    assert socket.closed_with == TOO_SLOW  # 6,000 unsent: 3,000 of them beyond the snapshot
