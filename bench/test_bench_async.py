"""Benchmarks of AsyncClient against a private redis-server, both cores: single enqueues and
dequeues by 1 task and by 100 tasks sharing the client (auto-pipelining), and
enqueue_many / dequeue_many / finish_many (to set beside test_bench_ops' sync ones). Every
round handles ROUND_JOBS jobs.

The wake-up latency (enqueue in another process -> a waiting consumer has the job) and the
cost of 8 idle waiting consumer processes are measured once each (sharq_fast._bench_async);
their numbers are in extra_info (p50_ms, p99_ms; commands_per_s_each, cpu_pct_each).

Run: .venv/bin/python -m pytest bench -p no:cacheprovider
"""

import asyncio
from typing import Any, Dict, Iterator, List, Tuple

import pytest
import redis

from sharq_fast import AsyncClient
from sharq_fast._bench import BENCH_JOB_EXPIRE_MS, cleanup, new_prefix
from sharq_fast._bench_async import idle_consumers, wake_latency

from test_bench_ops import QUEUE_TYPE, ROUND_JOBS, _chunks, _jobs

TASKS = [1, 100]
BATCHES = [100, 1000]


@pytest.fixture
def async_client(bench_redis: redis.Redis, bench_redis_url: str, bench_core: str) -> Iterator[Tuple[Any, AsyncClient]]:
    """(an event loop, an AsyncClient in it on a key prefix of its own, deleted afterwards)."""
    prefix = new_prefix()
    loop = asyncio.new_event_loop()

    async def make() -> AsyncClient:
        return AsyncClient(bench_redis_url, key_prefix=prefix, job_expire_interval=BENCH_JOB_EXPIRE_MS)

    client = loop.run_until_complete(make())
    loop.run_until_complete(client.load_scripts())
    try:
        yield loop, client
    finally:
        cleanup(bench_redis, prefix)
        loop.run_until_complete(client.close())
        loop.close()


async def _spread(tasks: int, items: List[Any], call: Any) -> List[Any]:
    """call(item) for every item, by `tasks` tasks; results in item order."""
    results: List[Any] = [None] * len(items)

    async def worker(k: int) -> None:
        for i in range(k, len(items), tasks):
            results[i] = await call(items[i])

    await asyncio.gather(*(worker(k) for k in range(tasks)))
    return results


def _fill(loop: Any, client: AsyncClient) -> None:
    assert loop.run_until_complete(client.enqueue_many(_jobs(ROUND_JOBS))).enqueued == ROUND_JOBS


def _take(loop: Any, client: AsyncClient) -> List[Any]:
    jobs: List[Any] = []
    while len(jobs) < ROUND_JOBS:
        jobs += loop.run_until_complete(client.dequeue_many(QUEUE_TYPE, ROUND_JOBS - len(jobs)))
    return jobs


@pytest.mark.parametrize("tasks", TASKS)
def test_async_single_enqueue(run_jobs, async_client, bench_core: str, tasks: int) -> None:
    loop, client = async_client

    def work(jobs: List[Dict[str, Any]]) -> None:
        assert all(loop.run_until_complete(_spread(tasks, jobs, lambda job: client.enqueue(**job))))

    run_jobs(work, lambda: _jobs(ROUND_JOBS), ROUND_JOBS, op="async enqueue", tasks=tasks, core=bench_core)


@pytest.mark.parametrize("tasks", TASKS)
def test_async_single_dequeue(run_jobs, async_client, bench_core: str, tasks: int) -> None:
    loop, client = async_client

    def work(_: Any) -> None:
        got = loop.run_until_complete(_spread(tasks, [QUEUE_TYPE] * ROUND_JOBS, client.dequeue))
        assert None not in got

    run_jobs(work, lambda: _fill(loop, client), ROUND_JOBS, op="async dequeue", tasks=tasks, core=bench_core)


@pytest.mark.parametrize("batch", BATCHES)
def test_async_enqueue_many(run_jobs, async_client, bench_core: str, batch: int) -> None:
    loop, client = async_client

    async def enqueue(chunks: List[List[Any]]) -> None:
        for chunk in chunks:
            await client.enqueue_many(chunk)

    run_jobs(lambda chunks: loop.run_until_complete(enqueue(chunks)), lambda: _chunks(_jobs(ROUND_JOBS), batch),
             ROUND_JOBS, op="async enqueue_many", batch=batch, core=bench_core)


@pytest.mark.parametrize("batch", BATCHES)
def test_async_dequeue_many(run_jobs, async_client, bench_core: str, batch: int) -> None:
    loop, client = async_client

    async def dequeue() -> int:
        return sum([len(await client.dequeue_many(QUEUE_TYPE, batch)) for _ in range(ROUND_JOBS // batch)])

    def work(_: Any) -> None:
        assert loop.run_until_complete(dequeue()) == ROUND_JOBS

    run_jobs(work, lambda: _fill(loop, client), ROUND_JOBS, op="async dequeue_many", batch=batch, core=bench_core)


@pytest.mark.parametrize("batch", BATCHES)
def test_async_finish_many(run_jobs, async_client, bench_core: str, batch: int) -> None:
    loop, client = async_client

    def prepare() -> List[List[Any]]:
        _fill(loop, client)
        return _chunks(_take(loop, client), batch)

    async def finish(chunks: List[List[Any]]) -> None:
        for chunk in chunks:
            assert all(await client.finish_many(chunk))

    run_jobs(lambda chunks: loop.run_until_complete(finish(chunks)), prepare, ROUND_JOBS,
             op="async finish_many", batch=batch, core=bench_core)


@pytest.mark.parametrize("transport", ["sync", "async"])
def test_wake_latency(benchmark, bench_redis_url: str, bench_core: str, transport: str) -> None:
    result: Dict[str, Any] = {}

    def measure() -> None:
        result.update(wake_latency({"url": bench_redis_url}, bench_core, transport, samples=200, progress=False))

    benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.extra_info.update(result)


@pytest.mark.parametrize("transport", ["sync", "async"])
def test_idle_waiting_consumers(benchmark, bench_redis_url: str, bench_core: str, transport: str) -> None:
    result: Dict[str, Any] = {}

    def measure() -> None:
        result.update(idle_consumers({"url": bench_redis_url}, bench_core, transport, progress=False))

    benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["commands_per_s_each"] < 5
