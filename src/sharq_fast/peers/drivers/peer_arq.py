"""arq driver (runs in the arq virtualenv; also the worker's settings module).

As arq's docs say: ``ArqRedis.enqueue_job`` (arq has no bulk call: the driver awaits 100
of them at a time with ``asyncio.gather``), and the ``arq`` command with a
``WorkerSettings`` class. Settings: ``max_jobs`` (its concurrency) from the suite,
``keep_result = 0`` (no results kept, as for every peer), ``poll_delay`` 5 ms: arq polls
its queue and sleeps what is left of ``poll_delay`` (default 0.5 s) after each poll, which
alone would cap a drain at a few hundred jobs/s; 5 ms is the poll interval every polling
peer gets (sharq, sharq_fast). No rate limiter: the SharQ case is not supported.
"""

import asyncio
import os
import sys

from _drvlib import redis_url, Recorder, Worker, main as drv_main, run_drain, run_latency, spec_from_argv

REC = Recorder()
QUEUE = "arq:queue"
GATHER = 100
POLL_S = 0.005


async def noop(ctx, data):
    await REC.ahandle(data)


#: arq's own logging at WARNING (its default logs two lines per job; every peer logs warnings only).
LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"arq.standard": {"level": "WARNING", "class": "logging.StreamHandler"}},
    "loggers": {"arq": {"handlers": ["arq.standard"], "level": "WARNING"}},
}


class WorkerSettings:
    from arq.connections import RedisSettings

    functions = [noop]
    redis_settings = RedisSettings.from_dsn(redis_url())
    max_jobs = int(os.environ.get("SFB_CONCURRENCY") or 10)
    keep_result = 0
    poll_delay = POLL_S
    handle_signals = True


def main():
    from importlib import metadata

    import redis
    from arq import create_pool
    from arq.connections import RedisSettings

    spec = spec_from_argv()
    loop = asyncio.new_event_loop()
    pool = loop.run_until_complete(create_pool(RedisSettings.from_dsn(spec["url"])))
    versions = {"arq": metadata.version("arq"), "redis-py": redis.__version__}

    async def enqueue_many(payloads):
        for start in range(0, len(payloads), GATHER):
            await asyncio.gather(*(pool.enqueue_job("noop", p) for p in payloads[start : start + GATHER]))

    def enqueue_all(payloads):
        loop.run_until_complete(enqueue_many(payloads))

    def send_one(p):
        loop.run_until_complete(pool.enqueue_job("noop", p))

    def start_worker(expect, sleep_ms=0):
        argv = [sys.executable, "-m", "arq", "--custom-log-dict", "peer_arq.LOG_CONFIG", "peer_arq.WorkerSettings"]
        return Worker(argv, spec, expect, sleep_ms, env={"SFB_CONCURRENCY": str(spec["concurrency"])})

    def close():
        loop.run_until_complete(pool.aclose())

    drv_main(spec, {
        "enqueue": lambda s: run_drain(s, enqueue_all, start_worker, versions),
        "drain": lambda s: run_drain(s, enqueue_all, start_worker, versions),
        "drain_io": lambda s: run_drain(s, enqueue_all, lambda n: start_worker(n, s["sleep_ms"]), versions),
        "latency": lambda s: run_latency(s, send_one, start_worker, versions),
    })


if __name__ == "__main__":
    main()
