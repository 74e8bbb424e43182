"""Deadlines of one length for many connections, kept by one timer of the event loop.

Every connection's request head is due within the same ``head_timeout`` (:mod:`liveblog.guard`).
One ``loop.call_later`` per connection, cancelled as soon as its head arrives, made a timer
handle and a heap push and removal per accept: a visible share of a join storm, which is tens
of thousands of heads that all arrive in time. Since every deadline here is its start plus the
same delay, the order they were started in is the order they fall due in: a dict keeps them in
that order, starting or stopping one is a dict operation, and a single timer, set for the
earliest, calls whatever is overdue when it fires and sets itself for the next.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

log = logging.getLogger(__name__)

#: How early a deadline may be called: the loop's timers fire to about a millisecond, and a
#: timer that fired a hair early must not have to be set again for the same moment.
RESOLUTION = 0.001


class Overdue(Protocol):
    def overdue(self) -> None:
        """Its deadline passed without :meth:`Deadlines.stop`."""


class Deadlines:
    """Calls ``overdue()`` of each thing ``delay`` seconds after :meth:`start`, unless it was
    :meth:`stop`-ped first. Lives with one event loop at a time: used from another (a test's
    next loop), it forgets what the old one had started."""

    def __init__(self, delay: float):
        self.delay = delay
        self._due: dict[Overdue, float] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._due)

    def start(self, thing: Overdue) -> None:
        """(Re)start ``thing``'s deadline: due ``delay`` seconds from now."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._timer = loop, None
            self._due.clear()
        self._due.pop(thing, None)  # to the end: the order stays the order of the deadlines
        due = self._due[thing] = loop.time() + self.delay
        if self._timer is None:
            self._timer = loop.call_at(due, self._fire)

    def stop(self, thing: Overdue) -> None:
        """``thing`` made it in time (or is gone): no call for it. (The timer is left as it is:
        firing for nothing costs less than setting it again for every stop.)"""
        self._due.pop(thing, None)

    def _fire(self) -> None:
        loop = self._loop
        assert loop is not None
        self._timer = None
        now = loop.time() + RESOLUTION
        overdue = []
        for thing, due in self._due.items():
            if due > now:
                break
            overdue.append(thing)
        for thing in overdue:
            del self._due[thing]
        try:
            for thing in overdue:
                try:
                    thing.overdue()
                except Exception:  # one connection's failure must not leave the others' deadlines unkept
                    log.exception("handling an overdue deadline of %r failed", thing)
        finally:
            if self._due and self._timer is None:
                self._timer = loop.call_at(next(iter(self._due.values())), self._fire)
