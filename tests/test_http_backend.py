"""The server's one-call dequeue: ``http.backend.dequeue_with_length`` (dequeue.lua's optional
ARGV[4]) on both transports and cores, and the app's answer with a client that lacks it
(dequeue, then queue_length), which must be the same."""

import asyncio
from typing import Any, Dict, List, Optional, Tuple

import msgspec
import pytest
import redis

from sharq_fast import AsyncClient
from sharq_fast.http.backend import dequeue_with_length as length_op, length_dequeuer
from sharq_fast.http.server import SharqHTTP
from sharq_fast.http.settings import ServerSettings


# The one-call dequeue is an operation of the single-node layout (the app falls back to
# dequeue + queue_length on a cluster).
pytestmark = pytest.mark.single_node


def dequeue_with_length(client: Any, queue_type: str = "t", timeout: Optional[float] = None) -> Tuple[Any, int]:
    return client._run(length_op(client.settings, queue_type, timeout))


def test_length_is_that_of_the_jobs_queue_right_after(client: Any) -> None:
    for i in range(3):
        client.enqueue(queue_type="t", queue_id="a", job_id=f"a{i}", payload={"i": i}, interval=0)
    client.enqueue(queue_type="t", queue_id="b", job_id="b0", payload="x", interval=0, requeue_limit=2)
    seen = []
    while True:
        job, length = dequeue_with_length(client)
        if job is None:
            assert length == 0
            break
        assert length == client.queue_length("t", job.queue_id)
        assert job.expires_at > 0 and client.finish_many([job]) == [True]  # a real lease
        seen.append((job.queue_id, job.job_id, job.payload, job.requeues_remaining, length))
    assert sorted(seen) == [
        ("a", "a0", {"i": 0}, -1, 2), ("a", "a1", {"i": 1}, -1, 1), ("a", "a2", {"i": 2}, -1, 0),
        ("b", "b0", "x", 2, 0),
    ]


def test_same_jobs_as_dequeue(make_client: Any) -> None:
    """dequeue_with_length takes the job dequeue would take (same queues, same order)."""
    first, second = make_client(key_prefix="one"), make_client(key_prefix="two")
    for c in (first, second):
        for i in range(12):
            c.enqueue(queue_type="t", queue_id=f"q{i % 4}", job_id=f"j{i}", payload=i, interval=0)
    plain = [first.dequeue("t") for _ in range(13)]
    with_length = [dequeue_with_length(second)[0] for _ in range(13)]
    ids = lambda jobs: [None if job is None else (job.queue_id, job.job_id) for job in jobs]  # noqa: E731
    assert ids(plain) == ids(with_length) and plain[-1] is None


def test_orphans_are_skipped_and_the_length_stays_right(client: Any, r: redis.Redis) -> None:
    for i in range(3):
        client.enqueue(queue_type="t", queue_id="a", job_id=f"a{i}", payload=i, interval=0)
    r.hdel("sharq_server:payload", "t:a:a0")  # a job id without its payload: dropped
    job, length = dequeue_with_length(client)
    assert (job.job_id, length) == ("a1", 1)


def test_waits_for_a_job(client: Any) -> None:
    assert dequeue_with_length(client, timeout=0.05) == (None, 0)
    client.enqueue(queue_type="t", queue_id="a", job_id="a0", payload=0, interval=0)
    job, length = dequeue_with_length(client, timeout=1)
    assert (job.job_id, length) == ("a0", 0)


class TwoCallClient:
    """A client with AsyncClient's methods but not its one-call dequeue."""

    def __init__(self, inner: AsyncClient) -> None:
        self.inner = inner
        self.calls: List[str] = []

    async def dequeue(self, queue_type: str, timeout: Optional[float] = None) -> Any:
        self.calls.append("dequeue")
        return await self.inner.dequeue(queue_type, timeout=timeout)

    async def queue_length(self, queue_type: str, queue_id: str) -> int:
        self.calls.append("queue_length")
        return await self.inner.queue_length(queue_type, queue_id)


async def _dequeue_answers(app: SharqHTTP, count: int) -> List[Tuple[int, Dict[str, Any]]]:
    answers = []
    for _ in range(count):
        sent: List[Dict[str, Any]] = []

        async def send(message: Dict[str, Any]) -> None:
            sent.append(message)

        async def receive() -> Dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        scope = {"type": "http", "method": "GET", "path": "/dequeue/t/", "query_string": b"", "headers": []}
        await app(scope, receive, send)
        answers.append((sent[0]["status"], msgspec.json.decode(sent[1]["body"])))
    return answers


def test_the_app_answers_the_same_with_a_client_without_it(redis_server_url: str, r: redis.Redis, clock: Any) -> None:
    async def run() -> Tuple[Any, Any, List[str]]:
        results = []
        for prefix in ("one", "two"):
            client = AsyncClient(redis_server_url, key_prefix=prefix, clock=clock)
            for i in range(5):
                await client.enqueue(queue_type="t", queue_id=f"q{i % 2}", job_id=f"j{i}", payload={"i": i}, interval=0)
            if prefix == "one":
                assert length_dequeuer(client) is not None
                app = SharqHTTP(ServerSettings(requeuer=False), client)
            else:
                wrapper = TwoCallClient(client)
                assert length_dequeuer(wrapper) is None
                app = SharqHTTP(ServerSettings(requeuer=False), wrapper)
            results.append(await _dequeue_answers(app, 6))
            await client.close()
        return results[0], results[1], wrapper.calls

    one_call, two_calls, calls = asyncio.run(run())
    assert one_call == two_calls
    assert [status for status, _ in one_call] == [200] * 5 + [404]
    assert [body["current_queue_length"] for _, body in one_call[:5]] == [2, 1, 0, 1, 0]
    assert calls == ["dequeue", "queue_length"] * 5 + ["dequeue"]
