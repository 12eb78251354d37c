"""Odd but legal values, foreign data and partial failures: each answers with a clear error
that changes nothing, or with the truth (the "Correctness first" issue, items 2-11; lost
replies and threads are in test_faults.py)."""

import sys

import msgpack
import pytest
import redis

from redis_state import raw_snapshot
from sharq_fast import BadArgumentException, BatchError, UndecodablePayload
from sharq_fast import _constants as C

P = "sharq_server"
EXPIRE = 1000
HUGE = 2**53 - 1


def job(job_id, queue_id="q1", **kw):
    return {"queue_id": queue_id, "job_id": job_id, "payload": {"id": job_id}, "interval": 0, **kw}


# -- 2. payloads that do not decode ------------------------------------------------------

BAD_PAYLOADS = {
    "invalid utf-8 in a str": b"\xa2\xff\xfe",  # a Go producer can write this
    "nested deeper than the stack": b"\x91" * 100_000 + b"\xc0",
    "truncated": b"\x92\x01",
    "not msgpack": b"\xc1",
}


@pytest.mark.parametrize("raw", list(BAD_PAYLOADS.values()), ids=list(BAD_PAYLOADS))
def test_undecodable_payload_is_delivered_not_stuck(client, r, clock, raw):
    client.enqueue_many([job("bad", requeue_limit=0), job("good")])
    r.hset(f"{P}:payload", "default:q1:bad", raw)
    jobs = client.dequeue_many(count=5)
    assert [j.job_id for j in jobs] == ["bad", "good"]
    assert isinstance(jobs[0].payload, UndecodablePayload) and jobs[0].payload == raw
    clock.advance(EXPIRE)
    discarded = client.requeue().discarded  # the same payload, out of requeues
    assert [j.job_id for j in discarded] == ["bad"] and isinstance(discarded[0].payload, UndecodablePayload)


# -- 3. bounds -----------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["interval", "requeue_limit"])
def test_integers_beyond_2_53_are_refused(client, r, field):
    with pytest.raises(BadArgumentException, match=f"`{field}` is larger than 2\\*\\*53 - 1") as info:
        client.enqueue(**job("j1", **{field: HUGE + 1}))
    assert info.value.field == field
    with pytest.raises(BadArgumentException, match="job 1: "):
        client.enqueue_many([job("a"), job("b", **{field: sys.maxsize})])
    assert raw_snapshot(r) == {}


@pytest.mark.parametrize("name", ["job_expire_interval", "job_requeue_interval"])
def test_settings_beyond_2_53_are_refused(make_client, name):
    with pytest.raises(BadArgumentException, match=name):
        make_client(**{name: sys.maxsize})


def test_largest_values_work_end_to_end(make_client, r, clock):
    """2**53 - 1 as a limit, an interval and (nearly) an expire interval: stored, counted
    down and compared exactly (never formatted as a float by Lua)."""
    client = make_client(job_expire_interval=HUGE - 2 * clock.now)
    client.enqueue(**job("slow", queue_id="q2", interval=HUGE))
    assert r.hget(f"{P}:interval", "default:q2") == str(HUGE).encode()
    client.enqueue(**job("j1", requeue_limit=HUGE))
    got = client.dequeue()
    assert got.job_id == "j1" and got.requeues_remaining == HUGE
    assert got.expires_at == clock.now + client.job_expire_interval
    assert client.extend(got, HUGE - 2 * clock.now) is True
    assert client.release(got) is True
    again = client.dequeue()
    assert again.job_id == "j1" and again.requeues_remaining == HUGE
    clock.now = again.expires_at  # far in the future: the lease has run out
    assert client.requeue().requeued == 1
    assert int(r.hget(f"{P}:default:q1:requeues_remaining", "j1")) == HUGE - 1
    assert client.dequeue().requeues_remaining == HUGE - 1


def test_dequeue_count_has_a_bound(client, r):
    for count in (C.MAX_DEQUEUE_COUNT + 1, sys.maxsize, 0, True):
        with pytest.raises(BadArgumentException, match="`count` must be an int from 1 to 10000"):
            client.dequeue_many(count=count)
    assert client.dequeue_many(count=C.MAX_DEQUEUE_COUNT) == []


# -- 4. reserved names, everywhere ---------------------------------------------------------

RESERVED_CALLS = {
    "clear_queue active": lambda c: c.clear_queue("sms", "active"),
    "clear_queue ready/queue_type": lambda c: c.clear_queue("active", "queue_type"),
    "clear_queue payload": lambda c: c.clear_queue("payload", "q"),
    "finish active": lambda c: c.finish("sms", "active", "j"),
    "finish_many": lambda c: c.finish_many([("interval", "q", "j")]),
    "interval": lambda c: c.interval("sms", "active", 5),
    "queue_length": lambda c: c.queue_length("ready", "queue_type"),
    "metrics": lambda c: c.metrics("payload", "q"),
    "metrics type": lambda c: c.metrics("interval"),
    "dequeue": lambda c: c.dequeue("payload"),
    "dequeue_many": lambda c: c.dequeue_many("enqueue_counter"),
}


@pytest.mark.parametrize("call", list(RESERVED_CALLS.values()), ids=list(RESERVED_CALLS))
def test_reserved_names_are_refused_everywhere(client, r, call):
    client.enqueue(**job("j1", queue_type="sms"))
    client.dequeue("sms")
    before = raw_snapshot(r)
    with pytest.raises(BadArgumentException, match="reserved"):
        call(client)
    assert raw_snapshot(r) == before


# -- 9. finish and requeue check before they write ----------------------------------------


def test_finish_refuses_a_batch_with_foreign_keys_and_changes_nothing(client, r):
    client.enqueue_many([job("j0"), job("j1", queue_id="q2")])
    jobs = client.dequeue_many(count=2)
    r.set(f"{P}:t2:active", "not a zset")  # not SharQ's data
    targets = [jobs[0], ("t2", "q", "x"), jobs[1]]
    before = raw_snapshot(r)
    with pytest.raises(BatchError, match="WRONGTYPE") as info:
        client.finish_many(targets)
    assert info.value.refused == [0, 1, 2] and info.value.done == 0
    assert raw_snapshot(r) == before  # j0 was not finished half way
    with pytest.raises(BatchError) as info:  # a call per job: only the broken one is refused
        client.finish_many(targets, chunk_size=1)
    assert info.value.refused == [1] and info.value.done == 2


def test_finish_of_a_job_whose_clean_up_keys_are_foreign_still_finishes(client, r):
    """A write that cannot lose a job (deleting a requeue count) does not stop a finish."""
    client.enqueue(**job("j0"))
    got = client.dequeue()
    r.set(f"{P}:default:q1:requeues_remaining", "not a hash")
    assert client.finish_many([got]) == [True]
    assert r.get(f"{P}:default:q1:requeues_remaining") == b"not a hash"
    assert not r.exists(f"{P}:default:active", f"{P}:payload")


def test_requeue_leaves_a_broken_queue_alone_and_does_the_rest(client, r, clock):
    client.enqueue_many([job("a", queue_id="bad"), job("b", queue_id="good"), job("c", queue_id="gone", requeue_limit=0)])
    client.dequeue_many(count=3)
    r.delete(f"{P}:default:bad:requeues_remaining")
    r.set(f"{P}:default:bad:requeues_remaining", "x")
    clock.advance(EXPIRE)
    with pytest.raises(BatchError, match="1 expired jobs left alone") as info:
        client.requeue()
    result = info.value.result
    assert result.requeued == 1 and [j.job_id for j in result.discarded] == ["c"]
    assert r.lrange(f"{P}:default:good", 0, -1) == [b"b"]
    assert r.zrange(f"{P}:default:active", 0, -1) == [b"bad:a"]  # untouched, not lost


# -- 10. one failing queue type does not stop the others, and its discards are kept --------


def test_requeue_of_other_types_goes_on_and_discards_are_handed_over(client, r, clock):
    client.enqueue_many([job("a", queue_type="t1", requeue_limit=0), job("b", queue_type="t3", requeue_limit=0)])
    client.dequeue_many("t1")
    client.dequeue_many("t3")
    r.sadd(f"{P}:active:queue_type", "t2")
    r.set(f"{P}:t2:active", "not a zset")  # a broken type, sorted between the others
    clock.advance(EXPIRE)
    with pytest.raises(BatchError, match="t2: WRONGTYPE") as info:
        client.requeue()
    assert sorted(j.job_id for j in info.value.result.discarded) == ["a", "b"]
    assert not r.exists(f"{P}:t1:active", f"{P}:t3:active")


# -- 11. requeue keeps the interval of a queue that still has jobs --------------------------


def test_requeue_keeps_the_interval_of_a_queue_with_jobs(client, r, clock):
    """The issue's sequence: j1 (limit 0) is discarded while q1 is momentarily empty, and
    j12 is pushed back by the same requeue: q1 keeps its interval, and j12 waits for it."""
    start = clock.now
    client.enqueue(**job("j1", interval=50, requeue_limit=0))
    client.enqueue(**job("j12", interval=50))
    assert client.dequeue().job_id == "j1"
    clock.now = start + 1748
    assert client.dequeue().job_id == "j12"
    clock.now = start + 2777
    result = client.requeue()
    assert result.requeued == 1 and [j.job_id for j in result.discarded] == ["j1"]
    assert r.hget(f"{P}:interval", "default:q1") == b"50"
    assert client.interval("default", "q1", 60) is True
    # j12 comes back at its time keeper (1748) + interval, not at once
    assert r.zscore(f"{P}:default", "q1") == start + 1748 + 50


def test_requeue_forgets_the_interval_of_an_emptied_queue(client, r, clock):
    client.enqueue(**job("j1", interval=50, requeue_limit=0))
    client.dequeue()
    clock.advance(EXPIRE)
    assert [j.job_id for j in client.requeue().discarded] == ["j1"]
    assert not r.hexists(f"{P}:interval", "default:q1")  # as SharQ's finish of it would


def test_enqueue_after_a_refused_publish_still_enqueues(client, r, redis_server_url):
    """A user whose ACL refuses the wake-up channel still enqueues (pcall)."""
    admin = redis.Redis.from_url(redis_server_url)
    admin.acl_setuser("nochan", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all"], channels=[])
    try:
        url = redis_server_url.replace("redis://", "redis://nochan:pw@")
        from sharq_fast import Client

        with Client(url) as limited:
            assert limited.enqueue(**job("j1")) is True
            assert limited.dequeue().job_id == "j1"
    finally:
        admin.acl_deluser("nochan")
        admin.close()


def test_msgpack_payload_of_go_producer_with_bytes_keys(client, r):
    raw = msgpack.packb({b"k": "v"}, use_bin_type=True)
    client.enqueue(**job("j1"))
    r.hset(f"{P}:payload", "default:q1:j1", raw)
    assert client.dequeue().payload == {b"k": "v"}


def test_a_purge_cut_short_is_finished_by_requeue(client, r):
    """clear_queue sets a long job list aside and purges it in steps; if its client dies
    in between, the next requeue() finishes the purge."""
    client.enqueue_many([job(f"j{i}") for i in range(5)])
    aside = f"{P}:.purging:default:q1:dead"
    r.rename(f"{P}:default:q1", aside)  # where clear_queue's first step leaves it
    r.sadd(f"{P}:.purging", aside)
    r.zrem(f"{P}:default", "q1")
    client.requeue()
    assert not r.exists(aside, f"{P}:.purging", f"{P}:payload", f"{P}:default:q1:requeues_remaining")
    assert client.enqueue(**job("j1")) is True  # its ids are free again
