"""The AsyncClient cases of ``sharq-fast bench`` and ``sharq-fast compare``.

- Single calls (enqueue, dequeue, finish: the workload of ``_bench``) by one task, and by
  100 tasks sharing one AsyncClient: auto-pipelining writes the calls of one loop turn
  together. Async batches (enqueue_many, dequeue_many, finish_many) to set beside the sync
  ones of the same run.
- Wake-up latency: a producer process enqueues one job every few ms (the time it started
  the call in the payload: CLOCK_MONOTONIC is system-wide); a consumer waiting in
  ``dequeue(timeout=...)`` (Client or AsyncClient) notes when it has the job. p50 / p99.
- Idle waiting consumers: 8 processes wait on an empty queue type with the default
  ``wait_poll_interval``; the Redis commands per second each costs (INFO stats deltas) and
  the CPU each uses (its own process time).

Targets (the 2-core development machine): 100 tasks >= 5x one task on single enqueues;
async batches within 15% of sync batches; wake-up p99 <= 10 ms; an idle consumer < 5
Redis commands/s and no measurable CPU.
"""

import asyncio
import json
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import redis
import redis.asyncio

from ._bench import (
    BENCH_JOB_EXPIRE_MS, BENCH_PREFIX_BASE, PAYLOAD, QUEUE_TYPE, SHARQ_FAST, Progress, Result, _job, available_cores,
    cleanup, measure, new_prefix, use_core,
)
from ._redis_server import server_cpu
from .aio import AsyncClient
from .client import Client

#: Tasks sharing one AsyncClient in the "many tasks" case.
TASKS = 100
MODE_ONE = "async single"
MODE_MANY = f"async single x{TASKS}"
MODE_BATCH = "async batch"
ASYNC_MODES = (MODE_ONE, MODE_MANY, MODE_BATCH)
LATENCY_SAMPLES = 300
IDLE_CONSUMERS = 8
IDLE_SECONDS = 5.0
WAIT_QUEUE_TYPE = "wake"

# -- Redis from a picklable spec (processes of their own get it) -------------------------


def sync_redis(spec: Dict[str, Any]) -> Any:
    """A redis-py client from {"url": ...} or {"config": path} (any URL or config a Client
    takes: one node, Sentinel, Cluster)."""
    return _redis_of(spec, asyncio=False)


def async_redis(spec: Dict[str, Any]) -> Any:
    """The redis.asyncio twin of sync_redis."""
    return _redis_of(spec, asyncio=True)


def _redis_of(spec: Dict[str, Any], asyncio: bool) -> Any:
    from ._connect import redis_for_config, redis_from
    from .config import read_config

    if "url" in spec:
        return redis_from(spec["url"], asyncio)[0]
    return redis_for_config(read_config(spec["config"]), asyncio)


# -- single calls and batches -------------------------------------------------------------


def run_async(
    spec: Dict[str, Any],
    core_name: str,
    *,
    n: int,
    queues: int,
    batch: int,
    modes: Sequence[str] = ASYNC_MODES,
    progress: bool = True,
    rep: int = 0,
    prefix_base: str = BENCH_PREFIX_BASE,
) -> List[Result]:
    """The workload through AsyncClient with one core, each mode on a fresh key prefix."""
    results: List[Result] = []
    loop = asyncio.new_event_loop()
    try:
        with use_core(available_cores()[core_name]):
            for mode in modes:
                prefix = new_prefix(prefix_base)
                conn = sync_redis(spec)

                async def make(prefix: str = prefix) -> AsyncClient:
                    return AsyncClient(async_redis(spec), key_prefix=prefix, job_expire_interval=BENCH_JOB_EXPIRE_MS)

                client = loop.run_until_complete(make())
                client._owns_redis = True
                try:
                    loop.run_until_complete(client.load_scripts())
                    results += _async_phases(loop, client, conn, core_name, mode, n, queues, batch, progress, rep)
                finally:
                    cleanup(conn, prefix)
                    loop.run_until_complete(client.close())
                    conn.close()
    finally:
        loop.close()
    return results


def _async_phases(
    loop: asyncio.AbstractEventLoop, client: AsyncClient, conn: redis.Redis, core_name: str, mode: str,
    n: int, queues: int, batch: int, progress: bool, rep: int,
) -> List[Result]:
    taken: List[Any] = []
    tasks = TASKS if mode == MODE_MANY else 1

    async def in_tasks(work: Callable[[int], Any]) -> None:
        await asyncio.gather(*(work(k) for k in range(tasks)))

    async def enqueue_singles(bar: Progress) -> None:
        async def work(k: int) -> None:
            enqueue = client.enqueue
            for i in range(k, n, tasks):
                await enqueue(queue_type=QUEUE_TYPE, queue_id=f"q{i % queues}", job_id=f"j{i}",
                              payload=dict(PAYLOAD, n=i), interval=0)
                if k == 0 and not i & 511:
                    bar.update(i)

        await in_tasks(work)

    async def dequeue_singles(bar: Progress) -> None:
        async def work(k: int) -> None:
            dequeue = client.dequeue
            for i in range(k, n, tasks):
                job = await dequeue(QUEUE_TYPE)
                if job is None:
                    raise RuntimeError(f"dequeue found no ready queue after {len(taken)} of {n} jobs")
                taken.append(job)
                if k == 0 and not i & 511:
                    bar.update(i)

        await in_tasks(work)

    async def finish_singles(bar: Progress) -> None:
        async def work(k: int) -> None:
            finish = client.finish
            for i in range(k, len(taken), tasks):
                job = taken[i]
                if not await finish(job.queue_type, job.queue_id, job.job_id):
                    raise RuntimeError(f"finish failed for job {job.job_id}")
                if k == 0 and not i & 511:
                    bar.update(i)

        await in_tasks(work)

    async def enqueue_batches(bar: Progress) -> None:
        for start in range(0, n, batch):
            await client.enqueue_many([_job(i, queues) for i in range(start, min(n, start + batch))])
            bar.update(start)

    async def dequeue_batches(bar: Progress) -> None:
        while len(taken) < n:
            jobs = await client.dequeue_many(QUEUE_TYPE, min(batch, n - len(taken)))
            if not jobs:
                raise RuntimeError(f"dequeue_many found no ready queue after {len(taken)} of {n} jobs")
            taken.extend(jobs)
            bar.update(len(taken))

    async def finish_batches(bar: Progress) -> None:
        for start in range(0, len(taken), batch):
            if not all(await client.finish_many(taken[start : start + batch])):
                raise RuntimeError("finish_many failed for some jobs")
            bar.update(start)

    if mode == MODE_BATCH:
        work = {"enqueue": enqueue_batches, "dequeue": dequeue_batches, "finish": finish_batches}
    else:
        work = {"enqueue": enqueue_singles, "dequeue": dequeue_singles, "finish": finish_singles}
    fields = dict(impl=SHARQ_FAST, core=core_name, mode=mode, rep=rep)
    results = []
    for op in ("enqueue", "dequeue", "finish"):

        def timed(bar: Progress, op: str = op) -> int:
            loop.run_until_complete(work[op](bar))
            return n

        results.append(measure(conn, f"{SHARQ_FAST} {core_name} {mode} {op}", n, timed, progress, op=op, **fields))
    return results


# -- processes of their own -------------------------------------------------------------------
#
# `python -m sharq_fast._bench_async ROLE JSON`: a producer or an idle consumer. It says
# "ready" on stdout once connected (and listening), starts at a line on stdin, and prints
# its report (JSON) at the end.


def _child(role: str, args: Dict[str, Any]) -> Dict[str, Any]:
    spec, prefix = args["spec"], args["prefix"]
    with use_core(available_cores()[args["core"]]):
        if role == "producer":
            return _producer(spec, prefix, args["samples"], args["gap"])
        if args["transport"] == "sync":
            return _idle_sync(spec, prefix, args["seconds"])
        return asyncio.run(_idle_async(spec, prefix, args["seconds"]))


def _ready_then_wait() -> None:
    print("ready", flush=True)
    sys.stdin.readline()


def _producer(spec: Dict[str, Any], prefix: str, samples: int, gap: float) -> Dict[str, Any]:
    """Enqueue `samples` jobs, `gap` s apart, each carrying the CLOCK_MONOTONIC time its
    enqueue call began."""
    with Client(sync_redis(spec), key_prefix=prefix, job_expire_interval=BENCH_JOB_EXPIRE_MS) as client:
        client._owns_redis = True
        client.load_scripts()
        _ready_then_wait()
        for i in range(samples):
            time.sleep(gap)
            client.enqueue(queue_type=WAIT_QUEUE_TYPE, queue_id=f"w{i % 10}", job_id=f"w{i}",
                           payload={"t0": time.monotonic()}, interval=0)
    return {"enqueued": samples}


def _idle_sync(spec: Dict[str, Any], prefix: str, seconds: float) -> Dict[str, Any]:
    with Client(sync_redis(spec), key_prefix=prefix) as client:
        client._owns_redis = True
        client.dequeue(WAIT_QUEUE_TYPE, timeout=0.01)  # listening from here on
        _ready_then_wait()
        cpu, wall = time.process_time(), time.monotonic()
        while time.monotonic() - wall < seconds:
            client.dequeue(WAIT_QUEUE_TYPE, timeout=seconds - (time.monotonic() - wall))
        return {"cpu": time.process_time() - cpu, "wall": time.monotonic() - wall}


async def _idle_async(spec: Dict[str, Any], prefix: str, seconds: float) -> Dict[str, Any]:
    async with AsyncClient(async_redis(spec), key_prefix=prefix) as client:
        client._owns_redis = True
        await client.dequeue(WAIT_QUEUE_TYPE, timeout=0.01)
        _ready_then_wait()  # blocks the loop, which has nothing to do yet
        cpu, wall = time.process_time(), time.monotonic()
        while time.monotonic() - wall < seconds:
            await client.dequeue(WAIT_QUEUE_TYPE, timeout=seconds - (time.monotonic() - wall))
        return {"cpu": time.process_time() - cpu, "wall": time.monotonic() - wall}


class _Children:
    """Processes running _child: started together, told to go together, reports read."""

    def __init__(self, role: str, args: Sequence[Dict[str, Any]]) -> None:
        self.procs = [
            subprocess.Popen([sys.executable, "-m", "sharq_fast._bench_async", role, json.dumps(a)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            for a in args
        ]

    def wait_ready(self) -> None:
        for proc in self.procs:
            if proc.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
                raise RuntimeError(f"a benchmark process failed to start (exit status {proc.wait()})")

    def go(self) -> None:
        for proc in self.procs:
            proc.stdin.write("go\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]

    def reports(self, timeout: float) -> List[Dict[str, Any]]:
        found = []
        for proc in self.procs:
            out, _ = proc.communicate(timeout=timeout)
            if proc.returncode:
                raise RuntimeError(f"a benchmark process failed (exit status {proc.returncode})")
            found.append(json.loads(out.strip().splitlines()[-1]))
        return found

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# -- wake-up latency ------------------------------------------------------------------------


def wake_latency(
    spec: Dict[str, Any], core_name: str, transport: str, *, samples: int = LATENCY_SAMPLES, gap: float = 0.01,
    progress: bool = True, prefix_base: str = BENCH_PREFIX_BASE,
) -> Dict[str, Any]:
    """Latencies (ms) from the start of an enqueue in another process to a consumer waiting
    in dequeue(timeout=...) holding the job: p50, p99, max."""
    prefix = new_prefix(prefix_base)
    bar = Progress(f"wake-up latency, {transport} consumer ({core_name})", samples, progress)
    latencies: List[float] = []
    conn = sync_redis(spec)
    producer = _Children("producer", [{"spec": spec, "prefix": prefix, "core": core_name, "samples": samples, "gap": gap}])
    try:
        producer.wait_ready()
        with use_core(available_cores()[core_name]):
            if transport == "sync":
                with Client(sync_redis(spec), key_prefix=prefix, job_expire_interval=BENCH_JOB_EXPIRE_MS) as client:
                    client._owns_redis = True
                    client.dequeue(WAIT_QUEUE_TYPE, timeout=0.01)  # listening from here on
                    producer.go()
                    while len(latencies) < samples:
                        job = client.dequeue(WAIT_QUEUE_TYPE, timeout=30)
                        if job is None:
                            raise RuntimeError(f"no job came in 30 s after {len(latencies)} of {samples}")
                        latencies.append(time.monotonic() - job.payload["t0"])
                        bar.update(len(latencies))
            else:
                asyncio.run(_async_consumer(spec, prefix, samples, producer, latencies, bar))
        producer.reports(60)
    finally:
        producer.stop()
        cleanup(conn, prefix)
        conn.close()
    ms = sorted(1000 * value for value in latencies)
    result = {"transport": transport, "core": core_name, "samples": len(ms), "gap_ms": 1000 * gap,
              "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99), "max_ms": ms[-1]}
    bar.close(f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms")
    return result


async def _async_consumer(
    spec: Dict[str, Any], prefix: str, samples: int, producer: _Children, latencies: List[float], bar: Progress
) -> None:
    async with AsyncClient(async_redis(spec), key_prefix=prefix, job_expire_interval=BENCH_JOB_EXPIRE_MS) as client:
        client._owns_redis = True
        await client.dequeue(WAIT_QUEUE_TYPE, timeout=0.01)
        producer.go()
        while len(latencies) < samples:
            job = await client.dequeue(WAIT_QUEUE_TYPE, timeout=30)
            if job is None:
                raise RuntimeError(f"no job came in 30 s after {len(latencies)} of {samples}")
            latencies.append(time.monotonic() - job.payload["t0"])
            bar.update(len(latencies))


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """The pct-th percentile of sorted values (nearest rank)."""
    rank = max(1, -(-len(sorted_values) * pct // 100))
    return sorted_values[int(rank) - 1]


# -- idle waiting consumers -------------------------------------------------------------------


def idle_consumers(
    spec: Dict[str, Any], core_name: str, transport: str, *, consumers: int = IDLE_CONSUMERS,
    seconds: float = IDLE_SECONDS, progress: bool = True, prefix_base: str = BENCH_PREFIX_BASE,
) -> Dict[str, Any]:
    """Redis commands per second and CPU (% of one core) of each of `consumers` processes
    waiting in dequeue(timeout=...) on an empty queue type (default wait_poll_interval):
    the commands each sends, and those Redis runs for it (the calls inside its scripts too)."""
    prefix = new_prefix(prefix_base)
    bar = Progress(f"{consumers} idle {transport} consumers ({core_name})", consumers, progress)
    conn = sync_redis(spec)
    args = {"spec": spec, "prefix": prefix, "core": core_name, "transport": transport, "seconds": seconds}
    children = _Children("idle", [args] * consumers)
    try:
        children.wait_ready()
        time.sleep(0.5)  # the warm-up rounds are over
        sent0, executed0 = _commands(conn)
        server0, wall0 = server_cpu(conn), time.monotonic()
        children.go()
        reports = children.reports(seconds + 120)
        wall = time.monotonic() - wall0
        sent1, executed1 = _commands(conn)
        # Minus this process's own commands: INFO, twice after the first mark.
        sent, executed = sent1 - sent0 - 2, executed1 - executed0 - 2
        server = server_cpu(conn) - server0
    finally:
        children.stop()
        cleanup(conn, prefix)
        conn.close()
    cpu_pct = [100 * r["cpu"] / r["wall"] for r in reports]
    # Per second of the consumers' own measured wait (the parent's window also holds their
    # start and exit, slow on a busy machine).
    window = statistics.mean(r["wall"] for r in reports)
    result = {"transport": transport, "core": core_name, "consumers": consumers, "seconds": round(window, 2),
              "commands_per_s_each": sent / consumers / window, "executed_per_s_each": executed / consumers / window,
              "cpu_pct_each": statistics.median(cpu_pct),
              "cpu_pct_max": max(cpu_pct), "server_cpu_pct": 100 * server / wall}
    bar.close(f"{result['commands_per_s_each']:.2f} Redis commands/s and {result['cpu_pct_each']:.3f}% CPU each")
    return result


#: Commands a client sends (the others counted by INFO ran inside its scripts).
_SENT = {"evalsha", "eval", "evalsha_ro", "ping", "psubscribe", "punsubscribe", "subscribe", "unsubscribe", "hello",
         "select", "auth", "info", "client|setinfo", "client|setname", "script|load"}


def _commands(conn: redis.Redis) -> tuple:
    """(commands clients sent, commands Redis ran: those inside scripts too) so far."""
    stats = conn.info("commandstats")
    sent = sum(value["calls"] for key, value in stats.items() if key[len("cmdstat_"):] in _SENT)
    return sent, sum(value["calls"] for value in stats.values())


# -- all of it, and the report -------------------------------------------------------------------


def run_cases(
    spec: Dict[str, Any], cores: Sequence[str], *, samples: int = LATENCY_SAMPLES, consumers: int = IDLE_CONSUMERS,
    seconds: float = IDLE_SECONDS, progress: bool = True, prefix_base: str = BENCH_PREFIX_BASE,
) -> Dict[str, Any]:
    """Wake-up latency and idle consumers, both transports, the first core."""
    core_name, both = cores[0], ("sync", "async")
    return {
        "latency": [
            wake_latency(spec, core_name, t, samples=samples, progress=progress, prefix_base=prefix_base) for t in both
        ],
        "idle": [
            idle_consumers(spec, core_name, t, consumers=consumers, seconds=seconds, progress=progress,
                           prefix_base=prefix_base)
            for t in both
        ],
    }


def _rate(rows: Sequence[Dict[str, Any]], core: str, mode: str, op: str) -> Optional[float]:
    for row in rows:
        if (row["case"], row["impl"], row["core"], row["mode"], row["op"]) == ("workload", SHARQ_FAST, core, mode, op):
            return row["jobs_per_s"]
    return None


def checks(rows: Sequence[Dict[str, Any]], cases: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The targets, measured: name, value, target, ok."""
    found = []
    for core in sorted({row["core"] for row in rows if row["impl"] == SHARQ_FAST}):
        one, many = _rate(rows, core, MODE_ONE, "enqueue"), _rate(rows, core, MODE_MANY, "enqueue")
        if one and many:
            found.append({"check": f"{TASKS} tasks vs 1 task, single enqueues ({core})", "value": f"{many / one:.1f}x",
                          "target": ">= 5x", "ok": many / one >= 5})
        for op in ("enqueue", "dequeue", "finish"):
            sync, aio = _rate(rows, core, "batch", op), _rate(rows, core, MODE_BATCH, op)
            if sync and aio:
                found.append({"check": f"async vs sync {op}_many ({core})", "value": f"{aio / sync:.2f}x",
                              "target": ">= 0.85x", "ok": aio / sync >= 0.85})
    for result in cases.get("latency", []):
        found.append({"check": f"wake-up p99, {result['transport']} consumer", "value": f"{result['p99_ms']:.2f} ms "
                      f"(p50 {result['p50_ms']:.2f})", "target": "<= 10 ms", "ok": result["p99_ms"] <= 10})
    for result in cases.get("idle", []):
        found.append({"check": f"{result['consumers']} idle {result['transport']} consumers, each",
                      "value": f"{result['commands_per_s_each']:.2f} commands/s sent ({result['executed_per_s_each']:.1f}"
                      f" run in scripts too), {result['cpu_pct_each']:.3f}% CPU",
                      "target": "< 5/s, ~0% CPU", "ok": result["commands_per_s_each"] < 5 and result["cpu_pct_each"] < 0.5})
    return found


def format_checks(found: Sequence[Dict[str, Any]]) -> str:
    """The checks as lines of text."""
    width = max((len(c["check"]) for c in found), default=0)
    return "\n".join(
        f"async check: {c['check']:<{width}}  {c['value']}  (target {c['target']}): {'OK' if c['ok'] else 'MISSED'}"
        for c in found
    )


if __name__ == "__main__":
    print(json.dumps(_child(sys.argv[1], json.loads(sys.argv[2]))), flush=True)
