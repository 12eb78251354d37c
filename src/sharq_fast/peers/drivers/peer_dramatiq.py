"""Dramatiq driver (runs in the dramatiq virtualenv; also the worker's actors module).

As Dramatiq's docs say: a ``RedisBroker``, ``actor.send`` per message (Dramatiq has no
bulk enqueue; ``group().run()`` sends them one by one too), and the ``dramatiq`` command
with ``--processes 1 --threads N`` (threads from the suite; Dramatiq's default is 8). No
results middleware (no results kept). Prefetch is Dramatiq's default (2 x threads).

Rate limit (the SharQ case): a ``BucketRateLimiter(backend, tenant, limit=1, bucket=100)``
per tenant around the handler, as the docs' rate-limiting recipe does; a message that
cannot acquire raises ``RateLimitExceeded`` and the Retries middleware sends it back with
a backoff. ``min_backoff`` is the limit's interval (the default, 15 s, would idle the
worker), ``max_backoff`` ten times that, ``max_retries`` unbounded. (``WindowRateLimiter``
counts whole seconds, so it cannot express one job per 100 ms.)
"""

import os
import sys

from _drvlib import redis_url, Recorder, Worker, main as drv_main, run_drain, run_latency, run_rate, spec_from_argv

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.rate_limits import BucketRateLimiter
from dramatiq.rate_limits.backends import RedisBackend

REC = Recorder()
QUEUE = "bench"
URL = redis_url()
INTERVAL_MS = int(os.environ.get("SFB_INTERVAL_MS") or 100)

broker = RedisBroker(url=URL)
dramatiq.set_broker(broker)
_backend = None


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def noop(data):
    REC.handle(data)


@dramatiq.actor(queue_name=QUEUE, max_retries=None, min_backoff=INTERVAL_MS, max_backoff=10 * INTERVAL_MS)
def limited(data):
    global _backend
    if _backend is None:
        _backend = RedisBackend(url=URL)
    with BucketRateLimiter(_backend, data["k"], limit=1, bucket=INTERVAL_MS).acquire():
        REC.handle(data)


def main():
    from importlib import metadata

    import redis

    import peer_dramatiq as actors

    spec = spec_from_argv()
    versions = {"dramatiq": metadata.version("dramatiq"), "redis-py": redis.__version__}

    def enqueue_with(actor):
        def enqueue_all(payloads):
            for p in payloads:
                actor.send(p)

        return enqueue_all

    def start_worker(expect, sleep_ms=0):
        argv = [sys.executable, "-m", "dramatiq", "--processes", "1", "--threads", str(spec["concurrency"]), "peer_dramatiq"]
        return Worker(argv, spec, expect, sleep_ms, env={"SFB_INTERVAL_MS": str(spec.get("interval_ms", 100))})

    drv_main(spec, {
        "enqueue": lambda s: run_drain(s, enqueue_with(actors.noop), start_worker, versions),
        "drain": lambda s: run_drain(s, enqueue_with(actors.noop), start_worker, versions),
        "drain_io": lambda s: run_drain(s, enqueue_with(actors.noop), lambda n: start_worker(n, s["sleep_ms"]), versions),
        "latency": lambda s: run_latency(s, actors.noop.send, start_worker, versions),
        "rate": lambda s: run_rate(s, enqueue_with(actors.limited), start_worker, versions),
    })


if __name__ == "__main__":
    main()
