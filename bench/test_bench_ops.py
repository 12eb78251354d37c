"""Benchmarks of the client operations against a private redis-server, both cores:
enqueue_many, dequeue_many and finish_many at batch sizes 1, 10, 100 and 1,000, and single
enqueue / dequeue / finish. Every round handles ROUND_JOBS jobs (ROUND_JOBS / batch calls).

extra_info: jobs_per_s (from the median round), client_us_per_job, server_us_per_job.
Run: .venv/bin/python -m pytest bench -p no:cacheprovider
"""

import itertools
from typing import Any, Dict, List

import pytest

from sharq_fast.client import Client

ROUND_JOBS = 1000
QUEUES = 100
QUEUE_TYPE = "bench"
PAYLOAD = {"to": "+14155550100", "from": "+14155550199", "text": "hello from sharq-fast bench"}
BATCHES = [1, 10, 100, 1000]

_ids = itertools.count()


def _jobs(count: int) -> List[Dict[str, Any]]:
    jobs = []
    for _ in range(count):
        i = next(_ids)
        jobs.append(
            {"queue_type": QUEUE_TYPE, "queue_id": f"q{i % QUEUES}", "job_id": f"j{i}", "payload": dict(PAYLOAD, n=i), "interval": 0}
        )
    return jobs


def _chunks(items: List[Any], size: int) -> List[List[Any]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _fill(client: Client, count: int = ROUND_JOBS) -> None:
    result = client.enqueue_many(_jobs(count))
    assert result.enqueued == count


def _take(client: Client, count: int = ROUND_JOBS) -> List[Any]:
    jobs: List[Any] = []
    while len(jobs) < count:
        jobs += client.dequeue_many(QUEUE_TYPE, count - len(jobs))
    return jobs


@pytest.mark.parametrize("batch", BATCHES)
def test_ops_enqueue_many(run_jobs, bench_client: Client, bench_core: str, batch: int) -> None:
    def work(chunks: List[List[Any]]) -> None:
        for chunk in chunks:
            bench_client.enqueue_many(chunk)

    run_jobs(work, lambda: _chunks(_jobs(ROUND_JOBS), batch), ROUND_JOBS, op="enqueue_many", batch=batch, core=bench_core)


@pytest.mark.parametrize("batch", BATCHES)
def test_ops_dequeue_many(run_jobs, bench_client: Client, bench_core: str, batch: int) -> None:
    taken: List[int] = []

    def work(_: Any) -> None:
        got = 0
        for _ in range(ROUND_JOBS // batch):
            got += len(bench_client.dequeue_many(QUEUE_TYPE, batch))
        taken.append(got)

    run_jobs(work, lambda: _fill(bench_client), ROUND_JOBS, op="dequeue_many", batch=batch, core=bench_core)
    assert taken and all(got == ROUND_JOBS for got in taken)


@pytest.mark.parametrize("batch", BATCHES)
def test_ops_finish_many(run_jobs, bench_client: Client, bench_core: str, batch: int) -> None:
    finished: List[bool] = []

    def prepare() -> List[List[Any]]:
        _fill(bench_client)
        return _chunks(_take(bench_client), batch)

    def work(chunks: List[List[Any]]) -> None:
        for chunk in chunks:
            finished.extend(bench_client.finish_many(chunk))

    run_jobs(work, prepare, ROUND_JOBS, op="finish_many", batch=batch, core=bench_core)
    assert finished and all(finished)


def test_ops_single_enqueue(run_jobs, bench_client: Client, bench_core: str) -> None:
    def work(jobs: List[Dict[str, Any]]) -> None:
        enqueue = bench_client.enqueue
        for job in jobs:
            enqueue(**job)

    run_jobs(work, lambda: _jobs(ROUND_JOBS), ROUND_JOBS, op="enqueue", batch=1, core=bench_core)


def test_ops_single_dequeue(run_jobs, bench_client: Client, bench_core: str) -> None:
    misses: List[int] = []

    def work(_: Any) -> None:
        dequeue = bench_client.dequeue
        misses.append(sum(dequeue(QUEUE_TYPE) is None for _ in range(ROUND_JOBS)))

    run_jobs(work, lambda: _fill(bench_client), ROUND_JOBS, op="dequeue", batch=1, core=bench_core)
    assert misses and not any(misses)


def test_ops_single_finish(run_jobs, bench_client: Client, bench_core: str) -> None:
    finished: List[bool] = []

    def prepare() -> List[Any]:
        _fill(bench_client)
        return _take(bench_client)

    def work(jobs: List[Any]) -> None:
        finish = bench_client.finish
        for job in jobs:
            finished.append(finish(job.queue_type, job.queue_id, job.job_id))

    run_jobs(work, prepare, ROUND_JOBS, op="finish", batch=1, core=bench_core)
    assert finished and all(finished)
