"""Differential check of the two transports: a random sequence of operations (Hypothesis)
through Client under prefix `pa` and through AsyncClient under `pb`, at the same injected
times, gives equal results and leaves byte-identical Redis state (DUMP of every key, the
prefix stripped, reply caches left out).

On the asyncio side single calls of one step run as concurrent tasks (auto-pipelining
writes them together, in order), batches take async iterables."""

import asyncio
from typing import Any, Callable, Dict, List, Tuple

import redis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sharq_fast import AsyncClient, Client

from async_facade import LoopThread
from conftest import FakeClock
from redis_state import is_reply_cache
from test_batch import QUEUE_IDS, QUEUE_TYPES, current_minute, dump_state, job_requests

EXPIRE = 120_000
OPERATIONS = (
    ["enqueue", "enqueue_many", "dequeue", "dequeue_many"] * 3
    + ["finish", "finish_many", "extend", "release", "fail", "advance", "requeue"] * 2
    + ["interval", "clear_queue", "metrics", "queue_length", "drop_time_keepers"]
)


def dump_bytes(r: redis.Redis, prefix: str) -> Dict[bytes, bytes]:
    """DUMP of every key of `prefix` (the prefix stripped), reply caches left out."""
    keys = sorted(key for key in r.scan_iter(match=f"{prefix}:*", count=1000) if not is_reply_cache(key))
    return {key[len(prefix):]: r.dump(key) for key in keys}


def ref(job: Any) -> Tuple[str, str, str]:
    return job.queue_type, job.queue_id, job.job_id


def outcome(call: Callable[[], Any]) -> Tuple[str, Any]:
    try:
        return "ok", call()
    except Exception as exc:  # both transports must fail alike
        return type(exc).__name__, str(exc)


async def gathered(calls: List[Callable[[], Any]]) -> List[Any]:
    return list(await asyncio.gather(*(call() for call in calls)))


async def async_items(items: List[Any]):
    for item in items:
        yield item


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_client_and_async_client_leave_the_same_state(
    data, r: redis.Redis, redis_server_url: str, clock: FakeClock, loop_thread: LoopThread
):
    r.flushdb()
    clock.now = current_minute() + 1000
    settings_ = dict(clock=clock, job_expire_interval=EXPIRE)
    sync = Client(redis_server_url, key_prefix="pa", **settings_)

    async def make() -> AsyncClient:
        return AsyncClient(redis_server_url, key_prefix="pb", **settings_)

    aio = loop_thread.run(make())
    run = loop_thread.run
    held_a: List[Any] = []  # Jobs dequeued by each client (equal, but not the same objects)
    held_b: List[Any] = []
    draw = data.draw

    def picks(max_size: int = 6) -> List[int]:
        return draw(st.lists(st.integers(0, len(held_a) - 1), max_size=max_size)) if held_a else []

    def queue() -> Tuple[str, str]:
        return draw(st.sampled_from(QUEUE_TYPES)), draw(st.sampled_from(QUEUE_IDS))

    try:
        for step in range(draw(st.integers(5, 30), label="steps")):
            kind = draw(st.sampled_from(OPERATIONS), label="operation")
            if kind == "enqueue":
                requests = draw(st.lists(job_requests(), max_size=6))
                a = outcome(lambda: [sync.enqueue(**q) for q in requests])
                b = outcome(lambda: run(gathered([lambda q=q: aio.enqueue(**q) for q in requests])))
            elif kind == "enqueue_many":
                requests = draw(st.lists(job_requests(), max_size=10))
                chunk, depth = draw(st.integers(1, 4)), draw(st.integers(1, 3))
                a = outcome(lambda: sync.enqueue_many(requests, chunk_size=chunk, pipeline_depth=depth))
                b = outcome(lambda: run(aio.enqueue_many(async_items(requests), chunk_size=chunk, pipeline_depth=depth)))
            elif kind == "dequeue":
                queue_type, count = draw(st.sampled_from(QUEUE_TYPES)), draw(st.integers(1, 5))
                a = outcome(lambda: [sync.dequeue(queue_type) for _ in range(count)])
                b = outcome(lambda: run(gathered([lambda: aio.dequeue(queue_type)] * count)))
                if a[0] == "ok":
                    held_a += [job for job in a[1] if job]
                if b[0] == "ok":
                    held_b += [job for job in b[1] if job]
            elif kind == "dequeue_many":
                queue_type, count = draw(st.sampled_from(QUEUE_TYPES)), draw(st.integers(1, 8))
                a = outcome(lambda: sync.dequeue_many(queue_type, count))
                b = outcome(lambda: run(aio.dequeue_many(queue_type, count)))
                if a[0] == "ok":
                    held_a += a[1]
                if b[0] == "ok":
                    held_b += b[1]
            elif kind == "finish":
                chosen = picks(4)
                a = outcome(lambda: [sync.finish(*ref(held_a[i])) for i in chosen])
                b = outcome(lambda: run(gathered([lambda i=i: aio.finish(*ref(held_b[i])) for i in chosen])))
            elif kind == "finish_many":
                chosen, as_ids = picks(), draw(st.booleans())
                a = outcome(lambda: sync.finish_many([ref(held_a[i]) if as_ids else held_a[i] for i in chosen]))
                b = outcome(lambda: run(aio.finish_many([ref(held_b[i]) if as_ids else held_b[i] for i in chosen])))
            elif kind == "extend":
                chosen, ms = picks(), draw(st.sampled_from([1, 500, EXPIRE, 3 * EXPIRE]))
                a = outcome(lambda: sync.extend_many([held_a[i] for i in chosen], ms, chunk_size=2))
                b = outcome(lambda: run(aio.extend_many([held_b[i] for i in chosen], ms, chunk_size=2)))
                assert held_a == held_b, step  # the same new expires_at
            elif kind == "release":
                chosen = picks()
                a = outcome(lambda: sync.release_many([held_a[i] for i in chosen], chunk_size=3))
                b = outcome(lambda: run(aio.release_many([held_b[i] for i in chosen], chunk_size=3)))
            elif kind == "fail":
                chosen = picks()
                backoff, dead = draw(st.sampled_from([0, 0, 1000])), draw(st.sampled_from([None, "dl"]))
                a = outcome(lambda: sync.fail_many([held_a[i] for i in chosen], backoff_ms=backoff, dead_letter=dead,
                                                   chunk_size=3))
                b = outcome(lambda: run(aio.fail_many([held_b[i] for i in chosen], backoff_ms=backoff,
                                                      dead_letter=dead, chunk_size=3)))
            elif kind == "interval":
                (queue_type, queue_id), interval = queue(), draw(st.integers(0, 3000))
                a = outcome(lambda: sync.interval(queue_type, queue_id, interval))
                b = outcome(lambda: run(aio.interval(queue_type, queue_id, interval)))
            elif kind == "clear_queue":
                (queue_type, queue_id), purge_all = queue(), draw(st.booleans())
                a = outcome(lambda: sync.clear_queue(queue_type, queue_id, purge_all))
                b = outcome(lambda: run(aio.clear_queue(queue_type, queue_id, purge_all)))
            elif kind == "metrics":
                queue_type, queue_id = queue()
                a = outcome(lambda: (sync.metrics(), sync.metrics(queue_type), sync.metrics(queue_type, queue_id)))
                b = outcome(lambda: run(gathered(
                    [aio.metrics, lambda: aio.metrics(queue_type), lambda: aio.metrics(queue_type, queue_id)]
                )))
                b = (b[0], tuple(b[1])) if b[0] == "ok" else b
            elif kind == "queue_length":
                queue_type, queue_id = queue()
                a = outcome(lambda: sync.queue_length(queue_type, queue_id))
                b = outcome(lambda: run(aio.queue_length(queue_type, queue_id)))
            elif kind == "advance":
                clock.advance(draw(st.integers(0, 3000) | st.sampled_from([EXPIRE - 1, EXPIRE, EXPIRE + 1])))
                continue
            elif kind == "requeue":
                a = outcome(sync.requeue)
                b = outcome(lambda: run(aio.requeue()))
            else:  # drop_time_keepers: their expiry (PSETEX in Redis's real time), at a known step
                for prefix in ("pa", "pb"):
                    keys = list(r.scan_iter(match=f"{prefix}:*:time"))
                    if keys:
                        r.delete(*keys)
                a = b = ("ok", None)
            event(f"{kind}: {a[0]}")
            assert a == b, (step, kind)
            assert dump_bytes(r, "pb") == dump_bytes(r, "pa"), (step, kind)
            assert dump_state(r, "pb") == dump_state(r, "pa"), (step, kind)  # and the expiries
    finally:
        sync.close()
        run(aio.close())
