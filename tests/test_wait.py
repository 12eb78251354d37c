"""Waiting dequeues (both transports, both cores): woken by an enqueue of another client
through pub/sub on P:.wake:T, jobs of clients that publish nothing (sharq 1.3.0) found by
the bounded poll, timeouts, and no herd of useless rounds with many waiting consumers.

The time bounds here are loose on purpose (a loaded 2-core machine): they tell a wake-up
(well under a second) from a poll or a timeout (many seconds)."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from sharq_fast import Client, _core_py

P = "sharq_server"
HERE = Path(__file__).parent


def enqueue(client, job_id, queue_id="q1", interval=0, queue_type="default"):
    return client.enqueue(
        queue_type=queue_type, queue_id=queue_id, job_id=job_id, payload={"id": job_id}, interval=interval
    )


def later(seconds, function, *args):
    """Run function(*args) in a thread after `seconds`; join() the returned thread."""

    def run():
        time.sleep(seconds)
        function(*args)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def timed(function, *args, **kwargs):
    start = time.monotonic()
    result = function(*args, **kwargs)
    return result, time.monotonic() - start


# -- wake-ups -----------------------------------------------------------------------------


def test_waiting_dequeue_gets_a_job_enqueued_100_ms_later_by_another_client(make_client):
    consumer = make_client(wait_poll_interval=60)  # no poll during the test: a wake-up or nothing
    producer = make_client()
    thread = later(0.1, enqueue, producer, "j1")
    job, elapsed = timed(consumer.dequeue, timeout=30)
    thread.join()
    assert job is not None and job.job_id == "j1"
    assert 0.09 <= elapsed < 10


def test_waiting_dequeue_many_gets_the_jobs_of_one_enqueue_many(make_client):
    consumer = make_client(wait_poll_interval=60)
    producer = make_client()
    jobs = [{"queue_id": f"q{i}", "job_id": f"j{i}", "payload": i, "interval": 0} for i in range(5)]
    thread = later(0.1, producer.enqueue_many, jobs)
    got, elapsed = timed(consumer.dequeue_many, count=10, timeout=30)
    thread.join()
    assert got and elapsed < 10
    # On one node the one call takes all 5; on a cluster the jobs are spread over
    # partitions, which a dequeue learns of from its replies and a refresh every 50 ms.
    for _ in range(20):
        if len(got) == 5:
            break
        got += consumer.dequeue_many(count=10, timeout=1)
    assert sorted(job.job_id for job in got) == [f"j{i}" for i in range(5)]


def test_waiting_dequeue_of_another_queue_type_is_not_woken(make_client):
    consumer = make_client(wait_poll_interval=60)
    producer = make_client()
    thread = later(0.05, enqueue, producer, "j1", "q1", 0, "other")
    got, elapsed = timed(consumer.dequeue, "default", timeout=0.6)
    thread.join()
    assert got is None and elapsed >= 0.6
    assert consumer.dequeue("other").job_id == "j1"


def test_waiting_dequeue_is_woken_by_a_release(make_client):
    consumer = make_client(wait_poll_interval=60)
    holder = make_client()
    enqueue(holder, "j1")
    job = holder.dequeue()
    thread = later(0.1, holder.release, job)
    got, elapsed = timed(consumer.dequeue, timeout=30)
    thread.join()
    assert got.job_id == "j1" and elapsed < 10


def test_waiting_dequeue_is_woken_by_a_requeue(make_client, clock):
    consumer = make_client(wait_poll_interval=60)
    other = make_client()
    enqueue(other, "j1")
    other.dequeue()
    clock.advance(other.job_expire_interval + 1)
    thread = later(0.1, other.requeue)
    got, elapsed = timed(consumer.dequeue, timeout=30)
    thread.join()
    assert got.job_id == "j1" and elapsed < 10


def test_waiting_dequeue_wakes_when_a_rate_limited_queue_becomes_ready(make_client):
    """No one publishes when a queue's interval ends: the waiter sleeps until then."""
    client = make_client(clock=None, wait_poll_interval=60)  # the real clock
    enqueue(client, "j0", interval=300)
    enqueue(client, "j1", interval=300)
    assert client.dequeue().job_id == "j0"
    job, elapsed = timed(client.dequeue, timeout=30)
    assert job.job_id == "j1"
    assert 0.2 <= elapsed < 10


# -- clients that publish nothing ------------------------------------------------------------


def sharq_style_enqueue(r: redis.Redis, now: int, queue_type: str, queue_id: str, job_id: str, payload: bytes) -> None:
    """Write a job as sharq 1.3.0's enqueue script does (SHARQ_PROTOCOL.md): no PUBLISH."""
    pipe = r.pipeline(transaction=True)
    pipe.rpush(f"{P}:{queue_type}:{queue_id}", job_id)
    pipe.hset(f"{P}:payload", f"{queue_type}:{queue_id}:{job_id}", payload)
    pipe.hset(f"{P}:interval", f"{queue_type}:{queue_id}", 0)
    pipe.hset(f"{P}:{queue_type}:{queue_id}:requeues_remaining", job_id, -1)
    pipe.sadd(f"{P}:ready:queue_type", queue_type)
    pipe.zadd(f"{P}:{queue_type}", {queue_id: now}, nx=True)
    pipe.execute()


def test_sharq_style_enqueue_is_found_within_the_poll_interval(make_client, r, clock):
    consumer = make_client(wait_poll_interval=0.3)
    thread = later(0.1, sharq_style_enqueue, r, clock.now, "default", "q1", "j1", b"\xa2hi")
    job, elapsed = timed(consumer.dequeue, timeout=30)
    thread.join()
    assert job.job_id == "j1" and job.payload == "hi"
    assert elapsed < 0.1 + 0.3 + 3  # the poll found it, long before the timeout


@pytest.fixture
def acl_user(r: redis.Redis, redis_server_url: str):
    """acl_user(*channels): the URL of the test Redis as an ACL user that may run every
    command on every key, and use only these channels (patterns)."""
    users = []

    def make(*channels: str) -> str:
        user = f"user{os.getpid()}_{len(users)}"
        r.acl_setuser(user, enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all"], reset_channels=True,
                      channels=list(channels))
        users.append(user)
        parts = urlsplit(redis_server_url)
        return urlunsplit(parts._replace(netloc=f"{user}:pw@{parts.hostname}:{parts.port}"))

    yield make
    for user in users:
        r.acl_deluser(user)


def test_enqueue_by_a_user_refused_publish_is_found_by_the_poll(make_client, acl_user):
    producer = make_client(url=acl_user())  # no channel at all
    patient = make_client(wait_poll_interval=60)
    thread = later(0.1, enqueue, producer, "j0")
    job, elapsed = timed(patient.dequeue, timeout=1)
    thread.join()
    # The enqueue ran although its PUBLISH was refused; no wake-up came: the job was found
    # by the last look at the timeout.
    assert job.job_id == "j0" and elapsed >= 1
    consumer = make_client(wait_poll_interval=0.3)
    thread = later(0.1, enqueue, producer, "j1")
    job, elapsed = timed(consumer.dequeue, timeout=30)
    thread.join()
    assert job.job_id == "j1"  # found by the poll
    assert elapsed < 0.1 + 0.3 + 3


def test_the_wake_channel_is_the_only_permission_waiting_needs(make_client, acl_user):
    """As the README says: `&P:.wake:*` lets consumers wait and producers wake them."""
    url = acl_user(f"{P}:.wake:*")
    consumer = make_client(url=url, wait_poll_interval=60)
    producer = make_client(url=url)
    thread = later(0.1, enqueue, producer, "j1")
    job, elapsed = timed(consumer.dequeue, timeout=30)
    thread.join()
    assert job.job_id == "j1" and elapsed < 10


# -- timeouts -----------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [0.3, 1])
def test_dequeue_timeout_returns_none_after_about_the_timeout(client, timeout):
    job, elapsed = timed(client.dequeue, timeout=timeout)
    assert job is None
    assert timeout <= elapsed < timeout + 3


def test_dequeue_many_timeout_returns_an_empty_list(client):
    jobs, elapsed = timed(client.dequeue_many, count=10, timeout=0.3)
    assert jobs == []
    assert 0.3 <= elapsed < 3.3


def test_dequeue_timeout_zero_does_not_wait(client):
    jobs, elapsed = timed(client.dequeue_many, count=10, timeout=0)
    assert jobs == [] and elapsed < 3


def test_timeout_of_a_rate_limited_queue_that_stays_limited(client, clock):
    """The fake clock does not move: the queue stays limited, the wait ends at the timeout."""
    enqueue(client, "j0", interval=10_000)
    enqueue(client, "j1", interval=10_000)
    client.dequeue()
    job, elapsed = timed(client.dequeue, timeout=0.3)
    assert job is None and 0.3 <= elapsed < 3.3


@pytest.mark.parametrize("timeout", [-1, "1", float("inf"), float("nan"), True])
def test_bad_timeout_is_refused(client, timeout):
    from sharq_fast import BadArgumentException

    with pytest.raises(BadArgumentException, match="timeout"):
        client.dequeue(timeout=timeout)


# -- many waiting consumers ------------------------------------------------------------------


def _waiting_consumers(r: redis.Redis, prefix: str) -> int:
    return sum(1 for c in r.client_list() if int(c.get("psub", 0)) > 0)


def test_eight_waiting_consumer_processes(redis_server_url, r, transport, core):
    """8 consumers in processes of their own wait on one queue type while jobs come in
    bursts (one enqueue_many of 8) and one at a time. Each gets jobs; each is woken at most
    once per enqueue, and finds nothing at most once per enqueue (no herd of rounds)."""
    prefix, queue_type, consumers = "waitp", "work", 8
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")]))
    if core is _core_py:
        env["SHARQ_FAST_NO_EXTENSIONS"] = "1"
    argv = [sys.executable, str(HERE / "wait_consumer.py"), redis_server_url, prefix, transport, queue_type, "100"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for _ in range(consumers)]
    try:
        deadline = time.monotonic() + 60
        while _waiting_consumers(r, prefix) < consumers:
            assert time.monotonic() < deadline, "the consumers did not start waiting"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs if p.poll() is not None]
            time.sleep(0.05)
        enqueues = 0
        with Client(redis_server_url, key_prefix=prefix) as producer:
            n = 0

            def job(payload):
                nonlocal n
                n += 1
                return {"queue_type": queue_type, "queue_id": f"q{n}", "job_id": f"j{n}", "payload": payload, "interval": 0}

            for _ in range(8):
                producer.enqueue_many([job(1) for _ in range(consumers)])
                enqueues += 1
                time.sleep(0.15)
            for _ in range(16):
                producer.enqueue(**job(1))
                enqueues += 1
                time.sleep(0.03)
            total = n
            deadline = time.monotonic() + 60
            while r.hlen(f"{prefix}:payload"):  # every job taken and finished
                assert time.monotonic() < deadline, "the jobs were not all finished"
                time.sleep(0.05)
            producer.enqueue_many([job("stop") for _ in range(consumers)])
            enqueues += 1
        stats = []
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err.decode()
            stats.append(json.loads(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for key in r.scan_iter(match=f"{prefix}:*"):
            r.delete(key)
    got = sorted(job_id for s in stats for job_id in s["jobs"])
    assert got == sorted(f"j{i}" for i in range(1, total + 1)), "each job exactly once"
    for s in stats:
        assert s["jobs"], f"a consumer got no job: {stats}"
        assert s["wakeups"] <= enqueues, stats
        assert s["empty_after_wait"] <= s["wakeups"] <= enqueues, stats
