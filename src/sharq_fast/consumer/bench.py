"""The consumer benchmark of ``sharq-fast bench`` and ``compare``: jobs/s of whole consumer
loops over `n` jobs spread over `queues` queues (interval 0), each case on a fresh key
prefix, the same run for all:

- the loop a sharq 1.3.0 user writes (dequeue, handler, finish, one job at a time), run
  by sharq 1.3.0 itself (compare only; `peer` runs it);
- the naive batch loops: dequeue_many(1000) / handler / finish_many, and for asyncio
  dequeue_many(256) / gather / finish_many;
- Consumer (no-op handler; 32 threads with a 1 ms sleep) and AsyncConsumer (256 tasks
  with a 1 ms asyncio.sleep);
- an idle Consumer and AsyncConsumer: Redis commands per second and the client's CPU.

A case is timed from the consumer's start to the moment every job is finished (the
consumer's own count of finished jobs); the CPU is the whole process's (client) and
Redis's INFO cpu (server).
"""

import asyncio
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from .. import _bench
from .._bench import Result, cleanup, measure, new_prefix
from ..aio import AsyncClient
from ..client import Client
from .aio import AsyncConsumer
from .threaded import Consumer

QUEUE_TYPE = "consume"
IMPL = "sharq_fast"
SHARQ_LOOP = "sharq 1.3.0 loop"
NOOP, SLEEP = "no-op", "1 ms I/O"
IDLE_SECONDS = 5.0
#: Jobs/s targets of issue 10 (compiled core): (case, jobs/s at least, x the sharq loop at least).
TARGETS = {
    "Consumer": (70_000, 15.0),
    "AsyncConsumer x256": (40_000, 50.0),
}


def fill(client: Client, n: int, queues: int) -> None:
    """n jobs over `queues` queues, interval 0 (job i in queue i % queues, as the workload)."""
    client.enqueue_many(
        ({"queue_type": QUEUE_TYPE, "queue_id": f"q{i % queues}", "job_id": f"j{i}", "payload": {"n": i},
          "interval": 0} for i in range(n)),
        chunk_size=1000,
    )


def _until_finished(consumer: Any, n: int, limit: float) -> int:
    deadline = time.monotonic() + limit
    while True:
        stats = consumer.stats()
        done = stats.processed + stats.failed
        if done >= n or time.monotonic() > deadline:
            return done
        time.sleep(0.002)


def _noop(job: Any) -> None:
    pass


def _sleep_1ms(job: Any) -> None:
    time.sleep(0.001)


async def _async_sleep_1ms(job: Any) -> None:
    await asyncio.sleep(0.001)


def naive_loop(client: Client, make_async: Any, n: int, limit: float) -> int:
    """dequeue_many(1000), the handler for each, finish_many: one batch after the other."""
    done = 0
    while done < n:
        jobs = client.dequeue_many(QUEUE_TYPE, 1000)
        if not jobs:
            break
        for job in jobs:
            _noop(job)
        client.finish_many(jobs, chunk_size=1000)
        done += len(jobs)
    return done


def consumer_noop(client: Client, make_async: Any, n: int, limit: float) -> int:
    return _threaded(client, _noop, 1, n, limit)


def consumer_32_threads(client: Client, make_async: Any, n: int, limit: float) -> int:
    return _threaded(client, _sleep_1ms, 32, n, limit)


def _threaded(client: Client, handler: Callable[[Any], None], concurrency: int, n: int, limit: float) -> int:
    consumer = Consumer(client, QUEUE_TYPE, handler, concurrency=concurrency, handle_signals=False, requeuer=False)
    consumer.start()
    try:
        deadline = time.monotonic() + limit
        while True:
            stats = consumer.stats()
            if stats.processed + stats.failed >= n or time.monotonic() > deadline:
                return stats.processed + stats.failed
            time.sleep(0.002)
    finally:
        consumer.stop()
        consumer.join()


def naive_async_loop(client: Client, make_async: Any, n: int, limit: float) -> int:
    """dequeue_many(256), gather the handlers, finish_many: one batch after the other."""
    async def run() -> int:
        aclient = make_async()
        try:
            done = 0
            while done < n:
                jobs = await aclient.dequeue_many(QUEUE_TYPE, 256)
                if not jobs:
                    break
                await asyncio.gather(*(_async_sleep_1ms(job) for job in jobs))
                await aclient.finish_many(jobs)
                done += len(jobs)
            return done
        finally:
            await aclient.close()

    return asyncio.run(run())


def async_consumer_256(client: Client, make_async: Any, n: int, limit: float) -> int:
    async def run() -> int:
        aclient = make_async()
        consumer = AsyncConsumer(aclient, QUEUE_TYPE, _async_sleep_1ms, concurrency=256, handle_signals=False,
                                 requeuer=False)
        task = asyncio.ensure_future(consumer.run())
        deadline = time.monotonic() + limit
        try:
            while True:
                stats = consumer.stats()
                if stats.processed + stats.failed >= n or time.monotonic() > deadline or task.done():
                    return stats.processed + stats.failed
                await asyncio.sleep(0.002)
        finally:
            consumer.stop()
            await task
            await aclient.close()

    return asyncio.run(run())


#: label -> (handler kind, the case): the order of the table.
CASES: Dict[str, Any] = {
    f"naive dequeue_many(1000)/finish_many loop, {NOOP}": (NOOP, naive_loop),
    f"Consumer, {NOOP}": (NOOP, consumer_noop),
    f"Consumer x32 threads, {SLEEP}": (SLEEP, consumer_32_threads),
    f"naive async dequeue_many(256)/gather/finish_many, {SLEEP}": (SLEEP, naive_async_loop),
    f"AsyncConsumer x256, {SLEEP}": (SLEEP, async_consumer_256),
}


def run_consumer_cases(
    make_redis: Callable[[], Any],
    redis_spec: Dict[str, Any],
    *,
    n: int = 100_000,
    queues: int = 1000,
    core_name: str = "c",
    progress: bool = True,
    rep: int = 0,
    prefix_base: str = _bench.BENCH_PREFIX_BASE,
    peer: Optional[Callable[[str, str, int], Result]] = None,
    peer_counts: Optional[Dict[str, int]] = None,
    limit: float = 120.0,
) -> List[Result]:
    """Every loop case, each on a prefix of its own holding `n` fresh jobs. `peer(prefix,
    handler, count)` runs the sharq 1.3.0 loop ("noop" or "sleep1ms" handler) over a
    prefix holding `count` jobs and returns its Result (compare)."""
    from .._bench_async import async_redis

    results: List[Result] = []
    with _bench.use_core(_bench.available_cores()[core_name]):
        if peer is not None:
            for handler, label in (("noop", NOOP), ("sleep1ms", SLEEP)):
                count = (peer_counts or {}).get(handler, n)
                prefix = new_prefix(prefix_base)
                conn = make_redis()
                try:
                    fill(Client(conn, key_prefix=prefix, job_expire_interval=_bench.BENCH_JOB_EXPIRE_MS), count, queues)
                    result = peer(prefix, handler, count)
                    results.append(msgspec_replace(result, mode=f"{SHARQ_LOOP}, {label}", case="consumer", rep=rep))
                finally:
                    cleanup(conn, prefix)
                    conn.close()
        for label, (_kind, case) in CASES.items():
            prefix = new_prefix(prefix_base)
            conn = make_redis()
            client = Client(conn, key_prefix=prefix, job_expire_interval=_bench.BENCH_JOB_EXPIRE_MS)

            def make_async(prefix: str = prefix) -> AsyncClient:
                made = AsyncClient(async_redis(redis_spec), key_prefix=prefix, job_expire_interval=_bench.BENCH_JOB_EXPIRE_MS)
                made._owns_redis = True
                return made

            try:
                client.load_scripts()
                fill(client, n, queues)
                results.append(measure(
                    conn, f"{IMPL} {core_name} {label}", n,
                    lambda bar, case=case, client=client, make_async=make_async: case(client, make_async, n, limit),
                    progress, impl=IMPL, core=core_name, mode=label, op="consume", case="consumer", rep=rep,
                ))
            finally:
                cleanup(conn, prefix)
                client.close()
                conn.close()
    return results


def msgspec_replace(result: Result, **changes: Any) -> Result:
    import msgspec

    return msgspec.structs.replace(result, **changes)


def idle_cost(make_redis: Callable[[], Any], redis_spec: Dict[str, Any], seconds: float = IDLE_SECONDS,
              prefix_base: str = _bench.BENCH_PREFIX_BASE) -> List[Dict[str, Any]]:
    """An idle Consumer, then an idle AsyncConsumer (requeuer on, as by default), each
    for `seconds`: Redis commands per second (INFO stats, all clients: run it on a quiet
    Redis) and the client's CPU (% of one core)."""
    from .._bench_async import async_redis

    rows = []
    for label in ("Consumer", "AsyncConsumer"):
        prefix = new_prefix(prefix_base)
        conn = make_redis()
        try:
            def window() -> Dict[str, Any]:
                commands0 = conn.info("stats")["total_commands_processed"]
                cpu0 = time.process_time()
                time.sleep(seconds)
                commands = conn.info("stats")["total_commands_processed"] - commands0 - 1  # less our INFO
                return {"case": f"idle {label}", "seconds": seconds, "redis_commands_per_s": commands / seconds,
                        "client_cpu_percent": 100 * (time.process_time() - cpu0) / seconds}

            if label == "Consumer":
                client = Client(make_redis(), key_prefix=prefix)
                client._owns_redis = True
                consumer = Consumer(client, QUEUE_TYPE, _noop, handle_signals=False)
                consumer.start()
                time.sleep(1.0)  # settled: waiting dequeue open, requeuer lock taken
                rows.append(window())
                consumer.stop()
                consumer.join()
                client.close()
            else:
                async def run() -> Dict[str, Any]:
                    aclient = AsyncClient(async_redis(redis_spec), key_prefix=prefix)
                    aclient._owns_redis = True
                    consumer = AsyncConsumer(aclient, QUEUE_TYPE, _async_sleep_1ms, handle_signals=False)
                    task = asyncio.ensure_future(consumer.run())
                    await asyncio.sleep(1.0)
                    row = await asyncio.get_running_loop().run_in_executor(None, window)
                    consumer.stop()
                    await task
                    await aclient.close()
                    return row

                rows.append(asyncio.run(run()))
        finally:
            cleanup(conn, prefix)
            conn.close()
    return rows


def summarize(results: Sequence[Result]) -> List[Dict[str, Any]]:
    """One row per case (median jobs/s over repetitions), with the ratio to the sharq
    1.3.0 loop of the same handler kind and to the naive loop of the same kind."""
    by_case: Dict[str, List[Result]] = {}
    for result in results:
        by_case.setdefault(result.mode, []).append(result)
    rows = []
    for mode, runs in by_case.items():
        rates = sorted(r.jobs_per_s for r in runs)
        rows.append({
            "case": mode, "impl": runs[0].impl, "jobs": runs[0].jobs, "jobs_per_s": rates[len(rates) // 2],
            "client_us_per_job": _median([r.client_us for r in runs]),
            "server_us_per_job": _median([r.server_us for r in runs]), "repetitions": len(runs),
        })
    for row in rows:
        kind = NOOP if row["case"].endswith(NOOP) else SLEEP
        peer = next((r for r in rows if r["case"] == f"{SHARQ_LOOP}, {kind}"), None)
        naive = next((r for r in rows if r["case"].startswith("naive") and r["case"].endswith(kind)), None)
        row["vs_sharq_loop"] = row["jobs_per_s"] / peer["jobs_per_s"] if peer else None
        row["vs_naive"] = row["jobs_per_s"] / naive["jobs_per_s"] if naive else None
    return rows


def _median(values: List[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2] if values else 0.0


def format_rows(rows: Sequence[Dict[str, Any]], idle: Sequence[Dict[str, Any]] = ()) -> str:
    """The consumer table, the target checks, and the idle costs."""
    def ratio(value: Optional[float]) -> str:
        return f"{value:.1f}x" if value else "-"

    lines = [f"{'consumer loop (handler)':<58} {'jobs/s':>9} {'vs sharq loop':>13} {'vs naive':>9} "
             f"{'client us/job':>13} {'redis us/job':>12}"]
    for row in rows:
        lines.append(f"{row['case']:<58} {row['jobs_per_s']:>9,.0f} {ratio(row['vs_sharq_loop']):>13} "
                     f"{ratio(row['vs_naive']):>9} {row['client_us_per_job']:>13.1f} {row['server_us_per_job']:>12.1f}")
    for prefix, (rate, times) in TARGETS.items():
        row = next((r for r in rows if r["case"].startswith(prefix + ",")), None)
        if row is None:
            continue
        ok_rate = row["jobs_per_s"] >= rate
        ok_times = row["vs_sharq_loop"] is None or row["vs_sharq_loop"] >= times
        verdict = "OK" if ok_rate and ok_times else "BELOW TARGET"
        lines.append(f"consumer check: {row['case']}: {row['jobs_per_s']:,.0f} jobs/s (target >= {rate:,}), "
                     f"{ratio(row['vs_sharq_loop'])} the sharq loop (target >= {times:.0f}x): {verdict}")
    for row in idle:
        lines.append(f"{row['case']}: {row['redis_commands_per_s']:.1f} Redis commands/s, "
                     f"client CPU {row['client_cpu_percent']:.2f}% of a core")
    lines.append(f"load average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return "\n".join(lines)


#: Jobs the sharq 1.3.0 loop gets with a 1 ms handler (it does ~800 jobs/s: 100,000 would
#: take two minutes for the same ratio).
PEER_SLEEP_JOBS = 10_000


def cli_cases(args: Any, target: Any, cores: Sequence[str], base: str,
              peer_run: Optional[Callable[[Dict[str, Any], str], List[Dict[str, Any]]]] = None) -> Dict[str, Any]:
    """The consumer cases of ``sharq-fast bench``/``compare`` (compiled core when built):
    `args.repeat` repetitions, then the idle costs; with `peer_run(spec, prefix)` (compare:
    runs _peer_runner.py, answers its results) also the sharq 1.3.0 loop. Returns the
    report's "consumer" part (its "table" is printed by the report)."""
    def sharq_loop(prefix: str, handler: str, count: int) -> Result:
        spec = {"mode": "consume", "count": count, "handler": handler, "budget": args.peer_budget,
                "queue_type": QUEUE_TYPE, "label": f"{SHARQ_LOOP}, {handler}"}
        (result,) = peer_run(spec, prefix)  # type: ignore[misc]
        return Result(impl=_bench.PEER, core="-", mode="", case="consumer", **result)

    peer = sharq_loop if peer_run is not None else None

    core_name = "c" if "c" in cores else cores[0]
    n, queues = args.consumer_n, args.consumer_queues
    results: List[Result] = []
    for rep in range(args.repeat):
        results += run_consumer_cases(
            target.make_redis, target.redis_spec, n=n, queues=queues, core_name=core_name, progress=args.progress,
            rep=rep, prefix_base=base, peer=peer, peer_counts={"noop": n, "sleep1ms": min(n, PEER_SLEEP_JOBS)},
        )
    idle = idle_cost(target.make_redis, target.redis_spec, seconds=args.idle_seconds, prefix_base=base)
    rows = summarize(results)
    title = f"consumer loops: {n:,} jobs over {queues:,} queues, interval 0, core {core_name}"
    return {
        "settings": {"n": n, "queues": queues, "core": core_name, "repeat": args.repeat},
        "summary": rows, "idle": idle, "results": [r.to_dict() for r in results],
        "load_average": list(os.getloadavg()),
        "table": title + "\n" + format_rows(rows, idle),
    }
