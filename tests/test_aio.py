"""AsyncClient's own cases (the behaviour suite runs on it through the `transport`
fixture): tasks cancelled while their round is queued or in flight, 200 tasks sharing one
client, and auto-pipelining, each against a real Redis."""

import asyncio
from typing import Any, List

import redis
import redis.asyncio

from sharq_fast import AsyncClient

# A script that keeps Redis busy for ARGV[1] seconds: rounds written meanwhile stay in
# flight (written, not answered) until it ends.
STALL = """
local t = redis.call('TIME')
local start = t[1] * 1e6 + t[2]
repeat t = redis.call('TIME') until t[1] * 1e6 + t[2] - start >= ARGV[1] * 1e6
return 1
"""


def job(queue_type: str, queue_id: str, job_id: str, payload: Any = None) -> dict:
    return {"queue_type": queue_type, "queue_id": queue_id, "job_id": job_id,
            "payload": job_id if payload is None else payload, "interval": 0}


async def until(predicate, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.005)


def test_cancelled_while_in_flight(redis_server_url: str, r: redis.Redis, clock):
    """Tasks cancelled while their enqueue_many / dequeue_many round is in flight: the
    connection stays usable, no reply goes to another call, the other tasks' results are
    right; what Redis ran stays done (the in-flight round of the batch)."""

    async def scenario() -> None:
        client = AsyncClient(redis_server_url, clock=clock)
        staller = redis.asyncio.Redis.from_url(redis_server_url)
        try:
            await client.enqueue_many([job("deq", "q1", f"d{i}") for i in range(50)])
            await client.enqueue_many([job("lost", "q1", f"l{i}") for i in range(5)])
            stall = asyncio.ensure_future(staller.eval(STALL, 0, 1.0))
            await asyncio.sleep(0.05)  # Redis runs the stall now
            big = asyncio.ensure_future(
                client.enqueue_many((job("big", f"b{i % 7}", f"b{i}") for i in range(5000)), chunk_size=50, pipeline_depth=2)
            )
            taken = asyncio.ensure_future(client.dequeue_many("deq", 20))
            lost = asyncio.ensure_future(client.dequeue_many("lost", 5))
            singles = [asyncio.ensure_future(client.enqueue(**job("single", "s", f"s{i}"))) for i in range(10)]
            lengths = [asyncio.ensure_future(client.queue_length("deq", "q1")) for _ in range(3)]
            pipeline = client._transport._pipeline
            await until(lambda: len(pipeline._in_flight) >= 4 and not stall.done())
            big.cancel()
            lost.cancel()
            for task in (big, lost):
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                else:
                    raise AssertionError("not cancelled")
            assert await stall == 1
            deq = await taken
            assert [j.job_id for j in deq] == [f"d{i}" for i in range(20)]
            assert await asyncio.gather(*singles) == [True] * 10
            assert await asyncio.gather(*lengths) == [30] * 3
            # The connection goes on: 100 calls of different answers, each its own.
            got = await asyncio.gather(*(client.queue_length("big", f"b{i % 7}") for i in range(100)))
            landed = [r.llen(f"sharq_server:big:b{i % 7}") for i in range(100)]
            assert got == landed
            # The batch's first round (chunk_size x pipeline_depth jobs) was in flight: Redis
            # ran it; nothing after it was sent.
            assert sum(landed[:7]) == 100
            deq += await client.dequeue_many("deq", 100)
            assert [j.job_id for j in deq] == [f"d{i}" for i in range(50)]
            assert await client.finish_many(deq) == [True] * 50
            # The cancelled dequeue_many's jobs were taken: they come back by requeue.
            assert await client.dequeue_many("lost", 5) == []
            clock.advance(client.job_expire_interval + 1)
            assert (await client.requeue()).requeued == 5
            assert sorted(j.job_id for j in await client.dequeue_many("lost", 5)) == [f"l{i}" for i in range(5)]
        finally:
            await client.close()
            await staller.aclose()

    asyncio.run(scenario())


def test_cancelled_before_written_is_never_sent(redis_server_url: str, r: redis.Redis, clock):
    async def scenario() -> None:
        async with AsyncClient(redis_server_url, clock=clock) as client:
            await client.enqueue(**job("t", "q1", "keep"))
            enqueue = asyncio.ensure_future(client.enqueue(**job("t", "q1", "never")))
            dequeue = asyncio.ensure_future(client.dequeue("t"))
            await asyncio.sleep(0)  # both queued their round; the writer runs next turn
            assert len(client._transport._pipeline._outbox) == 2
            enqueue.cancel()
            dequeue.cancel()
            await asyncio.gather(enqueue, dequeue, return_exceptions=True)
            assert enqueue.cancelled() and dequeue.cancelled()
            assert await client.queue_length("t", "q1") == 1
            assert (await client.dequeue("t")).job_id == "keep"
            assert await client.dequeue("t") is None

    asyncio.run(scenario())
    assert not r.hexists("sharq_server:payload", "t:q1:never")


def test_cancelled_while_waiting_for_a_job(redis_server_url: str, r: redis.Redis, clock):
    async def scenario() -> None:
        async with AsyncClient(redis_server_url, clock=clock, wait_poll_interval=60) as client:
            waiting = asyncio.ensure_future(client.dequeue("t", timeout=30))
            await asyncio.sleep(0.2)
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
            assert waiting.cancelled()
            assert await client.enqueue(**job("t", "q1", "j1"))
            assert (await client.dequeue("t", timeout=5)).job_id == "j1"

    asyncio.run(scenario())


def test_200_tasks_share_one_client(redis_server_url: str, r: redis.Redis, clock):
    """Every task's results are its own: each works on queues no other task touches, with
    single calls and batches of different sizes interleaved on the one connection."""

    async def worker(client: AsyncClient, n: int) -> None:
        queue_type, count = f"t{n}", 1 + n % 7
        for i in range(count):
            assert await client.enqueue(**job(queue_type, "q", f"j{i}", payload={"task": n, "i": i}))
        assert await client.enqueue(**job(queue_type, "q", "j0")) is False  # a duplicate
        if n % 3 == 0:
            result = await client.enqueue_many([job(queue_type, "q", f"m{i}") for i in range(n)], chunk_size=1 + n % 5)
            assert result.enqueued == n and result.duplicates == []
        total = count + (n if n % 3 == 0 else 0)
        assert await client.queue_length(queue_type, "q") == total
        first = await client.dequeue(queue_type)
        assert (first.job_id, first.payload) == ("j0", {"task": n, "i": 0})
        rest = await client.dequeue_many(queue_type, 1000)
        assert [j.job_id for j in rest] == [f"j{i}" for i in range(1, count)] + [f"m{i}" for i in range(total - count)]
        assert await client.extend_many(rest, 5000) == [True] * len(rest)
        assert await client.finish(queue_type, "q", "j0") is True
        assert await client.finish(queue_type, "q", "j0") is False
        assert await client.finish_many(rest) == [True] * len(rest)
        assert (await client.metrics(queue_type)).queue_ids == []

    async def scenario() -> List[Any]:
        async with AsyncClient(redis_server_url, clock=clock) as client:
            return await asyncio.gather(*(worker(client, n) for n in range(200)), return_exceptions=True)

    failures = [result for result in asyncio.run(scenario()) if result is not None]
    assert not failures, failures[:3]
    assert not r.hlen("sharq_server:payload")


def test_calls_of_one_turn_share_a_write(redis_server_url: str, r: redis.Redis, clock, monkeypatch):
    """Auto-pipelining: the rounds that tasks ask for in one loop turn go in one write."""
    writes: List[int] = []

    async def scenario() -> None:
        async with AsyncClient(redis_server_url, clock=clock) as client:
            await client.deep_status()
            stream = client._transport._pipeline._conn._writer  # what the pipeline writes to
            write = stream.write

            def counted(data):
                writes.append(len(data))
                return write(data)

            monkeypatch.setattr(stream, "write", counted)
            results = await asyncio.gather(*(client.enqueue(**job("t", f"q{i}", "j")) for i in range(100)))
            assert results == [True] * 100

    asyncio.run(scenario())
    assert 1 <= len(writes) <= 3, writes  # one, or a few on a slow turn; never one per call


def test_no_reply_within_socket_timeout_breaks_the_connection(redis_server_url: str, r: redis.Redis, clock):
    """Replies are read without a timer each; a watchdog breaks the connection when none
    came for socket_timeout seconds. The round is resent on a new connection (retry_for)
    and, Redis still busy, ends in OutcomeUnknownError; the client then works on."""
    from sharq_fast import OutcomeUnknownError

    async def scenario() -> None:
        slow = redis.asyncio.Redis.from_url(redis_server_url, socket_timeout=0.2)
        staller = redis.asyncio.Redis.from_url(redis_server_url)
        client = AsyncClient(slow, clock=clock, retry_for=0.1)
        try:
            assert await client.enqueue(**job("t", "q1", "before"))
            stall = asyncio.ensure_future(staller.eval(STALL, 0, 2.0))
            await asyncio.sleep(0.05)
            try:
                await client.enqueue(**job("t", "q1", "during"))
            except OutcomeUnknownError as exc:
                # The watchdog's timeout, or (the resend's new connection) redis-py's own.
                assert "socket_timeout" in str(exc) or "Timeout reading" in str(exc)
            else:
                raise AssertionError("the stalled round did not time out")
            assert not stall.done()  # it timed out while Redis was still busy
            await stall
            # The timed-out call ran once Redis was free: a resend gets its answer from
            # the reply cache; the connection in use is a new one.
            assert await client.queue_length("t", "q1") == 2
            assert [j.job_id for j in await client.dequeue_many("t", 5)] == ["before", "during"]
        finally:
            await client.close()
            await slow.aclose()
            await staller.aclose()

    asyncio.run(scenario())
