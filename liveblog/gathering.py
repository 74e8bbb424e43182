"""When a tail loop is behind, and how long it waits before its next read to gather events.

Under overload a write per reader per event is most of a process's time (bench/RESULTS.md,
"many blogs"). A loop that is behind can instead wait a short window before its next read, so
that each reader gets several events in one write. That buys deliveries/s with latency, so it
must happen only while the loop really is behind and stop as soon as it is not:

- A read's *lag* is how long its oldest event waited, less the time the loop spent away from
  reading since its previous read returned (handing out, a window of its own): what is left is
  how long the reads themselves took, i.e. how long a busy loop made their replies wait. A round's
  own fan-out is not lag (one blog's event to 10k readers takes ~50 ms, and the loop keeps up),
  nor is a window.
- *Behind* is judged on reads that no window came before: over a span of at least ``span``
  seconds of such reads, more than half of them lagged ``behind`` seconds or more (a median: a few
  slow reads, a GC pause, a large join, do not make a span behind). A read that finds nothing
  means the loop is idle, and starts the span again.
- Once behind, the loop waits ``window`` before each read for a hold, then reads without
  waiting again and judges afresh (the read right after the last window is not judged), so
  gathering cannot feed itself: it lasts while the ungathered reads in between say the loop is
  behind, and no longer.
- The first hold is short (``hold``), and each span judged behind right after one doubles the
  next, up to ``max_hold``; a span that is not behind makes it short again. A burst of outside
  load costs a few windows; a loop that stays behind spends most of its time gathered, not
  probing. A read that finds nothing ends a hold at once (the news stopped), and makes the next
  one short.

No I/O here: :class:`Gathering` is fed each read's time and age by the tail loop.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Lag (seconds) from which a read is behind. An ungathered loop at 100 blogs x 100 readers near
#: full CPU has reads that lag ~15-20 ms, past its saturation ~60-80 ms (bench/RESULTS.md,
#: "Gathering under overload").
BEHIND = 0.04
#: Seconds of ungathered reads that are judged together.
SPAN = 0.25
#: Seconds a loop that is behind waits before each read.
WINDOW = 0.1
#: Seconds a loop first gathers before it reads without waiting again, to see whether it still must.
HOLD = 0.25
#: The longest hold, reached by doubling while the loop stays behind.
MAX_HOLD = 2.0


@dataclass(frozen=True)
class GatherRules:
    """The numbers of the rules above; tests choose their own."""

    behind: float = BEHIND
    span: float = SPAN
    window: float = WINDOW
    hold: float = HOLD
    max_hold: float = MAX_HOLD

    def __post_init__(self) -> None:
        if min(self.span, self.window, self.hold) < 0:
            raise ValueError(f"gathering's span, window and hold must not be negative: {self}")
        if self.max_hold < self.hold:
            raise ValueError(f"gathering's max_hold must not be shorter than its hold: {self}")


#: The rules a process uses.
RULES = GatherRules()


class Gathering:
    """One tail loop's state: call :meth:`after_read` after every read."""

    def __init__(self, rules: GatherRules):
        self._rules = rules
        self._until = float("-inf")  # gathering while a read returns before this
        self._windowed = False  # the last read came after a window
        self._since = 0.0  # when the span being judged started
        self._reads = 0  # reads in it
        self._late = 0  # those of them that were behind
        self._hold = rules.hold  # the next hold

    def after_read(self, now: float, age: float | None, away: float) -> float:
        """Seconds to wait before the next read, for a read that returned at ``now`` (a
        monotonic clock) and found events whose oldest had waited ``age`` seconds (None: it
        found none), issued ``away`` seconds after the loop's previous read returned."""
        rules = self._rules
        if age is None:  # an idle read, even in a hold: the loop kept up
            self._until, self._windowed = float("-inf"), False
            self._reads, self._hold = 0, rules.hold
            return 0.0
        if now < self._until:
            self._windowed = True
            return rules.window
        if self._windowed:  # its age is the window's
            self._windowed = False
            self._reads = 0
            return 0.0
        if not self._reads:
            self._since, self._late = now, 0
        self._reads += 1
        self._late += age - away >= rules.behind
        if now - self._since < rules.span:
            return 0.0
        behind = 2 * self._late > self._reads
        self._reads = 0
        if not behind or not rules.window:
            self._hold = rules.hold
            return 0.0
        self._until = now + self._hold
        self._hold = min(2 * self._hold, rules.max_hold)
        self._windowed = True
        return rules.window
