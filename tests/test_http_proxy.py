"""ProxyClient and AsyncProxyClient against sharq-fast serve (a real uvicorn process), and
against Plivo's sharq-server (gunicorn + gevent, its own virtualenv; marked slow)."""

import asyncio
import threading
import time
from typing import Iterator

import pytest
import redis

import sharq_fast
from http_helpers import ServeProcess
from sharq_fast import AsyncProxyClient, BadArgumentException, ProxyClient
from sharq_fast._redis_server import RedisServer, free_port
from sharq_fast.http.proxy import _Call
from sharq_fast.http.proxy_errors import (
    PayloadTooLarge,
    ProxyAuthError,
    ProxyConnectionError,
    ProxyServerError,
    QueueFull,
    UnsupportedByServer,
)
from sharq_fast.types import FailOutcome, GlobalMetrics, Job, JobRequest, QueueMetrics, QueueTypeMetrics


@pytest.fixture(autouse=True)
def core() -> None:
    """Once, not once per core: the server process picks its own core."""


@pytest.fixture(scope="module")
def server(redis_server_url: str) -> Iterator[ServeProcess]:
    process = ServeProcess(redis_server_url, "--no-requeuer", "--max-body-size", "50000", "--auth-token", "t0k")
    yield process
    process.close()


@pytest.fixture
def q(server: ServeProcess, r: redis.Redis) -> Iterator[ProxyClient]:
    with ProxyClient(server.url, auth="t0k", timeout=10) as client:
        yield client


def test_single_calls(q: ProxyClient) -> None:
    assert q.enqueue(queue_type="sms", queue_id="q1", job_id="j1", payload={"to": "+1"}, interval=0, requeue_limit=2)
    assert q.enqueue(queue_type="sms", queue_id="q1", job_id="j1", payload={"x": 1}, interval=0) is False  # duplicate
    assert q.enqueue(queue_id="d1", job_id="j1", payload=[1, "a", None], interval=0)  # default queue type
    assert q.dequeue("sms") == Job("sms", "q1", "j1", {"to": "+1"}, 2)
    assert q.dequeue("sms") is None
    assert q.dequeue() == Job("default", "d1", "j1", [1, "a", None], -1)
    assert q.finish("sms", "q1", "j1") is True
    assert q.finish("sms", "q1", "j1") is False
    assert q.enqueue(queue_type="sms", queue_id="q2", job_id="j2", payload=1, interval=10)
    assert q.interval("sms", "q2", 20) is True
    assert q.interval("sms", "nope", 20) is False
    assert q.queue_length("sms", "q2") == 1
    assert isinstance(q.metrics(), GlobalMetrics) and q.metrics().queue_types == ["default", "sms"]
    assert q.metrics("sms") == QueueTypeMetrics(["q2"])
    queue = q.metrics("sms", "q2")
    assert isinstance(queue, QueueMetrics) and queue.queue_length == 1 and sum(queue.enqueue_counts.values()) == 1
    assert list(queue.enqueue_counts) == sorted(queue.enqueue_counts, reverse=True)  # newest first, as Client
    assert q.clear_queue("sms", "q2", purge_all=True) is True
    assert q.clear_queue("sms", "q2") is False
    assert q.deep_status() is True


def test_batch_calls(q: ProxyClient) -> None:
    jobs = [{"queue_type": "b", "queue_id": f"q{i % 4}", "job_id": f"j{i}", "payload": {"i": i}, "interval": 0} for i in range(30)]
    jobs.append(JobRequest(queue_type="b", queue_id="q0", job_id="j0", payload={}, interval=0))  # a duplicate
    result = q.enqueue_many(jobs)
    assert result.enqueued == 30 and result.duplicates == [30]
    taken = q.dequeue_many("b", 25)
    assert len(taken) == 25 and all(isinstance(job, Job) and job.queue_type == "b" for job in taken)
    taken += q.dequeue_many("b", 25)
    assert sorted(job.job_id for job in taken) == sorted(f"j{i}" for i in range(30))
    assert all(job.expires_at > 0 for job in taken)  # the batch route gives the leases
    stale = Job("b", taken[0].queue_id, taken[0].job_id, None, -1, taken[0].expires_at)
    assert q.extend_many(taken[:2], 3_600_000) == [True, True] and taken[0].expires_at > stale.expires_at
    assert q.finish_many([stale]) == [False]  # a Job is finished only under its own lease
    assert q.release(taken[2]) is True and q.release(taken[2]) is False
    again = q.dequeue_many("b", 1)
    assert again[0].job_id == taken[2].job_id
    taken[2] = again[0]
    assert q.finish_many(taken + [("b", "q0", "nope")]) == [True] * 30 + [False]
    assert q.dequeue_many("b", 5) == []
    # fail: retried (one requeue counted), then out of requeues into a dead-letter type.
    assert q.enqueue(queue_type="b", queue_id="f", job_id="f1", payload={"f": 1}, interval=0, requeue_limit=1)
    (failing,) = q.dequeue_many("b", 1)
    assert q.fail(failing) is FailOutcome.RETRIED and q.fail(failing) is FailOutcome.LOST
    (failing,) = q.dequeue_many("b", 1)
    assert failing.requeues_remaining == 0
    assert q.fail_many([failing], backoff_ms=10, dead_letter="b_dead") == [FailOutcome.DEAD_LETTERED]
    assert [(j.job_id, j.payload) for j in q.dequeue_many("b_dead", 5)] == [("f1", {"f": 1})]
    with pytest.raises(BadArgumentException, match="own queue type"):
        q.fail(failing, dead_letter="b")
    with pytest.raises(BadArgumentException, match="Job objects"):
        q.extend_many([("b", "q0", "j0", 5)], 1000)
    with pytest.raises(BadArgumentException, match="ms"):
        q.extend_many(taken[:1], 0)


def test_bad_arguments_are_refused_before_sending(q: ProxyClient) -> None:
    with pytest.raises(BadArgumentException, match="`interval` has an invalid value"):
        q.enqueue(queue_id="q1", job_id="j1", payload={}, interval=-1)
    with pytest.raises(BadArgumentException, match="`queue_id`"):
        q.enqueue(queue_id="bad id", job_id="j1", payload={}, interval=0)
    with pytest.raises(BadArgumentException, match="`job_id`"):
        q.finish("sms", "q1", "x" * 101)
    with pytest.raises(BadArgumentException, match="payload"):
        q.enqueue(queue_id="q1", job_id="j1", payload=object(), interval=0)
    with pytest.raises(BadArgumentException, match="job 1"):
        q.enqueue_many([{"queue_id": "q", "job_id": "a", "payload": 1, "interval": 0}, {"queue_id": "q", "job_id": "b"}])
    with pytest.raises(BadArgumentException, match="should be accompanied"):
        q.metrics(queue_id="q1")


def test_http_errors_are_clear_exceptions(q: ProxyClient, server: ServeProcess) -> None:
    for i in range(2):
        assert q.enqueue(queue_id="full", job_id=f"j{i}", payload={"max_queued_length": 2}, interval=0)
    with pytest.raises(QueueFull) as full:
        q.enqueue(queue_id="full", job_id="j9", payload={"max_queued_length": 2}, interval=0)
    assert full.value.current_queue_length == 2 and full.value.status_code == 429
    with pytest.raises(PayloadTooLarge, match="413"):
        q.enqueue(queue_id="big", job_id="j1", payload="x" * 60_000, interval=0)
    with ProxyClient(server.url) as anonymous, pytest.raises(ProxyAuthError, match="401"):
        anonymous.dequeue()
    with ProxyClient(server.url, auth="wrong") as wrong, pytest.raises(ProxyAuthError):
        wrong.metrics()
    with ProxyClient(f"http://127.0.0.1:{free_port()}", timeout=2) as nowhere, pytest.raises(ProxyConnectionError, match="ConnectError"):
        nowhere.dequeue()


def test_server_errors_and_timeouts() -> None:
    with RedisServer() as own_redis:
        process = ServeProcess(own_redis.url, "--no-requeuer", "--retry-for", "0")
        try:
            with ProxyClient(process.url, timeout=0.3) as q:
                q.enqueue(queue_id="q1", job_id="j1", payload=1, interval=0)
                with pytest.raises(ProxyConnectionError, match="ReadTimeout"):
                    # A server slower than the timeout: a long poll the client did not ask
                    # for (dequeue(timeout=) adds its wait to the network timeout).
                    q._do(_Call("GET", "/dequeue/empty/", q._dequeue("empty", None).parse, params={"wait": 2}))
                own_redis.stop()
                with pytest.raises(ProxyServerError, match="503"):
                    q.deep_status()
        finally:
            process.close()


def test_long_poll_and_connection_reuse(q: ProxyClient) -> None:
    def later() -> None:
        time.sleep(0.4)
        with ProxyClient(q.base_url, auth="t0k") as other:
            other.enqueue(queue_type="lp", queue_id="q1", job_id="j1", payload={"late": 1}, interval=0)

    threading.Thread(target=later).start()
    started = time.monotonic()
    job = q.dequeue("lp", timeout=5)
    assert job is not None and job.payload == {"late": 1}
    assert 0.3 < time.monotonic() - started < 3
    started = time.monotonic()
    assert q.dequeue("lp", timeout=0.5) is None
    assert time.monotonic() - started >= 0.45
    for _ in range(20):
        q.metrics()
    assert len(q._http._transport._pool.connections) == 1  # one kept-alive connection, reused


def test_async_proxy_client(server: ServeProcess, r: redis.Redis) -> None:
    async def run() -> None:
        async with AsyncProxyClient(server.url, auth="t0k") as q:
            assert await q.enqueue(queue_type="a", queue_id="q1", job_id="j1", payload={"n": 1}, interval=0)
            assert await q.enqueue(queue_type="a", queue_id="q1", job_id="j1", payload={"n": 1}, interval=0) is False
            results = await asyncio.gather(*(
                q.enqueue(queue_type="a", queue_id=f"q{i % 7}", job_id=f"k{i}", payload=i, interval=0) for i in range(50)
            ))
            assert all(results)
            jobs = await asyncio.gather(*(q.dequeue("a") for _ in range(51)))
            assert sorted(job.job_id for job in jobs) == sorted(["j1"] + [f"k{i}" for i in range(50)])
            assert await q.dequeue("a", timeout=0.3) is None
            assert await q.finish_many(jobs) == [True] * 51
            assert await q.enqueue(queue_type="a", queue_id="e", job_id="e1", payload=1, interval=0)
            (leased,) = await q.dequeue_many("a", 1)
            assert await q.extend(leased, 60_000) is True and await q.release(leased) is True
            assert await q.release_many([leased]) == [False]
            (failing,) = await q.dequeue_many("a", 1)
            assert await q.fail(failing) is FailOutcome.RETRIED  # back in its queue, one requeue counted
            assert await q.fail_many([failing]) == [FailOutcome.LOST]
            assert await q.extend_many(await q.dequeue_many("a", 1), 1000) == [True]
            assert await q.finish("a", "e", "e1") is True
            assert (await q.enqueue_many([{"queue_type": "a", "queue_id": "z", "job_id": "z1", "payload": 1, "interval": 0}])).enqueued == 1
            assert [job.job_id for job in await q.dequeue_many("a", 10, timeout=1)] == ["z1"]
            assert await q.finish("a", "z", "z1") is True
            assert await q.interval("a", "nope", 5) is False
            assert (await q.metrics("a")).queue_ids == []
            assert await q.queue_length("a", "q1") == 0
            assert await q.clear_queue("a", "q1") is False
            assert await q.deep_status() is True

    asyncio.run(run())


def test_top_level_names() -> None:
    assert sharq_fast.ProxyClient is ProxyClient and sharq_fast.AsyncProxyClient is AsyncProxyClient


# -- against Plivo's sharq-server -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sharq_server(redis_server_url: str) -> Iterator[str]:
    """Plivo's sharq-server (PyPI 0.2.0, ported; see _peer_server.py), one gevent worker."""
    import os
    import tempfile

    from sharq_fast._peer import PeerUnavailable
    from sharq_fast.http import _peer_server as peer

    try:
        venv = peer.ensure_server_venv()
    except PeerUnavailable as exc:
        pytest.skip(f"sharq-server virtualenv unavailable: {exc}")
    kwargs = redis.Redis.from_url(redis_server_url).connection_pool.connection_kwargs
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        config = peer.write_server_config(
            os.path.join(folder, "sharq.conf"), redis_host=kwargs["host"], redis_port=kwargs["port"],
            db=kwargs.get("db", 0), port=port,
        )
        with peer.SharqServerProcess(venv, config, port) as process:
            yield process.url


@pytest.mark.slow
def test_proxy_client_against_sharq_server(sharq_server: str, r: redis.Redis, redis_server_url: str) -> None:
    with ProxyClient(sharq_server) as q:
        assert q.server_waits() is False
        assert q.enqueue(queue_type="sms", queue_id="q1", job_id="j1", payload={"to": "+1"}, interval=0, requeue_limit=1)
        assert q.enqueue(queue_type="sms", queue_id="q1", job_id="j2", payload="text", interval=0)
        assert q.dequeue("sms") == Job("sms", "q1", "j1", {"to": "+1"}, 1)
        assert q.finish("sms", "q1", "j1") is True and q.finish("sms", "q1", "j1") is False
        assert q.interval("sms", "q1", 5) is True and q.interval("sms", "nope", 5) is False
        assert q.metrics("sms") == QueueTypeMetrics(["q1"])
        assert q.queue_length("sms", "q1") == 1
        assert sum(q.metrics().enqueue_counts.values()) == 2
        # A job enqueued by sharq_fast's Client straight into Redis comes out of sharq-server.
        with sharq_fast.Client(redis_server_url) as direct:
            assert direct.enqueue(queue_type="mix", queue_id="q1", job_id="d1", payload={"via": "redis"}, interval=0)
            assert q.dequeue("mix") == Job("mix", "q1", "d1", {"via": "redis"}, -1)
            assert q.enqueue(queue_type="mix", queue_id="q2", job_id="h1", payload={"via": "http"}, interval=0)
            got = direct.dequeue("mix")
            assert got == Job("mix", "q2", "h1", {"via": "http"}, -1, got.expires_at) and got.expires_at > 0
        # No long-poll there: the client polls until the timeout.
        started = time.monotonic()
        assert q.dequeue("empty", timeout=0.4) is None
        assert time.monotonic() - started >= 0.35
        with pytest.raises(UnsupportedByServer, match="no batch routes"):
            q.enqueue_many([{"queue_id": "q", "job_id": "b1", "payload": 1, "interval": 0}])
        with pytest.raises(UnsupportedByServer, match="no batch routes"):
            q.dequeue_many("sms", 5)
        with pytest.raises(UnsupportedByServer, match="404"):  # PyPI's 0.2.0 has no /deletequeue/
            q.clear_queue("sms", "q1")
        with pytest.raises(BadArgumentException):  # caught here; sharq-server would answer 500
            q.enqueue(queue_id="q1", job_id="j1", payload={}, interval=True)


@pytest.mark.slow
def test_async_proxy_client_against_sharq_server(sharq_server: str, r: redis.Redis) -> None:
    async def run() -> None:
        async with AsyncProxyClient(sharq_server) as q:
            assert all(await asyncio.gather(*(
                q.enqueue(queue_type="as", queue_id=f"q{i % 3}", job_id=f"j{i}", payload=i, interval=0) for i in range(12)
            )))
            jobs = [await q.dequeue("as") for _ in range(12)]
            assert sorted(job.payload for job in jobs) == list(range(12))
            assert all(await asyncio.gather(*(q.finish(j.queue_type, j.queue_id, j.job_id) for j in jobs)))
            assert await q.dequeue("as", timeout=0.2) is None

    asyncio.run(run())
