"""When a tail loop gathers: the rules alone, fed the reads' times and ages as a loop would."""

from __future__ import annotations

import time

import pytest

from liveblog.gathering import Gathering, GatherRules
from liveblog.storage import LogEvent
from liveblog.tailer import _age

RULES = GatherRules(behind=0.04, span=0.25, window=0.1, hold=1.0, max_hold=1.0)


def replay(gathering: Gathering, reads: list[tuple[float, float | None]], away: float = 0.0) -> list[float]:
    """The waits a loop would choose after each of ``reads`` (time, age of the oldest event), each
    issued ``away`` seconds after the one before returned."""
    return [gathering.after_read(now, age, away) for now, age in reads]


def ungathered(start: float, age: float, seconds: float, every: float = 0.05) -> list[tuple[float, float | None]]:
    steps = round(seconds / every)
    return [(start + i * every, age) for i in range(steps + 1)]


def test_a_loop_that_keeps_up_never_waits():
    gathering = Gathering(RULES)
    assert set(replay(gathering, ungathered(0.0, 0.02, seconds=10))) == {0.0}


def test_a_rounds_own_fan_out_is_not_lag():
    """One blog's event to 10k readers takes ~50 ms: the next read's events waited that long,
    but the reads themselves were quick."""
    gathering = Gathering(RULES)
    assert set(replay(gathering, ungathered(0.0, 0.09, seconds=10, every=0.06), away=0.06)) == {0.0}


def test_one_slow_read_is_not_a_span_of_them():
    gathering = Gathering(RULES)
    reads = ungathered(0.0, 0.02, seconds=1)
    for i in (5, 6):  # a GC pause, a large join: two of the six reads of a span
        reads[i] = (reads[i][0], 0.9)
    assert set(replay(gathering, reads)) == {0.0}


def test_an_idle_read_starts_the_span_again():
    gathering = Gathering(RULES)
    waits = replay(gathering, [(0.0, 0.2), (0.1, 0.2), (0.2, None), (0.3, 0.2), (0.4, 0.2)])
    assert waits == [0.0] * 5, "0.4 s of behind reads, but the idle one at 0.2 s splits them"
    assert gathering.after_read(0.55, 0.2, 0.0) == RULES.window, "0.25 s of behind reads since 0.3 s"


def test_a_loop_behind_for_a_span_gathers_and_keeps_gathering_while_it_stays_behind():
    gathering = Gathering(RULES)
    waits = replay(gathering, ungathered(0.0, 0.15, seconds=0.25))
    assert waits[-1] == RULES.window and set(waits[:-1]) == {0.0}
    # The hold: a window before every read for a second, whatever the reads find.
    now = 0.25
    while now + 0.2 < 0.25 + RULES.hold:
        now += 0.2
        assert gathering.after_read(now, 0.01, 0.15) == RULES.window
    # Then reads without a window: the first is not judged (its events waited the window), the
    # span after it is, and the loop is still behind: it gathers again.
    now = 0.25 + RULES.hold + 0.05
    assert gathering.after_read(now, 0.3, 0.0) == 0.0
    waits = replay(gathering, ungathered(now + 0.05, 0.15, seconds=0.25))
    assert waits[-1] == RULES.window and set(waits[:-1]) == {0.0}


def test_gathering_lets_go_after_its_hold_when_ungathered_reads_keep_up():
    gathering = Gathering(RULES)
    replay(gathering, ungathered(0.0, 0.15, seconds=0.25))
    # Gathered rounds are long and their events old (the window, and a fan-out to every blog):
    # that must not count as behind, or gathering would feed itself.
    now = 0.27  # off the hold's end (1.25 s), so that each read is plainly in it or after it
    while now < 0.25 + RULES.hold:
        assert gathering.after_read(now, 0.25, 0.15) == RULES.window
        now += 0.2
    assert gathering.after_read(now, 0.3, 0.0) == 0.0  # right after a window: not judged
    assert set(replay(gathering, ungathered(now + 0.05, 0.02, seconds=10))) == {0.0}


def test_rules_must_not_be_negative():
    with pytest.raises(ValueError, match="must not be negative"):
        GatherRules(window=-0.1)


def gathered_for(gathering: Gathering, start: float, age: float) -> tuple[float, float]:
    """Feed a span of ungathered reads of ``age`` from ``start``, then gathered reads every 0.1 s
    while the loop waits a window before each; return (when the hold ended, how long it held, to
    within the 0.1 s between reads)."""
    now = start
    while gathering.after_read(now, age, 0.0) == 0.0:  # behind within two spans
        now += 0.05
        assert now < start + 0.5
    began = now
    while gathering.after_read(now + 0.1, 0.2, 0.1) == RULES.window:
        now += 0.1
    now += 0.1
    return now, now - began


def test_a_burst_costs_a_short_hold_and_a_loop_that_stays_behind_holds_longer_each_time():
    rules = GatherRules(behind=0.04, span=0.25, window=0.1, hold=0.3, max_hold=1.2)
    gathering = Gathering(rules)
    holds = []
    now = 0.0
    for _ in range(4):  # behind before every hold
        now, held = gathered_for(gathering, now + 0.05, 0.15)
        holds.append(held)
    assert holds == pytest.approx([0.35, 0.65, 1.25, 1.25], abs=0.051)
    # A span that keeps up, and the next burst costs a short hold again.
    replay(gathering, ungathered(now + 0.05, 0.01, seconds=0.3))
    _, held = gathered_for(gathering, now + 0.5, 0.15)
    assert held == pytest.approx(0.35, abs=0.051)


def test_an_idle_read_makes_the_next_hold_short_again():
    rules = GatherRules(behind=0.04, span=0.25, window=0.1, hold=0.3, max_hold=1.2)
    gathering = Gathering(rules)
    now, _ = gathered_for(gathering, 0.0, 0.15)
    now, _ = gathered_for(gathering, now + 0.05, 0.15)  # the second hold was 0.6 s
    assert gathering.after_read(now + 0.05, None, 0.0) == 0.0
    _, held = gathered_for(gathering, now + 0.1, 0.15)
    assert held == pytest.approx(0.35, abs=0.051)


def test_the_longest_hold_must_not_be_shorter_than_the_first():
    with pytest.raises(ValueError, match="max_hold"):
        GatherRules(hold=1.0, max_hold=0.5)


def test_a_read_is_as_late_as_its_oldest_event_by_the_redis_nodes_clock():
    """A node whose clock is 5 s behind ours stamps a just-written event 5 s in the past: by its
    offset the event is new, not a loop 5 s behind (which would gather for good)."""
    now_ms = int(time.time() * 1000)
    batch = [
        ("a", [LogEvent(f"{now_ms - 5000}-0", b"{}", "e"), LogEvent(f"{now_ms - 4000}-0", b"{}", "e")]),
        ("b", []),
        ("c", [LogEvent(f"{now_ms - 4500}-0", b"{}", "e")]),
    ]
    skewed = _age(batch, -5.0)
    assert 4.9 < (_age(batch, 0.0) or 0) < 6, "the oldest event, by the node's stamps"
    assert skewed is not None and skewed < 1, "the node's clock is 5 s behind ours"
    assert _age([("b", [])], 0.0) is None


def test_a_read_that_finds_nothing_ends_a_hold_at_once():
    """The news stopped: a loop that gathered has nothing left to gather, and the next post goes
    out without a window."""
    gathering = Gathering(RULES)
    replay(gathering, ungathered(0.0, 0.15, seconds=0.25))
    assert gathering.after_read(0.4, 0.2, 0.1) == RULES.window, "in the hold"
    assert gathering.after_read(0.5, None, 0.1) == 0.0
    assert gathering.after_read(0.55, 0.01, 0.0) == 0.0, "the hold is over"
