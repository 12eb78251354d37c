"""SAQ driver (runs in the saq virtualenv; also the worker's settings module).

As SAQ's docs say: ``Queue.from_url`` and ``await queue.enqueue("function", **kwargs)``
(SAQ has no bulk enqueue: the driver awaits 100 at a time with ``asyncio.gather``), and
the ``saq`` command with a settings dict (``--workers 1``). Settings: ``concurrency``
from the suite; ``ttl=-1``: no job record kept after completion (no peer keeps results).
No rate limiter: the SharQ case is not supported.
"""

import asyncio
import os
import sys

from _drvlib import redis_url, Recorder, Worker, main as drv_main, run_drain, run_latency, spec_from_argv

REC = Recorder()
QUEUE = "bench"
GATHER = 100


async def noop(ctx, *, data):
    await REC.ahandle(data)


def _settings():
    from saq import Queue

    return {
        "queue": Queue.from_url(redis_url(), name=QUEUE),
        "functions": [noop],
        "concurrency": int(os.environ.get("SFB_CONCURRENCY") or 10),
    }


if __name__ != "__main__":  # the worker process: the `saq peer_saq.settings` command reads this
    settings = _settings()


def main():
    from importlib import metadata

    import redis
    from saq import Queue

    spec = spec_from_argv()
    loop = asyncio.new_event_loop()
    queue = Queue.from_url(spec["url"], name=QUEUE)
    loop.run_until_complete(queue.connect())
    versions = {"saq": metadata.version("saq"), "redis-py": redis.__version__}

    async def enqueue_many(payloads):
        for start in range(0, len(payloads), GATHER):
            await asyncio.gather(*(queue.enqueue("noop", data=p, ttl=-1) for p in payloads[start : start + GATHER]))

    def enqueue_all(payloads):
        loop.run_until_complete(enqueue_many(payloads))

    def send_one(p):
        loop.run_until_complete(queue.enqueue("noop", data=p, ttl=-1))

    def start_worker(expect, sleep_ms=0):
        argv = [sys.executable, "-m", "saq", "--workers", "1", "peer_saq.settings"]
        return Worker(argv, spec, expect, sleep_ms, env={"SFB_CONCURRENCY": str(spec["concurrency"])})

    def close():
        loop.run_until_complete(queue.disconnect())

    drv_main(spec, {
        "enqueue": lambda s: run_drain(s, enqueue_all, start_worker, versions),
        "drain": lambda s: run_drain(s, enqueue_all, start_worker, versions),
        "drain_io": lambda s: run_drain(s, enqueue_all, lambda n: start_worker(n, s["sleep_ms"]), versions),
        "latency": lambda s: run_latency(s, send_one, start_worker, versions, close),
    })


if __name__ == "__main__":
    main()
