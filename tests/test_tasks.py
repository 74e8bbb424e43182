"""Background loops end when the process stops, even when a cancellation gets lost on the way.

On Python 3.11 redis-py can swallow a cancellation that lands while it sends a command (see
liveblog.tasks). A scheduler that carried on would keep a stopping process alive until its
shutdown gave up; these stories cancel real loops mid-conversation with a real Redis, many times.
"""

from __future__ import annotations

import asyncio

from liveblog.metrics import Metrics
from liveblog.scheduler import Scheduler
from liveblog.store import Store
from liveblog.tasks import checkpoint
from liveblog.topology import connect

#: Cancellations per story: each lands at a different point of a round with Redis.
ROUNDS = 40


async def test_a_scheduler_cancelled_while_it_talks_to_redis_always_ends(redis_server):
    client = await connect(redis_server.url)
    try:
        scheduler = Scheduler(Store(client), Metrics(), interval=0, published=lambda blog_id: None)
        still_running = 0
        for round_ in range(ROUNDS):
            task = asyncio.create_task(scheduler.run())
            for _ in range(1 + round_ % 7):  # let it get a few commands into its conversation
                await asyncio.sleep(0)
            await asyncio.sleep(0.0005 * (round_ % 4))
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=5)  # not a speed bound: "never ends" fails here
            if not done:
                still_running += 1
                while not task.done():
                    task.cancel()
                    await asyncio.wait([task], timeout=1)
        assert still_running == 0, f"{still_running} of {ROUNDS} cancelled schedulers kept running"
    finally:
        await client.aclose()


async def test_a_checkpoint_raises_the_cancellation_a_callee_swallowed():
    entered = asyncio.Event()
    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while True:
            checkpoint()
            rounds += 1
            try:  # what asyncio.wait_for does on 3.11 when its result came with the cancellation
                entered.set()
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass

    task = asyncio.create_task(loop())
    await entered.wait()
    task.cancel()
    await asyncio.wait([task])
    assert task.cancelled()
    assert rounds == 1
