"""fail / fail_many (every transport, both cores, both layouts): a failure counts against
the job's requeue limit as an expiry would; retried now (front of its queue) or after a
backoff (the requeuer brings it back), discarded or dead-lettered when out of requeues,
LOST (nothing changed) when the caller's lease is gone."""

import pytest

from conftest import forget_gone_intervals
from sharq_fast import BadArgumentException, BatchError, FailOutcome, Job

RETRIED, DISCARDED, DEAD_LETTERED, LOST = (
    FailOutcome.RETRIED, FailOutcome.DISCARDED, FailOutcome.DEAD_LETTERED, FailOutcome.LOST,
)


def enqueue(client, job_id, queue_id="q1", interval=0, queue_type="default", **kw):
    return client.enqueue(
        queue_type=queue_type, queue_id=queue_id, job_id=job_id, payload={"id": job_id}, interval=interval, **kw
    )


def test_outcome_is_a_str_enum():
    assert FailOutcome.RETRIED == "retried" and FailOutcome("dead_lettered") is DEAD_LETTERED
    assert {o.value for o in FailOutcome} == {"retried", "discarded", "dead_lettered", "lost"}


def test_retry_now_goes_to_the_front_and_counts_a_requeue(client, clock, store):
    for job_id in ("j0", "j1", "j2"):
        enqueue(client, job_id, requeue_limit=3)
    job = client.dequeue()
    assert job.requeues_remaining == 3
    assert client.fail(job) is RETRIED
    assert store.active("default") == {}
    assert store.queued("default", "q1") == ["j0", "j1", "j2"]
    assert store.requeues("default", "q1")["j0"] == "2"
    clock.advance(1)  # (a delivery in the same ms would get the same lease)
    again = client.dequeue()
    assert (again.job_id, again.requeues_remaining, again.payload) == ("j0", 2, {"id": "j0"})
    assert client.fail(job) is LOST  # the old lease holds nothing
    assert client.fail(again) is RETRIED
    assert client.dequeue().requeues_remaining == 1


def test_jobs_of_one_queue_failed_together_keep_their_order(client):
    for i in range(4):
        enqueue(client, f"j{i}")
    taken = client.dequeue_many(count=3)
    assert client.fail_many(taken) == [RETRIED] * 3
    assert [j.job_id for j in client.dequeue_many(count=10)] == ["j0", "j1", "j2", "j3"]


def test_backoff_keeps_the_lease_and_the_requeuer_counts_the_requeue(client, clock, store):
    enqueue(client, "j1", requeue_limit=2)
    job = client.dequeue()
    clock.advance(5)
    assert client.fail(job, backoff_ms=3000) is RETRIED
    assert store.active("default") == {"q1:j1": clock.now + 3000}
    assert store.requeues("default", "q1") == {"j1": "2"}  # not counted yet
    assert client.dequeue() is None
    clock.advance(2999)
    assert client.requeue().requeued == 0  # the backoff has not run out
    clock.advance(1)
    assert client.requeue().requeued == 1
    again = client.dequeue()
    assert (again.job_id, again.requeues_remaining) == ("j1", 1)  # one requeue in all
    assert client.finish_many([job]) == [False]  # the failed lease is not the caller's any more


def test_backoff_of_a_job_out_of_requeues_discards_it_at_once(client, store):
    enqueue(client, "j1", requeue_limit=0)
    job = client.dequeue()
    assert client.fail(job, backoff_ms=60000) is DISCARDED
    assert store.active("default") == {} and store.payloads() == set()


def test_out_of_requeues_is_discarded(client, clock, store):
    enqueue(client, "j1", requeue_limit=1)
    assert client.fail(client.dequeue()) is RETRIED
    job = client.dequeue()
    assert job.requeues_remaining == 0
    assert client.fail(job) is DISCARDED
    assert store.payloads() == set()
    assert store.active("default") == {}
    assert store.requeues("default", "q1") == {}
    assert store.queued("default", "q1") == []
    assert client.dequeue() is None
    assert enqueue(client, "j1") is True  # gone: the id is free again


def test_out_of_requeues_is_dead_lettered(client, store):
    enqueue(client, "j1", requeue_limit=0)
    client.enqueue(queue_id="q1", job_id="bin", payload=b"\x00raw", interval=0, requeue_limit=0)
    jobs = client.dequeue_many(count=2)
    assert client.fail_many(jobs, dead_letter="dead") == [DEAD_LETTERED, DEAD_LETTERED]
    assert store.payloads() == {"dead:q1:j1", "dead:q1:bin"}
    assert store.active("default") == {}
    assert store.intervals()["dead:q1"] == "0"
    assert "dead" in client.metrics().queue_types
    assert sum(client.metrics("dead", "q1").enqueue_counts.values()) == 2
    dead = client.dequeue_many("dead", count=10)
    assert [(j.queue_type, j.queue_id, j.job_id, j.payload) for j in dead] == [
        ("dead", "q1", "j1", {"id": "j1"}),
        ("dead", "q1", "bin", b"\x00raw"),
    ]
    assert [j.requeues_remaining for j in dead] == [client.default_job_requeue_limit] * 2
    # Inspected: put it back into its own queue type.
    assert client.enqueue(queue_id="q1", job_id="j1", payload=dead[0].payload, interval=0) is True
    assert client.finish_many(dead) == [True, True]
    assert client.dequeue().payload == {"id": "j1"}


def test_dead_letter_takes_the_default_requeue_limit(make_client):
    client = make_client(default_job_requeue_limit=4)
    enqueue(client, "j1", requeue_limit=0)
    assert client.fail(client.dequeue(), dead_letter="dead") is DEAD_LETTERED
    assert client.dequeue("dead").requeues_remaining == 4


def test_dead_letter_keeps_a_job_already_there(client, store):
    enqueue(client, "j1", queue_type="dead")
    store.set_payload("dead", "q1", "j1", b"\xa5first")
    enqueue(client, "j1", requeue_limit=0)
    assert client.fail(client.dequeue(), dead_letter="dead") is DEAD_LETTERED
    assert store.queued("dead", "q1") == ["j1"]
    assert store.payload("dead", "q1", "j1") == b"\xa5first"
    assert store.payloads() == {"dead:q1:j1"}  # the failed one is gone from its own type


def test_dead_letter_leaves_jobs_with_requeues_left_alone(client):
    enqueue(client, "j1", requeue_limit=2)
    assert client.fail(client.dequeue(), dead_letter="dead") is RETRIED
    assert client.dequeue("dead") is None
    assert client.dequeue().job_id == "j1"


def test_unlimited_is_never_discarded(client, store):
    enqueue(client, "j1", requeue_limit=-1)
    for _ in range(20):
        job = client.dequeue()
        assert job.requeues_remaining == -1
        assert client.fail(job, dead_letter="dead") is RETRIED
    assert store.requeues("default", "q1") == {"j1": "-1"}
    assert client.dequeue("dead") is None


def test_lost_lease_changes_nothing(client, clock, store):
    enqueue(client, "done", requeue_limit=0)
    enqueue(client, "expired", queue_id="q2", requeue_limit=3)
    enqueue(client, "held", queue_id="q3")
    by_id = {job.job_id: job for job in client.dequeue_many(count=3)}
    done, expired, held = by_id["done"], by_id["expired"], by_id["held"]
    assert client.finish_many([done]) == [True]
    clock.advance(client.job_expire_interval)
    assert client.extend(held, 60000)
    assert client.requeue().requeued == 1  # expired is back in q2, one requeue counted
    again = client.dequeue()
    assert again.job_id == "expired"
    stale_held = (held.queue_type, held.queue_id, held.job_id, held.expires_at + 1)
    before = store.snapshot()
    assert client.fail_many([done, expired, stale_held], dead_letter="dead") == [LOST, LOST, LOST]
    assert client.fail_many([done, expired], backoff_ms=100) == [LOST, LOST]
    assert store.snapshot() == before
    assert client.fail(again) is RETRIED  # the new delivery's lease is the one that holds


def test_a_job_named_twice_is_failed_once(client, store):
    enqueue(client, "j1", requeue_limit=5)
    job = client.dequeue()
    assert client.fail_many([job, job]) == [RETRIED, LOST]
    assert store.requeues("default", "q1") == {"j1": "4"}


def test_mixed_batch_over_queues_and_types(client, store):
    enqueue(client, "a", queue_id="qa", requeue_limit=2)
    enqueue(client, "b", queue_id="qb", requeue_limit=0)
    enqueue(client, "c", queue_id="qc", queue_type="other", requeue_limit=0)
    enqueue(client, "d", queue_id="qd", queue_type="other", requeue_limit=1)
    taken = sorted(client.dequeue_many(count=2) + client.dequeue_many("other", count=2), key=lambda j: j.job_id)
    gone = (taken[0].queue_type, taken[0].queue_id, "nope", taken[0].expires_at)
    outcomes = client.fail_many([taken[3], gone, taken[1], taken[0], taken[2]], dead_letter="dead", chunk_size=2)
    assert outcomes == [RETRIED, LOST, DEAD_LETTERED, RETRIED, DEAD_LETTERED]
    assert sorted(j.job_id for j in client.dequeue_many("dead", count=10)) == ["b", "c"]
    assert sorted(j.job_id for j in client.dequeue_many(count=10)) == ["a"]
    assert sorted(j.job_id for j in client.dequeue_many("other", count=10)) == ["d"]


def test_a_failed_job_still_waits_its_interval(client, clock):
    enqueue(client, "j0", interval=1000)
    enqueue(client, "j1", interval=1000)
    job = client.dequeue()
    clock.advance(10)
    assert client.fail(job) is RETRIED
    assert client.dequeue() is None  # the dequeue counted: ready at time keeper + interval
    clock.advance(989)
    assert client.dequeue() is None
    clock.advance(1)
    assert client.dequeue().job_id == "j0"


def test_a_discarded_jobs_queue_keeps_its_interval_for_its_other_jobs(client, clock, store):
    enqueue(client, "j0", interval=1000, requeue_limit=0)
    job = client.dequeue()
    enqueue(client, "j1", interval=1000)  # queued while j0 is active: due at +1000
    assert client.fail(job) is DISCARDED
    assert store.intervals() == {"default:q1": "1000"}
    assert client.dequeue() is None
    clock.advance(1000)
    assert client.dequeue().job_id == "j1"


def test_a_discard_that_empties_a_queue_keeps_its_interval_while_others_are_held(client, clock, store):
    enqueue(client, "j0", interval=1000, requeue_limit=0)
    enqueue(client, "j1", interval=1000)
    first = client.dequeue()
    clock.advance(1000)
    second = client.dequeue()  # no job queued now, two held
    assert client.fail(first) is DISCARDED
    assert store.intervals() == {"default:q1": "1000"}  # j1 is still held
    assert client.release(second) is True
    assert client.dequeue() is None  # back at its time keeper + interval
    clock.advance(1000)
    job = client.dequeue()
    assert job.job_id == "j1" and client.finish(job.queue_type, job.queue_id, job.job_id)
    assert store.intervals() == {"default:q1": "1000"}
    forget_gone_intervals(client, clock)  # no job of it can be held any more
    assert store.intervals() == {}


def test_fail_of_a_tuple_lease(client):
    enqueue(client, "j1")
    job = client.dequeue()
    assert client.fail_many([(job.queue_type, job.queue_id, job.job_id, job.expires_at)]) == [RETRIED]


def test_fail_of_nothing(client):
    assert client.fail_many([]) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"backoff_ms": -1},
        {"backoff_ms": 1.5},
        {"backoff_ms": True},
        {"backoff_ms": "10"},
        {"backoff_ms": 2**53},
        {"dead_letter": ""},
        {"dead_letter": "a:b"},
        {"dead_letter": 5},
        {"dead_letter": "x" * 101},
        {"dead_letter": "default"},  # the job's own type
        {"chunk_size": 0},
        {"chunk_size": 10**6},
    ],
)
def test_bad_arguments_change_nothing(client, store, kwargs):
    enqueue(client, "j1", requeue_limit=0)
    enqueue(client, "j2", queue_id="q2")
    jobs = client.dequeue_many(count=2)
    before = store.snapshot()
    with pytest.raises(BadArgumentException):
        client.fail_many(jobs, **kwargs)
    assert store.snapshot() == before


@pytest.mark.parametrize(
    "bad",
    [
        "a string",
        ("default", "q1", "j1"),  # no lease
        ("default", "q1", "j1", 0),
        ("default", "q:1", "j1", 5),
        ("default", "q1", "j1", -3),
        Job("default", "q1", "j1", None, 0, expires_at=0),  # holds no lease
    ],
)
def test_a_bad_job_changes_nothing(client, store, bad):
    enqueue(client, "j1", requeue_limit=0)
    enqueue(client, "j2", queue_id="q2")
    jobs = client.dequeue_many(count=2)
    before = store.snapshot()
    with pytest.raises(BadArgumentException, match="job 2"):
        client.fail_many([*jobs, bad], dead_letter="dead", chunk_size=1)
    assert store.snapshot() == before


def test_a_dead_letter_type_reserved_for_the_queue_id_is_refused(client, store):
    enqueue(client, "j1", queue_id="queue_type", requeue_limit=0)
    job = client.dequeue()
    before = store.snapshot()
    with pytest.raises(BadArgumentException, match="job 0"):
        client.fail(job, dead_letter="ready")  # its list would be P:ready:queue_type
    assert store.snapshot() == before


# -- keys of another type (single node: SharQ's keys are shared with other writers) ---------


@pytest.mark.parametrize(
    "key, kwargs",
    [
        ("sharq_server:default:q1", {}),  # the job list a retried job goes back to
        ("sharq_server:default:q1:requeues_remaining", {}),
        ("sharq_server:dead:q1", {"dead_letter": "dead"}),  # the dead-letter job list
        ("sharq_server:dead", {"dead_letter": "dead"}),  # the dead-letter ready set
        ("sharq_server:interval", {"dead_letter": "dead"}),
    ],
)
def test_a_key_of_another_type_stops_the_call_before_it_writes(client, r, store, key, kwargs):
    enqueue(client, "a", requeue_limit=0)
    enqueue(client, "b", queue_id="q2")
    jobs = client.dequeue_many(count=2)
    if key.endswith("requeues_remaining"):
        r.delete(key)
    r.set(key, "not SharQ's")
    before = store.snapshot()
    with pytest.raises(BatchError, match="nothing was changed") as info:
        client.fail_many(jobs, **kwargs)
    assert info.value.refused == [0, 1]
    assert store.snapshot() == before
