"""A waiting consumer in a process of its own, for test_wait's wake-up accounting.

    python wait_consumer.py URL PREFIX sync|async QUEUE_TYPE WORK_MS

Takes jobs with ``dequeue(QUEUE_TYPE, timeout=...)`` (one at a time, "working" WORK_MS on
each) until it gets a job whose payload is "stop"; then prints JSON: the ids of the jobs it
got, its dequeue rounds, the rounds that found nothing after a wait (it was woken, or its
poll came, for nothing), and its wake-ups (waits that ended because the channel's count
moved). The poll interval is long, so every wait ends by a wake-up.

The counting wraps sharq_fast's own functions in this process: Redis is real.
"""

import asyncio
import json
import sys
import time
from typing import Any, Dict

from sharq_fast import AsyncClient, Client, _ops, _waker

STATS: Dict[str, Any] = {"jobs": [], "rounds": 0, "empty_after_wait": 0, "wakeups": 0}
_first_round = [False]


def _instrument() -> None:
    # Module globals: dequeue_many calls dequeue_waiting, which calls _dequeue_round.
    dequeue_waiting, dequeue_round = _ops.dequeue_waiting, _ops._dequeue_round

    def counted_dequeue_waiting(*args: Any, **kwargs: Any) -> Any:
        _first_round[0] = True
        return (yield from dequeue_waiting(*args, **kwargs))

    def counted_round(*args: Any) -> Any:
        jobs, next_ready, length = yield from dequeue_round(*args)
        STATS["rounds"] += 1
        if not jobs and not _first_round[0]:
            STATS["empty_after_wait"] += 1
        _first_round[0] = False
        return jobs, next_ready, length

    _ops.dequeue_waiting, _ops._dequeue_round = counted_dequeue_waiting, counted_round

    sync_wait, async_wait = _waker.Waker.wait, _waker.AsyncWaker.wait

    def waker_wait(self: Any, channel: str, seen: int, seconds: float) -> int:
        count = sync_wait(self, channel, seen, seconds)
        STATS["wakeups"] += count != seen
        return count

    async def async_waker_wait(self: Any, channel: str, seen: int, seconds: float) -> int:
        count = await async_wait(self, channel, seen, seconds)
        STATS["wakeups"] += count != seen
        return count

    _waker.Waker.wait, _waker.AsyncWaker.wait = waker_wait, async_waker_wait


SETTINGS = dict(wait_poll_interval=120.0, job_expire_interval=600_000)


def _sync(url: str, prefix: str, queue_type: str, work: float) -> None:
    with Client(url, key_prefix=prefix, **SETTINGS) as client:
        while True:
            job = client.dequeue(queue_type, timeout=120)
            if job is None:
                continue
            client.finish_many([job])
            if job.payload == "stop":
                return
            STATS["jobs"].append(job.job_id)
            time.sleep(work)


async def _async(url: str, prefix: str, queue_type: str, work: float) -> None:
    async with AsyncClient(url, key_prefix=prefix, **SETTINGS) as client:
        while True:
            job = await client.dequeue(queue_type, timeout=120)
            if job is None:
                continue
            await client.finish_many([job])
            if job.payload == "stop":
                return
            STATS["jobs"].append(job.job_id)
            await asyncio.sleep(work)


def main() -> None:
    url, prefix, transport, queue_type, work_ms = sys.argv[1:6]
    _instrument()
    work = int(work_ms) / 1000
    if transport == "sync":
        _sync(url, prefix, queue_type, work)
    else:
        asyncio.run(_async(url, prefix, queue_type, work))
    print(json.dumps(STATS))


if __name__ == "__main__":
    main()
