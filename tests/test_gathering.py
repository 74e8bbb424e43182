"""When a tail loop gathers: the rules alone, fed the reads' times and ages as a loop would."""

from __future__ import annotations

import pytest

from liveblog.gathering import Gathering, GatherRules

RULES = GatherRules(behind=0.04, span=0.25, window=0.1, hold=1.0)


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
    now = 0.25
    while now < 0.25 + RULES.hold:
        now += 0.2
        gathering.after_read(now, 0.25, 0.15)
    assert gathering.after_read(now + 0.05, 0.3, 0.0) == 0.0  # right after a window: not judged
    assert set(replay(gathering, ungathered(now + 0.1, 0.02, seconds=10))) == {0.0}


def test_rules_must_not_be_negative():
    with pytest.raises(ValueError, match="must not be negative"):
        GatherRules(window=-0.1)
