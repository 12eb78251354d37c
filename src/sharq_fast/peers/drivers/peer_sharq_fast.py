"""sharq_fast driver (runs in sharq_fast's own environment; also its worker script).

Bulk enqueue: ``Client.enqueue_many`` (a generator of job dicts; its default chunking).
One job: ``Client.enqueue``. The worker is sharq_fast's ``Consumer`` (threads: one for
the drains, 32 for drain_io): the wait-aware ``dequeue_many`` for its free capacity,
batched ``finish_many``, no polling; SIGTERM (the runner's stop) drains it.

Jobs: queue type "bench"; the drains and the latency run use one queue with interval 0
(like the single list of every other peer); the SharQ case puts each tenant in a queue of
its own with the limit as its interval.
"""

import os
import sys

from _drvlib import Recorder, Worker, main as drv_main, redis_url, run_drain, run_latency, run_rate, spec_from_argv

QUEUE_TYPE = "bench"
EXPIRE_MS = 600_000  # no job is requeued during a run (no requeuer runs either)


def consume(client, rec, workload, concurrency):
    """The worker: a Consumer with `concurrency` threads, until SIGTERM."""
    from sharq_fast import Consumer

    Consumer(client, QUEUE_TYPE, lambda job: rec.handle(job.payload), concurrency=concurrency, requeuer=False).run()


def _worker_main():
    from sharq_fast import Client

    client = Client(redis_url(), job_expire_interval=EXPIRE_MS)
    # Warm-up: load the scripts now, or the first dequeue's round trip also loads them and
    # its timestamp (which the queue's interval counts from) is taken well before its jobs start.
    client.load_scripts()
    consume(client, Recorder(), os.environ["SFB_WORKLOAD"], int(os.environ.get("SFB_CONCURRENCY") or 1))


def _job(p, interval=0):
    return {"queue_type": QUEUE_TYPE, "queue_id": p.get("k", "q0"), "job_id": "j%d" % p["n"], "payload": p,
            "interval": interval}


def main():
    import redis

    import sharq_fast
    from sharq_fast import Client

    spec = spec_from_argv()
    client = Client(spec["url"], job_expire_interval=EXPIRE_MS)
    versions = {"sharq_fast": sharq_fast.__version__, "core": "compiled" if sharq_fast.USE_EXTENSIONS else "pure",
                "redis-py": redis.__version__}
    interval = spec.get("interval_ms", 100)

    def enqueue_all(payloads):
        client.enqueue_many(_job(p) for p in payloads)

    def enqueue_rate(payloads):
        client.enqueue_many(_job(p, interval) for p in payloads)

    def send_one(p):
        client.enqueue(**_job(p))

    def start_worker(expect, sleep_ms=0):
        argv = [sys.executable, os.path.abspath(__file__), "worker"]
        env = {"SFB_WORKLOAD": spec["workload"], "SFB_CONCURRENCY": str(spec["concurrency"])}
        return Worker(argv, spec, expect, sleep_ms, env=env)

    drv_main(spec, {
        "enqueue": lambda s: run_drain(s, enqueue_all, start_worker, versions),
        "drain": lambda s: run_drain(s, enqueue_all, start_worker, versions),
        "drain_io": lambda s: run_drain(s, enqueue_all, lambda n: start_worker(n, s["sleep_ms"]), versions),
        "latency": lambda s: run_latency(s, send_one, start_worker, versions),
        "rate": lambda s: run_rate(s, enqueue_rate, start_worker, versions),
    })


if __name__ == "__main__":
    if sys.argv[1:] == ["worker"]:
        _worker_main()
    else:
        main()
