"""Shared fixtures of the pytest-benchmark suite (``python -m pytest bench -p no:cacheprovider``).

A private redis-server for the session (or $SHARQ_FAST_BENCH_REDIS_URL: then only keys of
a private prefix are written, and deleted afterwards; nothing is flushed), the cores, and
``run_jobs``, which times a batch operation with pytest-benchmark and records jobs/s,
client CPU per job (time.process_time) and Redis server CPU per job (INFO cpu deltas) in
``benchmark.extra_info``.
"""

import time
from typing import Any, Callable, Dict, Iterator, Optional

import pytest
import redis

from sharq_fast import _core_py
from sharq_fast import _core
from sharq_fast._bench import BENCH_JOB_EXPIRE_MS, cleanup, new_prefix
from sharq_fast._redis_server import external_or_private_redis, server_cpu
from sharq_fast.client import Client

try:
    from sharq_fast import _core_c
except ImportError:
    _core_c = None

BENCH_CORES: Dict[str, Any] = {"c": _core_c, "py": _core_py}


@pytest.fixture(scope="session")
def bench_redis_url() -> Iterator[str]:
    """$SHARQ_FAST_BENCH_REDIS_URL, or a private redis-server for the session."""
    with external_or_private_redis("SHARQ_FAST_BENCH_REDIS_URL") as url:
        yield url


@pytest.fixture(params=list(BENCH_CORES))
def bench_core(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs the benchmark with the compiled core, then with the pure-Python one."""
    module = BENCH_CORES[request.param]
    if module is None:
        pytest.skip("compiled core not built")
    monkeypatch.setattr(_core, "core", module)
    return request.param


@pytest.fixture
def bench_redis(bench_redis_url: str) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(bench_redis_url)
    yield conn
    conn.close()


@pytest.fixture
def bench_client(bench_redis: redis.Redis, bench_core: str) -> Iterator[Client]:
    """A Client (real clock) on a key prefix of its own, deleted afterwards."""
    prefix = new_prefix()
    client = Client(bench_redis, key_prefix=prefix, job_expire_interval=BENCH_JOB_EXPIRE_MS)
    client.load_scripts()
    try:
        yield client
    finally:
        cleanup(bench_redis, prefix)
        client.close()


class JobRunner:
    """Times ``work(prepared)`` with ``benchmark.pedantic``: ``prepare()`` runs untimed before
    each round (and outside the CPU accounting); each round handles ``jobs_per_round`` jobs."""

    def __init__(self, benchmark: Any, conn: redis.Redis) -> None:
        self.benchmark = benchmark
        self.conn = conn

    def __call__(
        self,
        work: Callable[[Any], Any],
        prepare: Optional[Callable[[], Any]],
        jobs_per_round: int,
        rounds: int = 5,
        **info: Any,
    ) -> None:
        totals = {"client": 0.0, "server": 0.0, "rounds": 0}
        marks: Dict[str, float] = {}

        def setup() -> Any:
            prepared = prepare() if prepare else None
            marks["server"] = server_cpu(self.conn)
            return (prepared,), {}

        def target(prepared: Any) -> None:
            start = time.process_time()
            work(prepared)
            totals["client"] += time.process_time() - start

        def teardown(prepared: Any) -> None:
            totals["server"] += server_cpu(self.conn) - marks["server"]
            totals["rounds"] += 1

        self.benchmark.pedantic(target, setup=setup, teardown=teardown, rounds=rounds, iterations=1)
        jobs = jobs_per_round * max(1, totals["rounds"])
        extra = self.benchmark.extra_info
        extra.update(info)
        extra["jobs_per_round"] = jobs_per_round
        extra["client_us_per_job"] = round(1e6 * totals["client"] / jobs, 3)
        extra["server_us_per_job"] = round(1e6 * totals["server"] / jobs, 3)
        stats = getattr(self.benchmark, "stats", None)
        if stats is not None and getattr(stats, "stats", None) is not None and stats.stats.median > 0:
            extra["jobs_per_s"] = round(jobs_per_round / stats.stats.median, 1)


@pytest.fixture
def run_jobs(benchmark: Any, bench_redis: redis.Redis) -> JobRunner:
    """See JobRunner."""
    return JobRunner(benchmark, bench_redis)
