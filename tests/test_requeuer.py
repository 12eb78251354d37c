"""The background requeuer (a thread for Client, a task for AsyncClient): start/stop, its
cross-process lock, scheduling by the earliest lease, error resilience."""

import logging
import time

import pytest

from sharq_fast import Client
from sharq_fast.requeuer import Schedule


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def requeuer_client(make_client):
    """make_client with a fast requeuer schedule."""
    return lambda **kw: make_client(job_requeue_interval=kw.pop("job_requeue_interval", 20), **kw)


def round_of(client, schedule):
    """One requeuer round of `schedule`, run by the client's transport."""
    return client._run(schedule.round())


def test_requeuer_requeues_expired_jobs_and_stops(requeuer_client, clock, store):
    client = requeuer_client()
    client.start_requeuer()
    client.enqueue(queue_id="q", job_id="j", payload=1, interval=0)
    assert client.dequeue().job_id == "j"
    clock.advance(client.job_expire_interval + 1)
    assert wait_for(lambda: client.queue_length("default", "q") == 1)
    requeuer = client._requeuer
    client.stop_requeuer()
    assert not requeuer.is_alive()
    assert not store.keys.exists("sharq:requeue_lock:sharq_server")  # released


def test_on_discard_gets_discarded_jobs(requeuer_client, clock):
    client = requeuer_client()
    seen = []
    client.start_requeuer(on_discard=seen.append)
    client.enqueue(queue_id="q", job_id="j", payload={"k": "v"}, interval=0, requeue_limit=0)
    client.dequeue()
    clock.advance(client.job_expire_interval + 1)
    assert wait_for(lambda: seen)
    assert (seen[0].job_id, seen[0].payload) == ("j", {"k": "v"})


def test_only_one_requeuer_per_prefix_holds_the_lock(requeuer_client, store):
    a, b = requeuer_client(), requeuer_client()
    sa, sb = Schedule(a.settings), Schedule(b.settings)
    assert round_of(a, sa).held is True
    assert round_of(b, sb).held is False  # a holds the lock
    assert round_of(a, sa).held is True  # and keeps it, extending it
    ttl = store.keys.pttl("sharq:requeue_lock:sharq_server")
    assert 0 < ttl <= sa.lock_ttl
    a._run(sa.release())
    assert round_of(b, sb).held is True  # released: b takes over
    b._run(sb.release())
    assert not store.keys.exists("sharq:requeue_lock:sharq_server")


def test_lock_of_another_prefix_is_independent(requeuer_client):
    a, b = requeuer_client(), requeuer_client(key_prefix="other")
    assert round_of(a, Schedule(a.settings)).held and round_of(b, Schedule(b.settings)).held


def test_dead_holder_lock_expires(requeuer_client):
    a, b = requeuer_client(), requeuer_client()
    sa, sb = Schedule(a.settings), Schedule(b.settings)
    sa.lock_ttl = sb.lock_ttl = 400  # long enough for a round on a loaded machine
    assert round_of(a, sa).held
    assert not round_of(b, sb).held
    time.sleep(0.45)
    assert round_of(b, sb).held


def test_next_round_comes_when_the_earliest_lease_expires(requeuer_client, clock):
    """The pause after a round ends at the earliest lease left, not a whole interval."""
    client = requeuer_client(job_requeue_interval=60_000, job_expire_interval=5000)
    client.enqueue(queue_id="q", job_id="j", payload=1, interval=0)
    schedule = Schedule(client.settings)
    assert schedule.pause_after(round_of(client, schedule)) == 60.0  # nothing active
    client.dequeue()
    clock.advance(1000)
    tick = round_of(client, schedule)
    assert tick.next_expiry == clock.now + 4000
    assert schedule.pause_after(tick) == pytest.approx(4.001)


def test_redis_errors_are_logged_and_retried(redis_server_url, r, clock, caplog):
    # A client pointing at a port nothing listens on: every round fails, the thread lives on.
    from redis_server import free_port

    client = Client(f"redis://127.0.0.1:{free_port()}/0", clock=clock, job_requeue_interval=10, retry_for=0)
    try:
        with caplog.at_level(logging.WARNING, logger="sharq_fast.requeuer"):
            client.start_requeuer()
            assert wait_for(lambda: len([m for m in caplog.messages if "requeue failed" in m]) >= 2)
            assert client._requeuer.is_alive()
    finally:
        client.close()


def test_close_stops_requeuer(requeuer_client):
    client = requeuer_client()
    client.start_requeuer()
    requeuer = client._requeuer
    assert requeuer.is_alive()
    client.close()
    assert not requeuer.is_alive()


def test_start_twice_keeps_one_requeuer(requeuer_client):
    client = requeuer_client()
    client.start_requeuer()
    first = client._requeuer
    client.start_requeuer()
    assert client._requeuer is first
