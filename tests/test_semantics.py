"""SharQ semantics with an injected clock: rate limits, requeue limits, metrics windows,
bad input, duplicates, orphans, foreign payloads, NOSCRIPT recovery."""

import datetime
import decimal

import msgpack
import pytest
import redis

from redis_state import raw_snapshot
from sharq_fast import BadArgumentException, Client, UndecodablePayload

P = "sharq_server"


def enqueue(client, job_id, queue_id="q1", interval=1000, **kw):
    return client.enqueue(queue_id=queue_id, job_id=job_id, payload={"id": job_id}, interval=interval, **kw)


def test_rate_limit_keeps_dequeues_of_one_queue_interval_apart(client, clock):
    for i in range(5):
        enqueue(client, f"j{i}", interval=250)
    times = []
    start = clock.now
    while len(times) < 5:
        job = client.dequeue()
        if job is not None:
            times.append(clock.now)
            assert job.job_id == f"j{len(times) - 1}"  # FIFO
        clock.advance(10)
    assert all(b - a >= 250 for a, b in zip(times, times[1:]))
    assert times[-1] - start < 5 * 250 + 50  # and not much slower than the limit


def test_ready_queues_are_served_in_order_of_ready_time(client, clock):
    enqueue(client, "a1", queue_id="qa")
    clock.advance(1)
    enqueue(client, "b1", queue_id="qb")
    assert client.dequeue().queue_id == "qa"
    assert client.dequeue().queue_id == "qb"
    assert client.dequeue() is None


def test_interval_zero_gives_all_jobs_at_once(client):
    for i in range(3):
        enqueue(client, f"j{i}", interval=0)
    assert [client.dequeue().job_id for _ in range(3)] == ["j0", "j1", "j2"]
    assert client.dequeue() is None


def test_interval_change_applies_to_next_dequeue(client, clock):
    for i in range(3):
        enqueue(client, f"j{i}", interval=10000)
    client.dequeue()
    assert client.interval("default", "q1", 100)
    # The current ready time was fixed at the last dequeue; the new interval counts from the next.
    clock.advance(10000)
    assert client.dequeue().job_id == "j1"
    clock.advance(100)
    assert client.dequeue().job_id == "j2"


def expire_and_requeue(client, clock):
    clock.advance(client.job_expire_interval + 1)
    return client.requeue()


def dequeue_times(client, clock, count, step=10):
    """Dequeue `count` jobs of type default, moving the clock `step` ms between tries:
    (clock time, job id) of each."""
    got = []
    for _ in range(100_000):
        if len(got) == count:
            return got
        for job in client.dequeue_many(count=10):
            got.append((clock.now, job.job_id))
        clock.advance(step)
    raise AssertionError(f"only {got} dequeued")


@pytest.mark.parametrize("back_by", ["expiry", "release", "fail"])
def test_held_jobs_of_an_emptied_queue_keep_its_interval(client, clock, store, back_by):
    """Found by the soak test (sharq 1.3.0 does it too): the finish of a queue's last queued
    job deleted its interval while other jobs of it were still held; put back (lease run
    out, release, fail), they went out together, closer than the interval."""
    for i in range(3):
        enqueue(client, f"j{i}", interval=500)
    held = []
    for _ in range(2):
        held.append(client.dequeue())
        clock.advance(500)
    last = client.dequeue()
    assert [job.job_id for job in held] + [last.job_id] == ["j0", "j1", "j2"]
    assert client.finish(last.queue_type, last.queue_id, last.job_id) is True
    # No job is queued, two are held: the interval stays.
    assert store.intervals() == {"default:q1": "500"}
    if back_by == "expiry":
        clock.advance(client.job_expire_interval)
        assert client.requeue().requeued == 2
    elif back_by == "release":
        assert client.release_many(held) == [True, True]
    else:
        assert [outcome.value for outcome in client.fail_many(held)] == ["retried", "retried"]
    assert store.intervals() == {"default:q1": "500"}
    times = dequeue_times(client, clock, 2)
    assert sorted(job_id for _, job_id in times) == ["j0", "j1"]  # (requeue: oldest lease first at the front)
    for i in range(3, 6):
        enqueue(client, f"j{i}", interval=500)
    times += dequeue_times(client, clock, 3)
    assert [job_id for _, job_id in times[2:]] == ["j3", "j4", "j5"]
    gaps = [b - a for (a, _), (b, _) in zip(times, times[1:])]
    assert all(gap >= 500 for gap in gaps), gaps


def test_an_emptied_queue_forgets_its_interval_once_no_job_can_be_held(client, clock, store):
    """The interval of a queue left without jobs is not kept forever either: a requeue pass
    forgets it once the queue's time keeper + job_expire_interval has passed, unless the
    queue has jobs again by then."""
    expire = client.job_expire_interval
    enqueue(client, "a1", queue_id="qa", interval=500)
    enqueue(client, "b1", queue_id="qb", interval=700)
    jobs = client.dequeue_many(count=10)
    assert client.finish_many(jobs) == [True, True]
    assert store.intervals() == {"default:qa": "500", "default:qb": "700"}
    clock.advance(expire - 1)
    client.requeue()
    assert store.intervals() == {"default:qa": "500", "default:qb": "700"}  # not due yet
    enqueue(client, "b2", queue_id="qb", interval=700)
    clock.advance(1)
    client.requeue()
    assert store.intervals() == {"default:qb": "700"}  # qb has a job again: kept
    (job,) = client.dequeue_many(count=10)
    assert job.job_id == "b2" and client.finish(job.queue_type, job.queue_id, job.job_id)
    clock.advance(expire - 1)
    client.requeue()
    assert store.intervals() == {"default:qb": "700"}
    clock.advance(1)
    client.requeue()
    assert store.intervals() == {}


@pytest.mark.parametrize("limit", [5, 0, -1])
def test_requeue_limits(client, clock, store, limit):
    enqueue(client, "j1", interval=0, requeue_limit=limit)
    deliveries = 0
    for _ in range(8):
        job = client.dequeue()
        if job is None:
            break
        deliveries += 1
        assert job.requeues_remaining == (limit - deliveries + 1 if limit >= 0 else -1)
        result = expire_and_requeue(client, clock)
        if limit >= 0 and deliveries == limit + 1:
            assert result.requeued == 0
            assert [(j.job_id, j.payload) for j in result.discarded] == [("j1", {"id": "j1"})]
        else:
            assert result.requeued == 1 and not result.discarded
    if limit == -1:
        assert deliveries == 8
    else:
        assert deliveries == limit + 1
        assert client.dequeue() is None
        # Discarded: nothing of the job is left.
        assert store.payloads() == set() and store.active("default") == {}
        assert store.requeues("default", "q1") == {}


def test_finished_job_is_not_requeued(client, clock):
    enqueue(client, "j1", interval=0)
    job = client.dequeue()
    assert client.finish(job.queue_type, job.queue_id, job.job_id)
    assert expire_and_requeue(client, clock).requeued == 0
    assert client.dequeue() is None


def test_job_expired_and_requeued_cannot_be_finished_by_late_worker(client, clock):
    enqueue(client, "j1", interval=0)
    client.dequeue()
    expire_and_requeue(client, clock)
    assert client.finish("default", "q1", "j1") is False
    assert client.dequeue().job_id == "j1"


def test_metrics_windows_newest_first_with_zeros(client, clock):
    enqueue(client, "j1", interval=0)
    first_minute = clock.now // 60000 * 60000
    clock.advance(60000 * 2)
    enqueue(client, "j2", interval=0)
    client.dequeue()
    newest = clock.now // 60000 * 60000
    m = client.metrics()
    assert m.queue_types == ["default"]
    assert list(m.enqueue_counts) == [newest - i * 60000 for i in range(10)]
    assert m.enqueue_counts[newest] == 1 and m.enqueue_counts[first_minute] == 1
    assert sum(m.enqueue_counts.values()) == 2
    assert m.dequeue_counts[newest] == 1 and sum(m.dequeue_counts.values()) == 1
    assert client.metrics("default").queue_ids == ["q1"]
    q = client.metrics("default", "q1")
    assert q.queue_length == 1 and q.enqueue_counts[first_minute] == 1 and q.dequeue_counts[newest] == 1
    clock.advance(60000 * 10)
    assert sum(client.metrics().enqueue_counts.values()) == 0  # out of the window


def test_metrics_queue_ids_include_active_only_queues(client):
    enqueue(client, "j1", queue_id="qa", interval=0)
    enqueue(client, "j2", queue_id="qb", interval=0)
    client.dequeue()  # qa has no more queued jobs, but one active
    assert client.metrics("default").queue_ids == ["qa", "qb"]


def test_metrics_queue_id_without_queue_type_is_bad(client):
    with pytest.raises(BadArgumentException, match="`queue_id` should be accompanied by `queue_type`"):
        client.metrics(queue_id="q1")


BAD_ENQUEUES = [
    ("queue_id", "bad id"),
    ("queue_id", ""),
    ("queue_id", "x" * 101),
    ("queue_id", None),
    ("queue_id", "k\u212a"),  # KELVIN SIGN lowercases to ASCII k: sharq 1.3.0 let it through
    ("job_id", "a:b"),
    ("job_id", 7),
    ("queue_type", "t!"),
    ("interval", -1),
    ("interval", True),
    ("interval", 1.5),
    ("interval", "100"),
    ("requeue_limit", -2),
    ("requeue_limit", False),
    ("queue_id", "active"),  # its job list would be the queue type's active set
    ("queue_type", "payload"),  # its ready set would be the payload hash
    ("queue_type", "enqueue_counter"),
    ("payload", datetime.date(2024, 1, 1)),
    ("payload", {1, 2}),
    ("payload", {"x": decimal.Decimal(1)}),
    ("payload", 2**64),
    ("payload", object()),
]


@pytest.mark.parametrize("field,value", BAD_ENQUEUES)
def test_bad_input_raises_and_changes_nothing(client, store, field, value):
    enqueue(client, "existing")
    before = store.snapshot()
    args = dict(queue_id="q1", job_id="j1", payload={"ok": 1}, interval=1000, queue_type="default")
    args[field] = value
    with pytest.raises(BadArgumentException, match=f"`{field}`") as info:
        client.enqueue(**args)
    assert info.value.field == field
    assert store.snapshot() == before


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.dequeue("bad type"),
        lambda c: c.finish("default", "q1", "bad id"),
        lambda c: c.interval("default", "q1", -5),
        lambda c: c.clear_queue("default", "", purge_all=True),
        lambda c: c.queue_length("default", None),
        lambda c: c.metrics("bad type"),
    ],
)
def test_bad_identifiers_elsewhere_change_nothing(client, store, call):
    enqueue(client, "existing")
    before = store.snapshot()
    with pytest.raises(BadArgumentException, match="has an invalid value"):
        call(client)
    assert store.snapshot() == before


def test_reserved_queue_id_of_ready_type_is_refused(client, store):
    with pytest.raises(BadArgumentException, match="reserved"):
        client.enqueue(queue_type="ready", queue_id="queue_type", job_id="j", payload=1, interval=0)
    assert store.data_keys() == []
    assert client.enqueue(queue_type="ready", queue_id="q", job_id="j", payload=1, interval=0)


def test_foreign_key_of_another_type_refuses_enqueue_and_writes_nothing(client, r):
    r.set(f"{P}:default:q1", "not a list")  # not SharQ's data
    before = raw_snapshot(r)
    with pytest.raises(redis.ResponseError, match="WRONGTYPE .*nothing was changed"):
        enqueue(client, "j1")
    assert raw_snapshot(r) == before


def test_duplicate_job_id_is_refused_and_keeps_first_job(client, store, clock):
    assert enqueue(client, "j1", requeue_limit=3) is True
    before = store.snapshot()
    assert client.enqueue(queue_id="q1", job_id="j1", payload="second", interval=5, requeue_limit=0) is False
    assert store.snapshot() == before
    job = client.dequeue()
    assert job.payload == {"id": "j1"} and job.requeues_remaining == 3
    # Still refused while the job is active...
    assert enqueue(client, "j1") is False
    # ...and accepted again once it is finished.
    client.finish("default", "q1", "j1")
    assert enqueue(client, "j1") is True
    # The same job_id in another queue is another job.
    assert enqueue(client, "j1", queue_id="q2") is True


def test_orphan_job_id_without_payload_is_dropped_not_stuck(client, store):
    enqueue(client, "j1", interval=0)
    enqueue(client, "j2", interval=0)
    store.delete_payload("default", "q1", "j1")  # e.g. a purge race, or an old client's duplicate
    job = client.dequeue()
    assert job.job_id == "j2"
    assert list(store.active("default")) == ["q1:j2"]
    assert client.dequeue() is None
    assert store.queued("default", "q1") == [] and client.metrics("default").queue_ids == ["q1"]  # active only


def test_orphan_only_queue_answers_none_and_is_removed(client, store):
    enqueue(client, "j1", interval=0)
    store.delete_payload("default", "q1", "j1")
    assert client.dequeue() is None
    assert store.queued("default", "q1") == [] and store.active("default") == {}
    assert client.metrics().queue_types == [] and client.metrics("default").queue_ids == []


@pytest.mark.parametrize(
    "stored,expected",
    [
        (b'"' + msgpack.packb({"to": "1234"}, use_bin_type=True) + b'"', {"to": "1234"}),
        (b'"' + msgpack.packb("hi", use_bin_type=True) + b'"', "hi"),
        (msgpack.packb(34), 34),  # one 0x22 byte: an int, not a wrapper
        (msgpack.packb([1, b"\x00", None]), [1, b"\x00", None]),
    ],
)
def test_payloads_of_other_writers_decode(client, store, stored, expected):
    enqueue(client, "j1")
    store.set_payload("default", "q1", "j1", stored)
    assert client.dequeue().payload == expected


def test_undecodable_payload_is_delivered_as_bytes(client, store):
    enqueue(client, "j1")
    store.set_payload("default", "q1", "j1", b"\xc1garbage")
    job = client.dequeue()
    assert isinstance(job.payload, UndecodablePayload) and job.payload == b"\xc1garbage"
    assert client.finish("default", "q1", "j1")


@pytest.mark.parametrize(
    "payload",
    [None, True, 0, -1, 2**63, -(2**63), 1.25, "", "text \u20ac", b"", b"\x00bin", [], {}, [1, [2, {"a": b"x"}]], (1, 2)],
)
def test_payload_round_trip_matches_msgpack_python(client, store, payload):
    client.enqueue(queue_id="q1", job_id="j1", payload=payload, interval=0)
    assert store.payload("default", "q1", "j1") == msgpack.packb(payload, use_bin_type=True)
    expected = list(payload) if isinstance(payload, tuple) else payload
    assert client.dequeue().payload == expected


def test_scripts_reload_after_script_flush(client, store):
    enqueue(client, "j1", interval=0)
    store.script_flush()
    enqueue(client, "j2", interval=0)
    store.script_flush()
    assert [j.job_id for j in client.dequeue_many(count=5)] == ["j1", "j2"]
    store.script_flush()
    assert client.finish("default", "q1", "j1")


def test_client_recovers_after_connection_is_killed(client, store):
    enqueue(client, "j1", interval=0)
    store.kill_clients()
    assert client.dequeue().job_id == "j1"


def test_client_accepts_redis_instance_with_decoded_responses(redis_server_url, r, clock):
    import redis as redis_py

    conn = redis_py.Redis.from_url(redis_server_url, decode_responses=True)
    with Client(conn, clock=clock) as c:
        c.enqueue(queue_id="q", job_id="j", payload=b"\xff", interval=0)
        assert c.dequeue().payload == b"\xff"
    conn.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"job_expire_interval": 0},
        {"job_requeue_interval": -1},
        {"default_job_requeue_limit": -3},
        {"key_prefix": ""},
    ],
)
def test_bad_settings_raise(redis_server_url, kwargs):
    with pytest.raises(BadArgumentException):
        Client(redis_server_url, **kwargs)


def test_bad_connection_argument_raises():
    with pytest.raises(BadArgumentException, match="Redis URL"):
        Client(42)  # type: ignore[arg-type]


def test_client_survives_a_redis_restart(clock):
    """After a restart the connection is gone and so are the scripts (NOSCRIPT): the
    client reconnects, reloads them and carries on."""
    from redis_server import RedisServer

    first = RedisServer()
    try:
        client = Client(first.url, clock=clock)
        assert enqueue(client, "before", interval=0)
    finally:
        first.stop()
    second = RedisServer(port=first.port)
    try:
        assert enqueue(client, "after", interval=0)  # the old server kept nothing
        assert client.dequeue().job_id == "after"
        client.close()
    finally:
        second.stop()
