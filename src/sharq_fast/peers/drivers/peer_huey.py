"""Huey driver (runs in the huey virtualenv; also the consumer's module).

As Huey's docs say: a ``RedisHuey`` (``blocking=True``: BRPOP, its default), calling the
task enqueues it (Huey has no bulk enqueue), and the ``huey_consumer`` command with
``-k thread -w N`` (threads from the suite) in one process. ``results=False``: no result
store (no peer keeps results); ``-q`` (warnings only); ``-s 1``, its shortest scheduler
interval (the scheduler releases delayed retries).

Rate limit (the SharQ case): ``huey.rate_limit(tenant, 1, 0.1)`` around the handler (its
fixed-window limiter; a task over the limit is retried when the window resets, through the
scheduler). Huey counts windows as ``int(time.time()) // per``, whole seconds divided by
`per`, so a sub-second limit behaves as one job per tenant per second: what users of this
setting get, reported as measured.
"""

import os
import sys

from _drvlib import Recorder, Worker, main as drv_main, redis_url, run_drain, run_latency, run_rate, spec_from_argv

from huey import RedisHuey

REC = Recorder()
INTERVAL_S = int(os.environ.get("SFB_INTERVAL_MS") or 100) / 1000.0

huey = RedisHuey("bench", url=redis_url(), results=False, blocking=True)


@huey.task(name="noop")
def noop(data):
    REC.handle(data)


@huey.task(name="limited", retries=1000000)
def limited(data):
    with huey.rate_limit(data["k"], 1, INTERVAL_S):
        REC.handle(data)


def main():
    from importlib import metadata

    import redis

    import peer_huey as tasks

    spec = spec_from_argv()
    versions = {"huey": metadata.version("huey"), "redis-py": redis.__version__}

    def enqueue_with(task):
        def enqueue_all(payloads):
            for p in payloads:
                task(p)

        return enqueue_all

    def start_worker(expect, sleep_ms=0):
        argv = [sys.executable, "-m", "huey.bin.huey_consumer", "peer_huey.huey", "-k", "thread",
                "-w", str(spec["concurrency"]), "-q", "-s", "1"]
        return Worker(argv, spec, expect, sleep_ms, env={"SFB_INTERVAL_MS": str(spec.get("interval_ms", 100))})

    drv_main(spec, {
        "enqueue": lambda s: run_drain(s, enqueue_with(tasks.noop), start_worker, versions),
        "drain": lambda s: run_drain(s, enqueue_with(tasks.noop), start_worker, versions),
        "drain_io": lambda s: run_drain(s, enqueue_with(tasks.noop), lambda n: start_worker(n, s["sleep_ms"]), versions),
        "latency": lambda s: run_latency(s, tasks.noop, start_worker, versions),
        "rate": lambda s: run_rate(s, enqueue_with(tasks.limited), start_worker, versions),
    })


if __name__ == "__main__":
    main()
