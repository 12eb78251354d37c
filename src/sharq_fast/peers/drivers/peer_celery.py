"""Celery driver (runs in the celery virtualenv; also the worker's app module).

As Celery's docs say: a ``Celery`` app on the Redis broker, ``apply_async`` with one
producer held for the whole batch (``app.producer_or_acquire()``: Celery has no bulk
send; ``group().apply_async()`` sends one message per task as well, with more
bookkeeping), and the ``celery worker`` command in ONE process: ``--pool threads`` with
``-c N`` (from the suite). Settings: ``task_ignore_result`` (no result backend, no results
kept), ``worker_prefetch_multiplier = 64`` (Celery's docs advise a high multiplier for
many short tasks; the default, 4, starves a fast worker), gossip/mingle/heartbeat off
(cluster chatter a single worker does not need), log level WARNING.
Rate limit: Celery's ``rate_limit`` limits a task type in one worker, not a key
(tenant) across workers: the SharQ case is not supported.
"""

import os
import sys

from _drvlib import Recorder, Worker, main as drv_main, redis_url, run_drain, run_latency, spec_from_argv

from celery import Celery

REC = Recorder()
QUEUE = "bench"

app = Celery("peer_celery", broker=redis_url())
app.conf.update(
    task_ignore_result=True,
    task_default_queue=QUEUE,
    worker_prefetch_multiplier=64,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=True,
)


@app.task(name="noop", ignore_result=True)
def noop(data):
    REC.handle(data)


def main():
    from importlib import metadata

    import kombu
    import redis

    import peer_celery as tasks

    spec = spec_from_argv()
    versions = {"celery": metadata.version("celery"), "kombu": kombu.__version__, "redis-py": redis.__version__}

    def enqueue_all(payloads):
        with tasks.app.producer_or_acquire() as producer:
            for p in payloads:
                tasks.noop.apply_async((p,), producer=producer)

    def send_one(p):
        tasks.noop.apply_async((p,))

    def start_worker(expect, sleep_ms=0):
        argv = [sys.executable, "-m", "celery", "-A", "peer_celery", "worker",
                "--pool", "threads", "--concurrency", str(spec["concurrency"]), "--loglevel", "WARNING",
                "--without-gossip", "--without-mingle", "--without-heartbeat", "-Q", QUEUE]
        return Worker(argv, spec, expect, sleep_ms)

    drv_main(spec, {
        "enqueue": lambda s: run_drain(s, enqueue_all, start_worker, versions),
        "drain": lambda s: run_drain(s, enqueue_all, start_worker, versions),
        "drain_io": lambda s: run_drain(s, enqueue_all, lambda n: start_worker(n, s["sleep_ms"]), versions),
        "latency": lambda s: run_latency(s, send_one, start_worker, versions),
    })


if __name__ == "__main__":
    main()
