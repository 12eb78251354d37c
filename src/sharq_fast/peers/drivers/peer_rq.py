"""RQ driver (runs in the rq virtualenv; also the worker's tasks module).

As RQ's docs say: ``Queue.enqueue_many`` of ``Queue.prepare_data(...)`` in a pipeline for
bulk (chunks of 1,000), ``Queue.enqueue`` for one job, and the ``rq worker`` command.
The worker is ``SimpleWorker`` (runs jobs in the worker process): the default ``Worker``
forks a work horse per job, which RQ documents as the safe default, not the fast one; a
worker runs one job at a time either way (RQ scales with more worker processes; the suite
gives every peer one). RQ's default ``result_ttl`` (500 s) is kept: with ``result_ttl=0``
RQ deletes each finished job, which costs it more round trips than letting it expire.
Rate limit: RQ's ``RateLimit`` caps how many jobs of a key run at once (concurrency),
not how often they start: the SharQ case is not supported.
"""

import os
import sys

from _drvlib import Recorder, Worker, main as drv_main, run_drain, run_latency, spec_from_argv

REC = Recorder()
QUEUE = "bench"
CHUNK = 1000


def noop(data):
    REC.handle(data)


def main():
    from importlib import metadata

    import redis
    from rq import Queue

    import peer_rq as tasks  # the module the worker imports: job functions are "peer_rq.noop"

    spec = spec_from_argv()
    conn = redis.Redis.from_url(spec["url"])
    queue = Queue(QUEUE, connection=conn)
    versions = {"rq": metadata.version("rq"), "redis-py": redis.__version__}

    def enqueue_all(payloads):
        for start in range(0, len(payloads), CHUNK):
            with conn.pipeline() as pipe:
                queue.enqueue_many(
                    [Queue.prepare_data(tasks.noop, (p,)) for p in payloads[start : start + CHUNK]],
                    pipeline=pipe,
                )
                pipe.execute()

    def start_worker(expect, sleep_ms=0):
        argv = [sys.executable, "-m", "rq.cli", "worker", "--url", spec["url"], "--worker-class", "rq.worker.SimpleWorker",
                "--logging_level", "WARNING", "--disable-job-desc-logging", QUEUE]
        return Worker(argv, spec, expect, sleep_ms)

    def send_one(p):
        queue.enqueue(tasks.noop, p)

    drv_main(spec, {
        "enqueue": lambda s: run_drain(s, enqueue_all, start_worker, versions),
        "drain": lambda s: run_drain(s, enqueue_all, start_worker, versions),
        "drain_io": lambda s: run_drain(s, enqueue_all, lambda n: start_worker(n, s["sleep_ms"]), versions),
        "latency": lambda s: run_latency(s, send_one, start_worker, versions),
    })


if __name__ == "__main__":
    main()
