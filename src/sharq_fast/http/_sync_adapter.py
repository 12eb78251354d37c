"""TEMPORARY: AsyncClient's interface over the sync ``Client``, until AsyncClient lands.

The server only needs an object with AsyncClient's coroutine methods. This one runs each
call of a sync ``Client`` in a thread pool (one pooled Redis connection per thread), and
emulates the wait-aware ``dequeue(..., timeout=)`` by polling. It has none of
AsyncClient's auto-pipelining: concurrent requests are not merged into batched script
calls, and every call pays a thread hop. ``backend.make_client`` is the only user; swap it
for ``sharq_fast.aio.AsyncClient`` there and delete this module.
"""

import asyncio
import functools
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, List, Optional

from ..client import Client
from ..types import EnqueueResult, Job

#: Threads (and so Redis connections) per process.
THREADS = 16
#: First and longest pause between two polls of an emulated waiting dequeue (seconds).
POLL_FIRST = 0.005
POLL_MAX = 0.05


class SyncAdapter:
    """AsyncClient's constructor and coroutine methods, run on a sync Client in threads."""

    def __init__(self, redis_or_url: Any = "redis://127.0.0.1:6379/0", *, threads: int = THREADS, **settings: Any) -> None:
        self._setup(Client(redis_or_url, **settings), threads)

    def _setup(self, client: Client, threads: int) -> None:
        self._client = client
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="sharq-fast-http")
        self.key_prefix = client.key_prefix
        self.job_expire_interval = client.job_expire_interval
        self.job_requeue_interval = client.job_requeue_interval
        self.default_job_requeue_limit = client.default_job_requeue_limit

    @classmethod
    def from_config(cls, path: str, *, threads: int = THREADS, **overrides: Any) -> "SyncAdapter":
        """As ``Client.from_config``."""
        adapter = cls.__new__(cls)
        adapter._setup(Client.from_config(path, **overrides), threads)
        return adapter

    async def _run(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args, **kwargs))

    async def enqueue(self, **job: Any) -> bool:
        """Client.enqueue."""
        return await self._run(self._client.enqueue, **job)

    async def dequeue(self, queue_type: str = "default", timeout: Optional[float] = None) -> Optional[Job]:
        """Client.dequeue; with `timeout` (seconds), polls until a job comes or time is up."""
        job = await self._run(self._client.dequeue, queue_type)
        if job is not None or not timeout:
            return job
        deadline = time.monotonic() + timeout
        pause = POLL_FIRST
        while job is None and time.monotonic() < deadline:
            await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, POLL_MAX)
            job = await self._run(self._client.dequeue, queue_type)
        return job

    async def finish(self, queue_type: str, queue_id: str, job_id: str) -> bool:
        """Client.finish."""
        return await self._run(self._client.finish, queue_type, queue_id, job_id)

    async def interval(self, queue_type: str, queue_id: str, interval: int) -> bool:
        """Client.interval."""
        return await self._run(self._client.interval, queue_type, queue_id, interval)

    async def metrics(self, queue_type: Optional[str] = None, queue_id: Optional[str] = None) -> Any:
        """Client.metrics."""
        return await self._run(self._client.metrics, queue_type, queue_id)

    async def clear_queue(self, queue_type: str, queue_id: str, purge_all: bool = False) -> bool:
        """Client.clear_queue."""
        return await self._run(self._client.clear_queue, queue_type, queue_id, purge_all)

    async def queue_length(self, queue_type: str, queue_id: str) -> int:
        """Client.queue_length."""
        return await self._run(self._client.queue_length, queue_type, queue_id)

    async def deep_status(self) -> bool:
        """Client.deep_status."""
        return await self._run(self._client.deep_status)

    async def enqueue_many(self, jobs: Iterable[Any]) -> EnqueueResult:
        """Client.enqueue_many."""
        return await self._run(self._client.enqueue_many, list(jobs))

    async def dequeue_many(self, queue_type: str = "default", count: int = 100, timeout: Optional[float] = None) -> List[Job]:
        """Client.dequeue_many; with `timeout`, polls until at least one job comes."""
        jobs = await self._run(self._client.dequeue_many, queue_type, count)
        if jobs or not timeout:
            return jobs
        deadline = time.monotonic() + timeout
        pause = POLL_FIRST
        while not jobs and time.monotonic() < deadline:
            await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, POLL_MAX)
            jobs = await self._run(self._client.dequeue_many, queue_type, count)
        return jobs

    async def finish_many(self, jobs: Iterable[Any]) -> List[bool]:
        """Client.finish_many."""
        return await self._run(self._client.finish_many, list(jobs))

    def start_requeuer(self, on_discard: Optional[Callable[[Job], None]] = None) -> None:
        """Client.start_requeuer (a thread; the prefix's lock makes it one per prefix)."""
        self._client.start_requeuer(on_discard)

    async def close(self) -> None:
        """Stop the requeuer, close the connections, end the threads."""
        await self._run(self._client.close)
        self._executor.shutdown(wait=False)
