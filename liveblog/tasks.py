"""Background loops that end when they are cancelled, even when a callee lost the cancellation.

A cancellation can be lost on Python 3.11: ``asyncio.wait_for`` returns the awaited result
instead of raising when that result arrived in the same moment as the cancellation (CPython
gh-86296, fixed in 3.12). redis-py sends every command through ``wait_for`` when a socket
timeout is set, as ours is, so a loop cancelled while it talks to Redis may carry on as if
nothing had happened, and the shutdown waiting for it never ends. Every loop that runs until
cancelled calls :func:`checkpoint` once per round.
"""

from __future__ import annotations

import asyncio


def checkpoint() -> None:
    """Raise :class:`asyncio.CancelledError` if the current task was cancelled and a callee
    swallowed it (the task's cancellation count says so; ``asyncio.timeout`` and ``TaskGroup``
    take back the cancellations they consume, so a count above zero is one still owed)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
