"""Jobs/s of the ``sharq-fast worker`` command itself (a subprocess, as deployed), on a
private redis-server: N jobs over 1,000 queues with interval 0 are enqueued, then the
worker runs until every job is finished (timed from its start, import and connection
included, to the last finish seen in Redis); the handlers are in bench/worker_rate_handlers.py.

    python bench/worker_rates.py [--n 100000]
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sharq_fast import Client
from sharq_fast._redis_server import RedisServer

HERE = Path(__file__).parent
CASES = [
    ("no-op, 64 threads", "worker_rate_handlers:noop", ["--concurrency", "64"]),
    ("no-op, asyncio 256 tasks", "worker_rate_handlers:anoop", ["--concurrency", "256"]),
    ("1 ms I/O wait, 64 threads", "worker_rate_handlers:wait_1ms", ["--concurrency", "64"]),
    ("1 ms I/O wait, asyncio 256 tasks", "worker_rate_handlers:await_1ms", ["--concurrency", "256"]),
    ("no-op, 2 processes x 64 threads", "worker_rate_handlers:noop", ["--concurrency", "64", "--processes", "2"]),
]


def run_case(server: RedisServer, n: int, handler: str, extra: list) -> float:
    conn = server.client()
    conn.flushall()
    with Client(server.url, key_prefix="wr") as client:
        client.enqueue_many({"queue_type": "bench", "queue_id": f"q{i % 1000}", "job_id": f"j{i}", "payload": {"i": i},
                             "interval": 0} for i in range(n))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    began = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "sharq_fast", "worker", handler, "--url", server.url, "--key-prefix",
                             "wr", "--queue-type", "bench", "--job-expire-interval", "60000", "--no-status", *extra],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while conn.hlen("wr:payload"):
            if proc.poll() is not None:
                raise RuntimeError(f"the worker exited ({proc.returncode})")
            time.sleep(0.01)
        elapsed = time.perf_counter() - began
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        conn.close()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args()
    with RedisServer() as server:
        print(f"sharq-fast worker: {args.n:,} jobs over 1,000 queues, interval 0 (jobs/s, start-up included)")
        for name, handler, extra in CASES:
            print(f"  {name:36} {run_case(server, args.n, handler, extra):>10,.0f}", flush=True)


if __name__ == "__main__":
    main()
