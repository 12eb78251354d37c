"""Job leases (both transports, both cores): a dequeued Job's ``expires_at`` is its lease;
extend moves it, release gives the job back, finish_many of a Job holds only while the
lease is the caller's."""

import pytest

from sharq_fast import BadArgumentException

P = "sharq_server"


def enqueue(client, job_id, queue_id="q1", interval=0, **kw):
    return client.enqueue(queue_id=queue_id, job_id=job_id, payload={"id": job_id}, interval=interval, **kw)


def test_dequeue_gives_the_lease_expiry(client, clock, r):
    enqueue(client, "j1")
    job = client.dequeue()
    assert job.expires_at == clock.now + client.job_expire_interval
    assert r.zscore(f"{P}:default:active", "q1:j1") == job.expires_at


def test_extend_keeps_a_job_from_requeue_past_its_first_expiry(client, clock, r):
    enqueue(client, "j1")
    job = client.dequeue()
    first = job.expires_at
    clock.advance(client.job_expire_interval - 1)
    assert client.extend(job, 5000) is True
    assert job.expires_at == clock.now + 5000 > first
    assert r.zscore(f"{P}:default:active", "q1:j1") == job.expires_at
    clock.advance(1000)  # past the first expiry, within the extended one
    assert clock.now > first
    result = client.requeue()
    assert result.requeued == 0 and not result.discarded
    assert client.dequeue() is None  # still held, not back in its queue
    assert client.finish_many([job]) == [True]  # the extended lease is the one held


def test_extend_after_requeue_returns_false(client, clock):
    enqueue(client, "j1")
    job = client.dequeue()
    lease = job.expires_at
    clock.advance(client.job_expire_interval + 1)
    assert client.requeue().requeued == 1
    assert client.extend(job, 5000) is False
    assert job.expires_at == lease  # a lost lease is not moved
    again = client.dequeue()  # another delivery: a new lease
    assert again.job_id == "j1" and again.expires_at != lease
    assert client.extend(job, 5000) is False  # the old Job holds nothing
    assert client.finish_many([job]) == [False]
    assert client.release(job) is False
    assert client.extend(again, 5000) is True
    assert client.finish_many([again]) == [True]


def test_extend_many_one_flag_per_job(client, clock):
    for i in range(4):
        enqueue(client, f"j{i}", queue_id=f"q{i}")
    jobs = client.dequeue_many(count=4)
    assert client.finish(jobs[1].queue_type, jobs[1].queue_id, jobs[1].job_id)
    clock.advance(10)
    assert client.extend_many(jobs, 2000, chunk_size=3) == [True, False, True, True]
    assert [job.expires_at == clock.now + 2000 for job in jobs] == [True, False, True, True]


def test_extend_after_finish_returns_false(client):
    enqueue(client, "j1")
    job = client.dequeue()
    assert client.finish_many([job]) == [True]
    assert client.extend(job, 1000) is False
    assert client.release(job) is False


@pytest.mark.parametrize("ms", [0, -5, 1.5, True, 2**53])
def test_extend_bad_ms_changes_nothing(client, r, ms):
    enqueue(client, "j1")
    job = client.dequeue()
    with pytest.raises(BadArgumentException):
        client.extend(job, ms)
    assert r.zscore(f"{P}:default:active", "q1:j1") == job.expires_at


def test_extend_takes_jobs_not_tuples(client):
    enqueue(client, "j1")
    job = client.dequeue()
    with pytest.raises(BadArgumentException, match="job 0"):
        client.extend_many([(job.queue_type, job.queue_id, job.job_id, job.expires_at)], 1000)


def test_release_puts_jobs_back_in_order_and_keeps_requeues_remaining(client, clock, r):
    for i in range(5):
        enqueue(client, f"j{i}", requeue_limit=2)
    taken = client.dequeue_many(count=3)
    assert [job.job_id for job in taken] == ["j0", "j1", "j2"]
    assert client.release_many(taken) == [True, True, True]
    assert not r.exists(f"{P}:default:active")
    again = client.dequeue_many(count=5)
    assert [job.job_id for job in again] == ["j0", "j1", "j2", "j3", "j4"]
    assert [job.requeues_remaining for job in again] == [2] * 5  # a release is not a requeue
    # A released job still counts its requeues from where it was.
    assert client.release_many(again) == [True] * 5
    clock.advance(client.job_expire_interval + 1)
    assert client.requeue().requeued == 0  # nothing was active


def test_release_of_a_job_and_of_a_lease_tuple(client):
    enqueue(client, "j1")
    enqueue(client, "j2")
    first, second = client.dequeue_many(count=2)
    as_tuple = (second.queue_type, second.queue_id, second.job_id, second.expires_at)
    stale = (first.queue_type, first.queue_id, first.job_id, first.expires_at + 1)
    assert client.release_many([stale, as_tuple]) == [False, True]
    assert client.release(first) is True
    assert [job.job_id for job in client.dequeue_many(count=2)] == ["j1", "j2"]


def test_release_respects_the_interval(client, clock):
    enqueue(client, "j0", interval=1000)
    enqueue(client, "j1", interval=1000)
    job = client.dequeue()
    assert client.release(job) is True
    # The dequeue counted: the queue is ready again at its time keeper + interval.
    assert client.dequeue() is None
    clock.advance(999)
    assert client.dequeue() is None
    clock.advance(1)
    assert client.dequeue().job_id == "j0"  # at the front, before j1


def test_release_into_a_queue_that_still_has_jobs(client, clock):
    enqueue(client, "j0", interval=0)
    enqueue(client, "j1", interval=0)
    job = client.dequeue()
    enqueue(client, "j2", interval=0)
    assert client.release(job) is True
    assert [j.job_id for j in client.dequeue_many(count=5)] == ["j0", "j1", "j2"]


def test_release_of_jobs_of_several_queues_and_types(client):
    enqueue(client, "a0", queue_id="qa")
    enqueue(client, "a1", queue_id="qa")
    client.enqueue(queue_type="other", queue_id="qb", job_id="b0", payload=1, interval=0)
    taken = client.dequeue_many(count=2) + client.dequeue_many("other", count=1)
    assert client.release_many(list(reversed(taken))) == [True, True, True]
    # Jobs of one queue keep their order in the input (here reversed).
    assert [j.job_id for j in client.dequeue_many(count=5)] == ["a1", "a0"]
    assert [j.job_id for j in client.dequeue_many("other", count=5)] == ["b0"]
    assert client.metrics("other").queue_ids == ["qb"]


def test_finish_many_checks_the_lease_of_jobs_but_not_of_tuples(client, clock):
    enqueue(client, "j1")
    job = client.dequeue()
    clock.advance(client.job_expire_interval + 1)
    client.requeue()
    again = client.dequeue()
    assert client.finish_many([job]) == [False]  # another delivery holds it now
    assert client.finish_many([(job.queue_type, job.queue_id, job.job_id)]) == [True]  # by ids: as finish()
    assert client.finish_many([again]) == [False]
