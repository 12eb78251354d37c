"""Batch operations: enqueue_many, dequeue_many, finish_many and batched requeue.

A differential test checks that the batch calls leave exactly the Redis state (and give
exactly the results) of the single calls they replace; the rest covers interop between
single and batch calls, edge cases, and the per-minute counters.
"""

import time
from typing import Any, Dict, List, Tuple

import msgpack
import pytest
import redis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sharq_fast import (
    BadArgumentException,
    BatchError,
    Client,
    EnqueueResult,
    Job,
    JobRequest,
    RequeueResult,
)
from sharq_fast import _constants as C

from conftest import FakeClock, forget_gone_intervals
from redis_state import is_reply_cache

P = "sharq_server"
EXPIRE = C.DEFAULT_JOB_EXPIRE_INTERVAL


# -- helpers ---------------------------------------------------------------------------


def current_minute() -> int:
    """The start of the real current minute, in ms: counters expire at absolute real times
    (EXPIREAT), so tests that check them start the fake clock near the real one."""
    return time.time_ns() // 1_000_000 // 60000 * 60000


def minute_of(now: int) -> int:
    return now // 60000 * 60000


def counter_expiry(now: int) -> int:
    return (minute_of(now) + 600000) // 1000


_DEFAULT = object()


def job(job_id: str, queue_id: str = "q1", payload: Any = _DEFAULT, interval: int = 0, **kw: Any) -> Dict[str, Any]:
    return {
        "queue_id": queue_id,
        "job_id": job_id,
        "payload": {"id": job_id} if payload is _DEFAULT else payload,
        "interval": interval,
        **kw,
    }


def dump_state(r: redis.Redis, prefix: str) -> Dict[bytes, Tuple[str, Any, Any]]:
    """Every key under `prefix:`, the prefix stripped: (type, value, ttl). ttl is the
    absolute EXPIRETIME for the per-minute counters (EXPIREAT: exact), and only whether
    there is a TTL for the rest (PSETEX'd time keepers: PTTL drifts with real time)."""
    keys = sorted(key for key in r.scan_iter(match=f"{prefix}:*", count=1000) if not is_reply_cache(key))
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
    kinds = [kind.decode() for kind in pipe.execute()]
    readers = {
        "string": pipe.get,
        "list": lambda key: pipe.lrange(key, 0, -1),
        "hash": pipe.hgetall,
        "set": pipe.smembers,
        "zset": lambda key: pipe.zrange(key, 0, -1, withscores=True),
    }
    kept = [(key, kind) for key, kind in zip(keys, kinds) if kind in readers]  # "none": expired
    for key, kind in kept:
        readers[kind](key)
        pipe.expiretime(key) if b"_counter:" in key else pipe.pttl(key)
    replies = pipe.execute()
    state = {}
    for n, (key, kind) in enumerate(kept):
        value, ttl = replies[2 * n], replies[2 * n + 1]
        if b"_counter:" not in key:
            ttl = ttl > 0
        state[key[len(prefix):]] = (kind, value, ttl)
    return state


def queue_lengths(r: redis.Redis, prefix: str, queue_type: str, queue_ids) -> Dict[str, int]:
    return {q: r.llen(f"{prefix}:{queue_type}:{q}") for q in queue_ids}


# -- 1. differential: single calls vs batch calls ----------------------------------------

QUEUE_TYPES = ["t1", "t2"]
QUEUE_IDS = ["q1", "q2", "q3"]
JOB_IDS = [f"j{i}" for i in range(6)]  # few ids: duplicates are common

payloads = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=8) | st.binary(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=6,
)


@st.composite
def job_requests(draw) -> Dict[str, Any]:
    request = {
        "queue_type": draw(st.sampled_from(QUEUE_TYPES)),
        "queue_id": draw(st.sampled_from(QUEUE_IDS)),
        "job_id": draw(st.sampled_from(JOB_IDS)),
        "payload": draw(payloads),
        "interval": draw(st.sampled_from([0, 0, 1, 500, 1000, 3000]) | st.integers(0, 3000)),
    }
    limit = draw(st.sampled_from([None, 0, 0, 1, -1, 2, 3]))
    if limit is not None or draw(st.booleans()):
        request["requeue_limit"] = limit
    return request


DIFF_EXPIRE = 120_000
# Operation kinds, weighted by repetition.
OPERATIONS = ["enqueue"] * 4 + ["dequeue"] * 4 + ["finish"] * 3 + ["advance"] * 2 + ["requeue"] * 2 + [
    "expire_and_requeue",
    "drop_time_keepers",
]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_batch_calls_equal_single_calls(data, r: redis.Redis, redis_server_url: str, clock: FakeClock, monkeypatch):
    """The same operations, at the same injected times, through single calls under prefix
    `pa` and through batch calls under `pb`: equal results and identical Redis states."""
    r.flushdb()
    clock.now = current_minute() + 1000
    # Time keepers are PSETEX'd with job_expire_interval in Redis's real time: a long one
    # keeps real time out of the test (drop_time_keepers does their expiry, at known steps).
    single = Client(redis_server_url, key_prefix="pa", clock=clock, job_expire_interval=DIFF_EXPIRE)
    batch = Client(redis_server_url, key_prefix="pb", clock=clock, job_expire_interval=DIFF_EXPIRE)
    dequeued: List[Job] = []  # jobs dequeued so far (the same in both runs)
    draw = data.draw
    try:
        for step in range(draw(st.integers(10, 40), label="steps")):
            kind = draw(st.sampled_from(OPERATIONS))
            if kind == "enqueue":
                requests = draw(st.lists(job_requests(), max_size=8))
                chunk_size, depth = draw(st.integers(1, 4)), draw(st.integers(1, 3))
                flags = [single.enqueue(**request) for request in requests]
                expected = EnqueueResult(
                    enqueued=sum(flags), duplicates=[i for i, flag in enumerate(flags) if not flag]
                )
                items = [JobRequest(**q) for q in requests] if draw(st.booleans()) else requests
                got = batch.enqueue_many(iter(items), chunk_size=chunk_size, pipeline_depth=depth)
                assert got == expected, step
                event(f"enqueue: duplicates {bool(got.duplicates)}")
            elif kind == "dequeue":
                queue_type, count = draw(st.sampled_from(QUEUE_TYPES)), draw(st.integers(1, 8))
                expected_jobs = [job for job in (single.dequeue(queue_type) for _ in range(count)) if job]
                got_jobs = batch.dequeue_many(queue_type, count)
                assert got_jobs == expected_jobs, step
                dequeued.extend(got_jobs)
                event(f"dequeue: got jobs {bool(got_jobs)}")
            elif kind == "finish":
                picks = draw(st.lists(st.integers(-1, len(dequeued) - 1), max_size=6))
                targets: List[Any] = []
                for n, pick in enumerate(picks):
                    if pick < 0:
                        targets.append((draw(st.sampled_from(QUEUE_TYPES)), "q1", f"unknown{n}"))
                    else:
                        job = dequeued[pick]
                        targets.append(job if n % 2 else (job.queue_type, job.queue_id, job.job_id))
                # A Job is finished only while its lease is still the one it was dequeued
                # with (not after a requeue and another dequeue); a tuple by its ids.
                expected_flags = [
                    single.finish(*t)
                    if isinstance(t, tuple)
                    else r.zscore(f"pa:{t.queue_type}:active", f"{t.queue_id}:{t.job_id}") == t.expires_at
                    and single.finish(t.queue_type, t.queue_id, t.job_id)
                    for t in targets
                ]
                got_flags = batch.finish_many(targets, chunk_size=draw(st.integers(1, 4)))
                assert got_flags == expected_flags, step
                event(f"finish: finished {any(got_flags)}, refused {not all(got_flags)}")
            elif kind == "advance":
                clock.advance(draw(st.integers(0, 3000) | st.sampled_from([DIFF_EXPIRE - 1, DIFF_EXPIRE])))
            elif kind in ("requeue", "expire_and_requeue"):
                if kind == "expire_and_requeue":
                    clock.advance(DIFF_EXPIRE)
                expected_result = single.requeue()
                # The batch run requeues in much smaller steps.
                monkeypatch.setattr(C, "REQUEUE_BATCH", draw(st.integers(1, 3)))
                try:
                    got_result = batch.requeue()
                finally:
                    monkeypatch.setattr(C, "REQUEUE_BATCH", 500)
                assert got_result == expected_result, step
                event(f"requeue: requeued {bool(got_result.requeued)}, discarded {bool(got_result.discarded)}")
            elif kind == "drop_time_keepers":
                for prefix in ("pa", "pb"):
                    keys = list(r.scan_iter(match=f"{prefix}:*:time"))
                    if keys:
                        r.delete(*keys)
            assert dump_state(r, "pb") == dump_state(r, "pa"), step
    finally:
        single.close()
        batch.close()


# -- 2. interop: batch and single calls on each other's jobs ------------------------------


def test_enqueue_many_then_single_dequeue_and_finish(client: Client, store: Any, clock: FakeClock):
    jobs = [job(f"j{i}", queue_id=f"q{i % 2}", payload={"n": i}) for i in range(10)]
    assert client.enqueue_many(jobs) == EnqueueResult(enqueued=10, duplicates=[])
    got = []
    while (one := client.dequeue()) is not None:
        got.append(one)
    assert sorted(j.job_id for j in got) == [f"j{i}" for i in range(10)]
    for j in got:
        assert j.payload == {"n": int(j.job_id[1:])}
        assert j.queue_id == f"q{int(j.job_id[1:]) % 2}"
        assert j.requeues_remaining == -1
    # FIFO within each queue
    for q in ("q0", "q1"):
        ids = [j.job_id for j in got if j.queue_id == q]
        assert ids == sorted(ids, key=lambda x: int(x[1:]))
    for j in got:
        assert client.finish(j.queue_type, j.queue_id, j.job_id) is True
        assert client.finish(j.queue_type, j.queue_id, j.job_id) is False
    assert store.payloads() == set() and store.active("default") == {}
    forget_gone_intervals(client, clock)
    assert store.intervals() == {}
    assert client.metrics().queue_types == [] and client.metrics("default").queue_ids == []


def test_single_enqueue_then_dequeue_many_and_finish_many(client: Client, store: Any, clock: FakeClock):
    for i in range(10):
        assert client.enqueue(queue_id=f"q{i % 2}", job_id=f"j{i}", payload=[i, "x"], interval=0, requeue_limit=2)
    got = client.dequeue_many(count=100)
    assert [j.job_id for j in got if j.queue_id == "q0"] == ["j0", "j2", "j4", "j6", "j8"]
    assert [j.job_id for j in got if j.queue_id == "q1"] == ["j1", "j3", "j5", "j7", "j9"]
    assert all(j.payload == [int(j.job_id[1:]), "x"] and j.requeues_remaining == 2 for j in got)
    assert client.finish_many(got) == [True] * 10
    assert client.finish_many(got) == [False] * 10
    assert store.payloads() == set() and store.active("default") == {}
    forget_gone_intervals(client, clock)
    assert store.intervals() == {}
    assert store.requeues("default", "q0") == {} and store.requeues("default", "q1") == {}


def test_mixed_single_and_batch_calls(client: Client, store: Any):
    client.enqueue_many([job(f"b{i}") for i in range(3)])
    client.enqueue(queue_id="q1", job_id="s0", payload="s", interval=0)
    client.enqueue_many([job("b3")])
    assert store.queued("default", "q1") == ["b0", "b1", "b2", "s0", "b3"]
    first = client.dequeue()
    rest = client.dequeue_many(count=10)
    assert [first.job_id] + [j.job_id for j in rest] == ["b0", "b1", "b2", "s0", "b3"]
    assert client.finish("default", "q1", "s0") is True
    assert client.finish_many([first, ("default", "q1", "s0"), *rest]) == [True, False, True, True, False, True]
    assert client.finish("default", "q1", "b1") is False
    assert store.payloads() == set() and store.active("default") == {}


# -- 3. edges ---------------------------------------------------------------------------


def test_empty_batches_write_nothing(client: Client, store: Any):
    assert client.enqueue_many([]) == EnqueueResult(enqueued=0, duplicates=[])
    assert client.enqueue_many(iter(())) == EnqueueResult(enqueued=0, duplicates=[])
    assert client.finish_many([]) == []
    assert client.finish_many(iter(())) == []
    assert client.dequeue_many(count=5) == []
    assert store.data_keys() == []


@pytest.mark.parametrize("pipeline_depth", [1, 2, 8])
def test_bad_job_in_middle_of_chunk(client: Client, store: Any, clock: FakeClock, pipeline_depth: int):
    jobs = [job(f"j{i}", queue_id=f"q{i % 3}") for i in range(40)]
    jobs[25]["interval"] = -1
    with pytest.raises(BadArgumentException) as info:
        client.enqueue_many(jobs, chunk_size=10, pipeline_depth=pipeline_depth)
    exc = info.value
    assert exc.index == 25
    assert exc.field == "interval"
    assert exc.enqueued == 20
    assert "25" in str(exc)
    assert store.payloads() == {f"default:q{i % 3}:j{i}" for i in range(20)}
    assert client.metrics().enqueue_counts[minute_of(clock.now)] == 20
    for q in ("q0", "q1", "q2"):
        ids = store.queued("default", q)
        assert ids == [f"j{i}" for i in range(20) if i % 3 == int(q[1])]
        assert set(store.requeues("default", q)) == set(ids)


def test_bad_job_in_first_chunk_writes_nothing(client: Client, store: Any):
    jobs = [job(f"j{i}") for i in range(10)]
    jobs[3]["queue_id"] = "bad id"
    with pytest.raises(BadArgumentException) as info:
        client.enqueue_many(jobs, chunk_size=5)
    assert (info.value.index, info.value.field, info.value.enqueued) == (3, "queue_id", 0)
    assert store.data_keys() == []


def test_bad_job_in_later_pipeline_round(client: Client, store: Any):
    jobs = [job(f"j{i}") for i in range(60)]
    jobs[47]["payload"] = object()
    with pytest.raises(BadArgumentException) as info:
        client.enqueue_many(iter(jobs), chunk_size=5, pipeline_depth=3)
    # rounds of 15 jobs: 0..14, 15..29, 30..44 land; 45..49 is the bad chunk
    assert (info.value.index, info.value.field, info.value.enqueued) == (47, "payload", 45)
    assert store.queued("default", "q1") == [f"j{i}" for i in range(45)]


BAD_FIELDS = [
    ("queue_id", "bad id", "queue_id"),
    ("queue_id", "", "queue_id"),
    ("queue_id", "x" * 101, "queue_id"),
    ("queue_id", 5, "queue_id"),
    ("job_id", "a:b", "job_id"),
    ("job_id", None, "job_id"),
    ("queue_type", "ü", "queue_type"),
    ("interval", -1, "interval"),
    ("interval", True, "interval"),
    ("interval", "5", "interval"),
    ("interval", 1.5, "interval"),
    ("interval", None, "interval"),
    ("requeue_limit", -2, "requeue_limit"),
    ("requeue_limit", True, "requeue_limit"),
    ("requeue_limit", "1", "requeue_limit"),
    ("payload", object(), "payload"),
    ("payload", {1, 2}, "payload"),
    ("payload", {"a": object()}, "payload"),
    ("priority", 1, "priority"),  # not a job field
]


@pytest.mark.parametrize("key,value,field", BAD_FIELDS)
def test_bad_job_fields(client: Client, store: Any, key: str, value: Any, field: str):
    bad = job("bad")
    bad[key] = value
    with pytest.raises(BadArgumentException) as info:
        client.enqueue_many([job("ok0"), job("ok1"), bad, job("ok3")], chunk_size=2)
    assert (info.value.index, info.value.field, info.value.enqueued) == (2, field, 2)
    assert store.queued("default", "q1") == ["ok0", "ok1"]


@pytest.mark.parametrize("missing", ["queue_id", "job_id", "interval", "payload"])
def test_missing_job_field(client: Client, store: Any, missing: str):
    bad = job("bad")
    del bad[missing]
    with pytest.raises(BadArgumentException) as info:
        client.enqueue_many([bad])
    assert (info.value.index, info.value.field) == (0, missing)
    assert store.data_keys() == []


@pytest.mark.parametrize(
    "bad", [["default", "q1", "j1", {}, 0], ("q1", "j1"), "j1", None, 7, Job("default", "q1", "j1", {}, -1)]
)
def test_bad_job_types(client: Client, store: Any, bad: Any):
    with pytest.raises(BadArgumentException) as info:
        client.enqueue_many([job("ok0"), bad])
    assert info.value.index == 1
    assert info.value.enqueued == 0
    assert store.data_keys() == []


def test_job_requests_and_dicts_mixed(client: Client, store: Any):
    jobs = [
        JobRequest(queue_id="q1", job_id="a", payload=1, interval=0),
        job("b", payload=2),
        JobRequest(queue_id="q2", job_id="c", payload=3, interval=7, queue_type="t", requeue_limit=2),
    ]
    assert client.enqueue_many(jobs).enqueued == 3
    assert store.intervals() == {"default:q1": "0", "t:q2": "7"}
    assert store.requeues("t", "q2") == {"c": "2"}
    assert store.requeues("default", "q1") == {"a": "-1", "b": "-1"}


PAYLOADS = [
    b"",
    "",
    {},
    [],
    None,
    0,
    34,  # msgpack b'"': a one-byte payload that looks like a quote
    '""',
    {"nested": [1, 2.5, {"b": b"\x00\xff"}], "s": "ünï"},
    b"x" * (1 << 20),
    "y" * (1 << 20),
    list(range(50000)),
]


def test_payloads_round_trip(client: Client, store: Any):
    jobs = [job(f"j{i}", payload=payload) for i, payload in enumerate(PAYLOADS)]
    assert client.enqueue_many(jobs, chunk_size=3).enqueued == len(PAYLOADS)
    for i, payload in enumerate(PAYLOADS):
        stored = store.payload("default", "q1", f"j{i}")
        assert stored == msgpack.packb(payload, use_bin_type=True)
    got = client.dequeue_many(count=len(PAYLOADS) + 5)
    assert [j.job_id for j in got] == [f"j{i}" for i in range(len(PAYLOADS))]
    for j, payload in zip(got, PAYLOADS):
        assert type(j.payload) is type(payload)
        assert j.payload == payload


def test_tuple_payload_is_a_list(client: Client):
    client.enqueue_many([job("j", payload=(1, (2, 3)))])
    assert client.dequeue_many()[0].payload == [1, [2, 3]]


def test_100k_jobs_from_a_generator(client: Client, r: redis.Redis, clock: FakeClock):
    total, queues = 100_000, 7
    window = C.DEFAULT_CHUNK_SIZE * C.DEFAULT_PIPELINE_DEPTH

    def jobs():
        for i in range(total):
            if i % 10_000 == 0:
                # The generator is read one round trip ahead, no more: bounded memory.
                assert r.hlen(f"{P}:payload") >= i - window
            yield {"queue_id": f"q{i % queues}", "job_id": f"j{i}", "payload": i, "interval": 0}

    assert client.enqueue_many(jobs()) == EnqueueResult(enqueued=total, duplicates=[])
    lengths = queue_lengths(r, P, "default", [f"q{k}" for k in range(queues)])
    assert sum(lengths.values()) == total
    assert lengths == {f"q{k}": len(range(k, total, queues)) for k in range(queues)}
    assert r.hlen(f"{P}:payload") == total
    minute = minute_of(clock.now)
    assert int(r.get(f"{P}:enqueue_counter:{minute}")) == total
    assert {q: int(r.get(f"{P}:default:{q}:enqueue_counter:{minute}")) for q in lengths} == lengths
    assert r.lrange(f"{P}:default:q3", 0, 2) == [b"j3", b"j10", b"j17"]
    assert r.lindex(f"{P}:default:q3", -1) == f"j{max(range(3, total, queues))}".encode()


def test_duplicate_ids_inside_one_batch(client: Client, store: Any, clock: FakeClock):
    result = client.enqueue_many(
        [
            job("a", payload="first"),
            job("b"),
            job("a", payload="second"),
            job("a", queue_id="q2", payload="other queue"),  # not a duplicate
            job("a", payload="third", interval=999),
        ]
    )
    assert result == EnqueueResult(enqueued=3, duplicates=[2, 4])
    assert store.queued("default", "q1") == ["a", "b"]
    assert store.intervals()["default:q1"] == "0"  # the refused job changed nothing
    assert client.metrics("default", "q1").enqueue_counts[minute_of(clock.now)] == 2
    assert client.metrics().enqueue_counts[minute_of(clock.now)] == 3
    assert sorted(j.payload for j in client.dequeue_many(count=5) if j.job_id == "a") == ["first", "other queue"]


def test_duplicates_across_chunks_and_against_queued_and_active_jobs(client: Client, store: Any):
    client.enqueue_many([job("active"), job("queued")])
    assert client.dequeue_many(count=1)[0].job_id == "active"
    result = client.enqueue_many(
        [job("new0"), job("queued"), job("new1"), job("active"), job("new0"), job("new2")], chunk_size=2
    )
    assert result == EnqueueResult(enqueued=3, duplicates=[1, 3, 4])
    assert store.queued("default", "q1") == ["queued", "new0", "new1", "new2"]
    # once finished, the id is free again
    assert client.finish_many([("default", "q1", "active")]) == [True]
    assert client.enqueue_many([job("active")]).duplicates == []


def test_dequeue_many_beyond_one_script_call(client: Client, store: Any, clock: FakeClock):
    n = 2 * C.MAX_DEQUEUE_PER_CALL + 200
    client.enqueue_many([job(f"j{i}") for i in range(n)])
    got = client.dequeue_many(count=n - 100)
    assert [j.job_id for j in got] == [f"j{i}" for i in range(n - 100)]
    assert store.active("default") == {f"q1:j{i}": float(clock.now + EXPIRE) for i in range(n - 100)}
    rest = client.dequeue_many(count=5000)
    assert [j.job_id for j in rest] == [f"j{i}" for i in range(n - 100, n)]
    assert client.dequeue_many(count=5000) == []
    assert store.queued("default", "q1") == [] and client.metrics("default").queue_ids == ["q1"]  # active
    assert client.metrics().dequeue_counts[minute_of(clock.now)] == n


def test_dequeue_many_with_intervals(client: Client, r: redis.Redis, clock: FakeClock):
    t0 = clock.now
    for queue_id in ("qc", "qa", "qb"):  # ready times t0, t0+10, t0+20
        client.enqueue_many([job(f"{queue_id}{i}", queue_id=queue_id, interval=1000) for i in range(3)])
        clock.advance(10)
    client.enqueue_many([job("late", queue_id="qd", interval=1000)])
    r.zadd(f"{P}:default", {"qd": t0 + 10_000})  # not ready yet
    clock.advance(10)
    got = client.dequeue_many(count=10)
    assert [(j.queue_id, j.job_id) for j in got] == [("qc", "qc0"), ("qa", "qa0"), ("qb", "qb0")]
    assert client.dequeue_many(count=10) == []
    clock.advance(999)
    assert client.dequeue_many(count=10) == []
    clock.advance(1)
    # all three ready at the same time now: ties in queue_id order
    got = client.dequeue_many(count=2)
    assert [(j.queue_id, j.job_id) for j in got] == [("qa", "qa1"), ("qb", "qb1")]
    got = client.dequeue_many(count=2)
    assert [(j.queue_id, j.job_id) for j in got] == [("qc", "qc1")]


def test_dequeue_many_mixes_interval_zero_and_rate_limited_queues(client: Client, clock: FakeClock):
    client.enqueue_many([job(f"s{i}", queue_id="slow", interval=500) for i in range(3)])
    clock.advance(1)
    client.enqueue_many([job(f"f{i}", queue_id="fast", interval=0) for i in range(3)])
    got = client.dequeue_many(count=10)
    assert [j.job_id for j in got] == ["s0", "f0", "f1", "f2"]


def test_finish_many_jobs_and_tuples(client: Client, store: Any):
    client.enqueue_many([job(f"j{i}", queue_id=f"q{i % 2}") for i in range(5)])
    got = client.dequeue_many(count=5)
    by_id = {j.job_id: j for j in got}
    flags = client.finish_many(
        [
            by_id["j0"],
            ("default", "q1", "j1"),
            ("default", "nope", "x"),
            by_id["j0"],  # finished already
            ("other", "q0", "j2"),  # wrong queue type
            ("default", "q1", "j2"),  # wrong queue id
            by_id["j2"],
            ("default", "q1", "j3"),
        ],
        chunk_size=3,
    )
    assert flags == [True, True, False, False, False, False, True, True]
    assert list(store.active("default")) == ["q0:j4"]
    assert store.payloads() == {"default:q0:j4"}
    assert client.metrics().queue_types == ["default"]
    assert client.finish_many([by_id["j4"]]) == [True]
    assert client.metrics().queue_types == []


@pytest.mark.parametrize(
    "bad,field",
    [
        (("default", "bad id", "x"), "queue_id"),
        (("default", "q1", ""), "job_id"),
        (("", "q1", "j1"), "queue_type"),
        (("default", "q1"), None),
        (["default", "q1", "j1"], None),
        ("j1", None),
        (None, None),
    ],
)
@pytest.mark.parametrize("chunk_size", [1, 500])
def test_finish_many_invalid_finishes_nothing(client: Client, store: Any, bad: Any, field, chunk_size: int):
    client.enqueue_many([job(f"j{i}") for i in range(4)])
    got = client.dequeue_many(count=4)
    before = store.snapshot()
    with pytest.raises(BadArgumentException) as info:
        client.finish_many([got[0], got[1], got[2], bad, got[3]], chunk_size=chunk_size)
    assert info.value.index == 3
    assert info.value.field == field
    assert store.snapshot() == before


@pytest.mark.parametrize("count", [0, -1, True, 1.5, "3", None])
def test_dequeue_many_bad_count(client: Client, store: Any, count: Any):
    client.enqueue_many([job("j")])
    with pytest.raises(BadArgumentException) as info:
        client.dequeue_many(count=count)
    assert info.value.field == "count"
    assert store.queued("default", "q1") == ["j"]


def test_dequeue_many_bad_queue_type(client: Client):
    with pytest.raises(BadArgumentException):
        client.dequeue_many("bad type", count=1)


@pytest.mark.parametrize("chunk_size", [0, -1, C.MAX_CHUNK_SIZE + 1, True, 1.5, "10", None])
def test_chunk_size_out_of_range(client: Client, store: Any, chunk_size: Any):
    with pytest.raises(BadArgumentException) as info:
        client.enqueue_many([job("j")], chunk_size=chunk_size)
    assert info.value.field == "chunk_size"
    with pytest.raises(BadArgumentException) as info:
        client.finish_many([("default", "q1", "j")], chunk_size=chunk_size)
    assert info.value.field == "chunk_size"
    assert store.data_keys() == []


@pytest.mark.parametrize("depth", [0, -1, True, None])
def test_pipeline_depth_out_of_range(client: Client, store: Any, depth: Any):
    with pytest.raises(BadArgumentException) as info:
        client.enqueue_many([job("j")], pipeline_depth=depth)
    assert info.value.field == "pipeline_depth"
    assert store.data_keys() == []


def test_chunk_size_limits_are_accepted(client: Client, store: Any):
    jobs = [job(f"j{i}") for i in range(C.MAX_CHUNK_SIZE + 3)]
    assert client.enqueue_many(jobs, chunk_size=C.MAX_CHUNK_SIZE).enqueued == len(jobs)
    assert client.enqueue_many([job("x")], chunk_size=1).enqueued == 1
    assert len(store.queued("default", "q1")) == len(jobs) + 1


def test_requeue_20000_expired_jobs_in_bounded_steps(client: Client, r: redis.Redis, clock: FakeClock):
    n, queues = 20_000, 4
    client.enqueue_many(
        {"queue_id": f"q{i % queues}", "job_id": f"j{i}", "payload": i, "interval": 0} for i in range(n)
    )
    assert len(client.dequeue_many(count=n // 2)) + len(client.dequeue_many(count=n // 2)) == n
    assert r.zcard(f"{P}:default:active") == n
    assert not r.exists(f"{P}:default")

    clock.advance(EXPIRE - 1)
    assert client.requeue() == RequeueResult(requeued=0, discarded=[])
    clock.advance(1)
    r.config_resetstat()
    result = client.requeue()
    assert result.requeued == n
    assert result.discarded == []
    # One script call a step of REQUEUE_BATCH jobs (LIMIT in requeue.lua), and a last one
    # that finds none left.
    assert r.info("commandstats")["cmdstat_evalsha"]["calls"] == n // C.REQUEUE_BATCH + 1
    assert not r.exists(f"{P}:default:active")
    assert r.smembers(f"{P}:active:queue_type") == set()
    assert r.smembers(f"{P}:ready:queue_type") == {b"default"}
    assert set(r.zrange(f"{P}:default", 0, -1)) == {f"q{k}".encode() for k in range(queues)}
    for k in range(queues):
        ids = r.lrange(f"{P}:default:q{k}", 0, -1)
        assert sorted(ids) == sorted(f"j{i}".encode() for i in range(k, n, queues))
    # all can be dequeued and finished again
    again = client.dequeue_many(count=n // 2) + client.dequeue_many(count=n // 2)
    assert client.dequeue_many(count=10) == []
    assert len(again) == n
    assert client.finish_many(again) == [True] * n
    assert r.hlen(f"{P}:payload") == 0


def test_requeue_limits_discard_with_payloads(client: Client, store: Any, clock: FakeClock):
    client.enqueue_many(
        [
            job("zero", payload={"p": 0}, requeue_limit=0),
            job("one", payload=b"\x01", requeue_limit=1),
            job("free", payload="free"),  # -1: unlimited
            job("other", queue_id="q2", payload=[2], requeue_limit=0, queue_type="t2"),
        ]
    )
    first = client.dequeue_many(count=10) + client.dequeue_many("t2", count=10)
    assert {j.job_id: j.requeues_remaining for j in first} == {"zero": 0, "one": 1, "free": -1, "other": 0}
    clock.advance(EXPIRE)
    result = client.requeue()
    assert result.requeued == 2
    assert result.discarded == [
        Job("default", "q1", "zero", {"p": 0}, -1),
        Job("t2", "q2", "other", [2], -1),
    ]
    assert store.payloads() == {"default:q1:one", "default:q1:free"}
    assert store.requeues("default", "q1") == {"one": "0", "free": "-1"}
    assert store.requeues("t2", "q2") == {} and store.active("t2") == {} and store.queued("t2", "q2") == []
    assert list(store.intervals()) == ["default:q1"]
    assert client.metrics().queue_types == ["default"]  # its queue is ready again; none active
    assert client.finish_many([first[0], first[3]]) == [False, False]

    second = client.dequeue_many(count=10)
    assert {j.job_id: j.requeues_remaining for j in second} == {"one": 0, "free": -1}
    clock.advance(EXPIRE)
    result = client.requeue()
    assert result == RequeueResult(requeued=1, discarded=[Job("default", "q1", "one", b"\x01", -1)])
    assert store.payloads() == {"default:q1:free"}
    assert store.requeues("default", "q1") == {"free": "-1"}
    third = client.dequeue_many(count=10)
    assert [(j.job_id, j.payload, j.requeues_remaining) for j in third] == [("free", "free", -1)]
    assert client.finish_many(third) == [True]
    forget_gone_intervals(client, clock)
    # nothing is left but counters and time keepers
    leftovers = {k.decode() for k in store.data_keys()}
    assert all("_counter:" in k or "counters:" in k or k.endswith(":time") or k.endswith(".types") for k in leftovers), leftovers


def test_requeue_puts_jobs_back_at_the_front(client: Client, store: Any, clock: FakeClock):
    client.enqueue_many([job(f"j{i}", interval=0) for i in range(5)])
    got = client.dequeue_many(count=2)
    assert [j.job_id for j in got] == ["j0", "j1"]
    clock.advance(EXPIRE)
    assert client.requeue().requeued == 2
    # as SharQ: expired jobs in active-set order (q1:j0, q1:j1), each LPUSHed to the front
    assert store.queued("default", "q1") == ["j1", "j0", "j2", "j3", "j4"]


# -- 4. counters ------------------------------------------------------------------------


def test_enqueue_many_counters(client: Client, r: redis.Redis, clock: FakeClock):
    clock.now = current_minute() + 1000
    counts = {("default", "q1"): 10, ("default", "q2"): 15, ("t2", "q1"): 25}
    jobs = []
    for (queue_type, queue_id), count in counts.items():
        jobs += [job(f"j{i}", queue_id=queue_id, queue_type=queue_type) for i in range(count)]
    jobs.append(job("j0"))  # duplicate: not counted
    assert client.enqueue_many(jobs[::-1], chunk_size=7).enqueued == 50
    minute = minute_of(clock.now)
    expiry = counter_expiry(clock.now)
    key = f"{P}:enqueue_counter:{minute}"
    assert r.get(key) == b"50"
    assert r.expiretime(key) == expiry
    assert r.ttl(key) > 0
    for (queue_type, queue_id), count in counts.items():
        key = f"{P}:{queue_type}:{queue_id}:enqueue_counter:{minute}"
        assert r.get(key) == str(count).encode()
        assert r.expiretime(key) == expiry
    # more in the same minute: INCR, the expiry stays
    clock.advance(59_000 - clock.now % 60_000)  # late in the same minute
    assert minute_of(clock.now) == minute
    assert client.enqueue_many([job("k1"), job("k2")]).enqueued == 2
    assert r.get(f"{P}:enqueue_counter:{minute}") == b"52"
    assert r.get(f"{P}:default:q1:enqueue_counter:{minute}") == b"12"
    assert r.expiretime(f"{P}:enqueue_counter:{minute}") == expiry
    # next minute: new keys
    clock.advance(60_000)
    client.enqueue_many([job("k3")])
    nxt = minute_of(clock.now)
    assert nxt == minute + 60_000
    assert r.get(f"{P}:enqueue_counter:{nxt}") == b"1"
    assert r.expiretime(f"{P}:enqueue_counter:{nxt}") == counter_expiry(clock.now)
    assert r.get(f"{P}:enqueue_counter:{minute}") == b"52"
    metrics = client.metrics()
    assert metrics.enqueue_counts[nxt] == 1 and metrics.enqueue_counts[minute] == 52


def test_dequeue_many_counters(client: Client, r: redis.Redis, clock: FakeClock):
    clock.now = current_minute() + 1000
    client.enqueue_many(
        [job(f"a{i}", queue_id="qa") for i in range(7)]
        + [job(f"b{i}", queue_id="qb", interval=100) for i in range(3)]
        + [job(f"c{i}", queue_id="qc") for i in range(2)]
    )
    got = client.dequeue_many(count=20)
    assert len(got) == 7 + 1 + 2
    minute = minute_of(clock.now)
    expiry = counter_expiry(clock.now)
    expected = {"qa": 7, "qb": 1, "qc": 2}
    assert r.get(f"{P}:dequeue_counter:{minute}") == b"10"
    assert r.expiretime(f"{P}:dequeue_counter:{minute}") == expiry
    for queue_id, count in expected.items():
        key = f"{P}:default:{queue_id}:dequeue_counter:{minute}"
        assert r.get(key) == str(count).encode()
        assert r.expiretime(key) == expiry
    clock.advance(100)
    assert len(client.dequeue_many(count=20)) == 1
    assert r.get(f"{P}:dequeue_counter:{minute}") == b"11"
    assert r.get(f"{P}:default:qb:dequeue_counter:{minute}") == b"2"
    assert r.expiretime(f"{P}:default:qb:dequeue_counter:{minute}") == expiry
    # an empty dequeue writes no counter
    assert client.dequeue_many("nothing", count=5) == []
    assert not r.exists(f"{P}:nothing:qa:dequeue_counter:{minute}")
    assert client.metrics("default", "qa").dequeue_counts[minute] == 7


# -- Redis refusing a chunk --------------------------------------------------------------


def test_batch_error_counts_the_chunks_that_landed(client: Client, r: redis.Redis):
    r.set(f"{P}:default:broken", "not a list")  # RPUSH to it fails with WRONGTYPE
    jobs = [job("a0"), job("a1"), job("b0", queue_id="broken"), job("b1", queue_id="broken"), job("a2"), job("a3")]
    with pytest.raises(BatchError) as info:
        client.enqueue_many(jobs, chunk_size=2)
    assert info.value.done == info.value.enqueued == 4
    assert r.lrange(f"{P}:default:q1", 0, -1) == [b"a0", b"a1", b"a2", b"a3"]


def test_a_refused_chunk_writes_nothing(client: Client, r: redis.Redis):
    """A chunk that Redis refuses half way (here: its job list key holds a string) must not
    leave the payloads of its jobs behind: they would make every later enqueue of those
    job ids a "duplicate", and nothing would ever delete them."""
    r.set(f"{P}:default:broken", "not a list")
    jobs = [job("a0"), job("b0", queue_id="broken"), job("b1", queue_id="broken")]
    with pytest.raises(BatchError) as info:
        client.enqueue_many(jobs, chunk_size=1)
    assert info.value.done == 1
    assert r.hkeys(f"{P}:payload") == [b"default:q1:a0"]
    assert not r.exists(f"{P}:default:broken:requeues_remaining")
    r.delete(f"{P}:default:broken")
    assert client.enqueue_many(jobs[1:]) == EnqueueResult(enqueued=2, duplicates=[])
    assert r.lrange(f"{P}:default:broken", 0, -1) == [b"b0", b"b1"]


def test_queue_id_active_does_not_poison_its_queue_type(client: Client, r: redis.Redis):
    """`P:T:active` is both the active set of queue type T and the job list of queue id
    "active" (SharQ's layout). Either refuse that queue id up front, or deliver its jobs:
    a dequeue must not pop a job and then fail on ZADD to a list, which loses the job and
    makes every later dequeue of the queue type fail."""
    try:
        client.enqueue_many([job(f"x{i}", queue_id="active") for i in range(3)])
    except BadArgumentException:
        pass  # refusing the reserved name is a fine answer
    client.enqueue_many([job("ok", queue_id="q1")])
    got: List[str] = []
    for _ in range(4):
        got += [j.job_id for j in client.dequeue_many(count=1)]
    assert "ok" in got
    assert set(got) in ({"ok"}, {"x0", "x1", "x2", "ok"})


def test_dict_subclasses_are_jobs_too(client: Client):
    from collections import OrderedDict

    result = client.enqueue_many([OrderedDict(queue_id="q1", job_id="o1", payload=1, interval=0)])
    assert result.enqueued == 1 and client.dequeue().job_id == "o1"


def test_dequeue_many_error_keeps_the_jobs_it_took(client: Client, r: redis.Redis):
    """A later script call failing must not drop the jobs earlier calls took."""
    client.enqueue_many([job(f"j{i}", interval=0) for i in range(3)])
    client.enqueue_many([job(f"k{i}", queue_id="q2", interval=0) for i in range(2)])
    r.set(f"{P}:default:q2:requeues_remaining", "x")  # not SharQ's data
    taken = client.dequeue_many(count=10)  # stops before the broken queue
    assert [j.job_id for j in taken] == ["j0", "j1", "j2"]
    with pytest.raises(BatchError, match="WRONGTYPE") as info:
        client.dequeue_many(count=2)
    assert info.value.jobs == []
    r.delete(f"{P}:default:q2:requeues_remaining")
    assert [j.job_id for j in client.dequeue_many(count=5)] == ["k0", "k1"]


def test_job_source_may_use_the_same_client(client: Client, transport: str):
    """enqueue_many overlaps packing a round with Redis running the previous one, but the
    job iterable is only drawn from while no reply is pending: it may call the client (an
    AsyncClient's from an async generator: a sync one would block the loop it runs in)."""
    client.enqueue_many([job(f"s{i}", queue_id="src", interval=0) for i in range(250)], chunk_size=7)

    def moved_job(taken: Job) -> Dict[str, Any]:
        return {"queue_type": "moved", "queue_id": "dst", "job_id": taken.job_id, "payload": taken.payload, "interval": 0}

    def moved():
        while True:
            taken = client.dequeue()
            if taken is None:
                return
            client.finish(taken.queue_type, taken.queue_id, taken.job_id)
            yield moved_job(taken)

    async def moved_async():
        while True:
            taken = await client._client.dequeue()
            if taken is None:
                return
            await client._client.finish(taken.queue_type, taken.queue_id, taken.job_id)
            yield moved_job(taken)

    source = moved_async() if transport.endswith("async") else moved()
    result = client.enqueue_many(source, chunk_size=7, pipeline_depth=3)
    assert result.enqueued == 250
    assert [j.job_id for j in client.dequeue_many("moved", count=300)] == [f"s{i}" for i in range(250)]
