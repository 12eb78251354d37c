"""Plivo's sharq 1.3.0 driver (runs in the sharq 1.3.0 virtualenv of ``sharq-fast
compare``; also its worker script).

sharq 1.3.0 has no batch calls: ``SharQ.enqueue`` per job, and a worker loop of
``dequeue`` / handler / ``finish``, one job at a time, sleeping POLL_S when nothing is
ready (SharQ is polled). For the 1 ms I/O drain the worker runs that loop in N threads
(from the suite), as a SharQ user would to overlap waits. Same queues as sharq_fast's
driver: one queue with interval 0, and a queue per tenant in the SharQ case.
"""

import os
import sys
import threading
import time

from _drvlib import Recorder, Worker, main as drv_main, redis_url, run_drain, run_latency, run_rate, spec_from_argv

QUEUE_TYPE = "bench"
POLL_S = 0.005


def _config(workdir):
    """A sharq.conf for this run's Redis (sharq 1.3.0 is configured by file only)."""
    from urllib.parse import urlparse

    url = urlparse(redis_url())
    path = os.path.join(workdir, "sharq.conf")
    with open(path, "w") as f:
        f.write("[sharq]\njob_expire_interval = 600000\njob_requeue_interval = 1000\ndefault_job_requeue_limit = -1\n\n"
                "[redis]\ndb = %s\nkey_prefix = sharq_server\nconn_type = tcp_sock\nhost = %s\nport = %d\npassword = \n"
                "clustered = false\n" % ((url.path or "/0").strip("/") or 0, url.hostname, url.port or 6379))
    return path


def _loop(sq, rec):
    while True:
        job = sq.dequeue(QUEUE_TYPE)
        if job["status"] != "success":
            time.sleep(POLL_S)
            continue
        rec.handle(job["payload"])
        sq.finish(job["job_id"], job["queue_id"], QUEUE_TYPE)


def _worker_main():
    from sharq import SharQ

    sq = SharQ(os.environ["SFB_CONF"])
    # Warm-up: have redis-py load the dequeue and finish scripts (on a queue type no job
    # uses), or the first dequeue's round trip loads them after taking its timestamp.
    sq.dequeue("warmup")
    sq.finish("none", "none", "warmup")
    rec = Recorder()
    threads = int(os.environ.get("SFB_THREADS") or 1)
    for _ in range(threads - 1):
        threading.Thread(target=_loop, args=(sq, rec), daemon=True).start()
    _loop(sq, rec)


def main():
    from importlib import metadata

    import msgpack
    import redis
    from sharq import SharQ

    spec = spec_from_argv()
    conf = _config(spec["workdir"])
    sq = SharQ(conf)
    versions = {"sharq": metadata.version("sharq"), "msgpack": ".".join(map(str, msgpack.version)),
                "redis-py": redis.__version__}
    interval = spec.get("interval_ms", 100)

    def enqueue_with(interval_ms):
        def enqueue_all(payloads):
            for p in payloads:
                sq.enqueue(p, interval_ms, "j%d" % p["n"], p.get("k", "q0"), QUEUE_TYPE)

        return enqueue_all

    def start_worker(expect, sleep_ms=0):
        threads = spec["concurrency"] if spec["workload"] == "drain_io" else 1
        argv = [sys.executable, os.path.abspath(__file__), "worker"]
        return Worker(argv, spec, expect, sleep_ms, env={"SFB_CONF": conf, "SFB_THREADS": str(threads)})

    drv_main(spec, {
        "enqueue": lambda s: run_drain(s, enqueue_with(0), start_worker, versions),
        "drain": lambda s: run_drain(s, enqueue_with(0), start_worker, versions),
        "drain_io": lambda s: run_drain(s, enqueue_with(0), lambda n: start_worker(n, s["sleep_ms"]), versions),
        "latency": lambda s: run_latency(s, lambda p: enqueue_with(0)([p]), start_worker, versions),
        "rate": lambda s: run_rate(s, enqueue_with(interval), start_worker, versions),
    })


if __name__ == "__main__":
    if sys.argv[1:] == ["worker"]:
        _worker_main()
    else:
        main()
