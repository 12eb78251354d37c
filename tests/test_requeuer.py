"""The background requeuer: start/stop, its cross-process lock, error resilience."""

import logging
import time

import pytest
import redis

from sharq_fast import Client
from sharq_fast.requeuer import Requeuer, RequeueLock


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def make_client(redis_server_url, r, clock):
    made = []

    def make(**kw):
        c = Client(redis_server_url, clock=clock, job_requeue_interval=20, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def test_requeuer_requeues_expired_jobs_and_stops(make_client, clock, r):
    client = make_client(requeuer=True)
    client.enqueue(queue_id="q", job_id="j", payload=1, interval=0)
    assert client.dequeue().job_id == "j"
    clock.advance(client.job_expire_interval + 1)
    assert wait_for(lambda: client.queue_length("default", "q") == 1)
    thread = client._requeuer
    client.stop_requeuer()
    assert not thread.is_alive()
    assert not r.exists("sharq:requeue_lock:sharq_server")  # released


def test_on_discard_gets_discarded_jobs(make_client, clock):
    client = make_client()
    seen = []
    client.start_requeuer(on_discard=seen.append)
    client.enqueue(queue_id="q", job_id="j", payload={"k": "v"}, interval=0, requeue_limit=0)
    client.dequeue()
    clock.advance(client.job_expire_interval + 1)
    assert wait_for(lambda: seen)
    assert (seen[0].job_id, seen[0].payload) == ("j", {"k": "v"})


def test_only_one_requeuer_per_prefix_holds_the_lock(make_client, r):
    a, b = make_client(), make_client()
    ra, rb = Requeuer(a), Requeuer(b)
    assert ra.tick() is True
    assert rb.tick() is False  # a holds the lock
    assert ra.tick() is True  # and keeps it, extending it
    ttl = r.pttl(ra.lock.key)
    assert 0 < ttl <= ra.lock.ttl_ms
    ra.stop()
    assert rb.tick() is True  # released: b takes over
    rb.stop()


def test_lock_of_another_prefix_is_independent(make_client):
    a, b = make_client(), make_client(key_prefix="other")
    assert RequeueLock(a, 1000).acquire() and RequeueLock(b, 1000).acquire()


def test_dead_holder_lock_expires(make_client, r):
    a, b = make_client(), make_client()
    lock = RequeueLock(a, 50)
    assert lock.acquire()
    assert not RequeueLock(b, 50).acquire()
    time.sleep(0.08)
    assert RequeueLock(b, 50).acquire()


def test_redis_errors_are_logged_and_retried(redis_server_url, r, clock, caplog):
    # A client pointing at a port nothing listens on: every tick fails, the thread lives on.
    from redis_server import free_port

    client = Client(f"redis://127.0.0.1:{free_port()}/0", clock=clock, job_requeue_interval=10)
    try:
        with caplog.at_level(logging.WARNING, logger="sharq_fast.requeuer"):
            client.start_requeuer()
            assert wait_for(lambda: len([m for m in caplog.messages if "requeue failed" in m]) >= 2)
            assert client._requeuer.is_alive()
    finally:
        client.close()


def test_close_stops_requeuer(make_client):
    client = make_client(requeuer=True)
    thread = client._requeuer
    assert thread.is_alive()
    client.close()
    assert not thread.is_alive()


def test_start_twice_keeps_one_thread(make_client):
    client = make_client()
    client.start_requeuer()
    first = client._requeuer
    client.start_requeuer()
    assert client._requeuer is first
