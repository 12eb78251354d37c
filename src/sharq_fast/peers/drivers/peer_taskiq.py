"""taskiq driver (runs in the taskiq virtualenv with taskiq-redis; also the worker's
broker module).

As taskiq's docs say: taskiq-redis's ``ListQueueBroker`` (LPUSH/BRPOP; its
``RedisStreamBroker`` adds acknowledgements, which no other list-based peer here has),
``await task.kiq(...)`` per message (no bulk call: the driver awaits 100 at a time with
``asyncio.gather``), and the ``taskiq worker`` command with ``--workers 1`` and
``--max-async-tasks N`` (from the suite). No result backend (no results kept). No rate
limiter: the SharQ case is not supported.
"""

import asyncio
import os
import sys

from _drvlib import Recorder, Worker, main as drv_main, redis_url, run_drain, run_latency, spec_from_argv

from taskiq_redis import ListQueueBroker

REC = Recorder()
GATHER = 100

broker = ListQueueBroker(url=redis_url(), queue_name="bench")


@broker.task(task_name="noop")
async def noop(data):
    await REC.ahandle(data)


def main():
    from importlib import metadata

    import redis

    import peer_taskiq as tasks

    spec = spec_from_argv()
    loop = asyncio.new_event_loop()
    loop.run_until_complete(tasks.broker.startup())
    versions = {"taskiq": metadata.version("taskiq"), "taskiq-redis": metadata.version("taskiq-redis"),
                "redis-py": redis.__version__}

    async def enqueue_many(payloads):
        for start in range(0, len(payloads), GATHER):
            await asyncio.gather(*(tasks.noop.kiq(p) for p in payloads[start : start + GATHER]))

    def enqueue_all(payloads):
        loop.run_until_complete(enqueue_many(payloads))

    def send_one(p):
        loop.run_until_complete(tasks.noop.kiq(p))

    def start_worker(expect, sleep_ms=0):
        argv = [sys.executable, "-m", "taskiq", "worker", "peer_taskiq:broker",
                "--workers", "1", "--max-async-tasks", str(spec["concurrency"]), "--log-level", "WARNING"]
        return Worker(argv, spec, expect, sleep_ms)

    def close():
        loop.run_until_complete(tasks.broker.shutdown())

    drv_main(spec, {
        "enqueue": lambda s: run_drain(s, enqueue_all, start_worker, versions),
        "drain": lambda s: run_drain(s, enqueue_all, start_worker, versions),
        "drain_io": lambda s: run_drain(s, enqueue_all, lambda n: start_worker(n, s["sleep_ms"]), versions),
        "latency": lambda s: run_latency(s, send_one, start_worker, versions, close),
    })


if __name__ == "__main__":
    main()
