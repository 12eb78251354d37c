"""The Redis layout after each operation is exactly SharQ 1.3.0's (SHARQ_PROTOCOL.md)."""

import msgpack
import pytest

from conftest import FakeClock, forget_gone_intervals
from redis_state import data_keys

P = "sharq_server"
EXPIRE = 1000  # the client's default job_expire_interval


def minute_of(now: int) -> int:
    return now // 60000 * 60000


def assert_counter(r, key: str, value: int, now: int) -> None:
    minute = minute_of(now)
    assert r.get(f"{key}:{minute}") == str(value).encode()
    assert r.expiretime(f"{key}:{minute}") == (minute + 600000) // 1000


def enqueue(client, job_id="j1", queue_id="q1", payload=None, interval=5000, **kw):
    return client.enqueue(
        queue_id=queue_id, job_id=job_id, payload={"n": 1} if payload is None else payload, interval=interval, **kw
    )


def test_enqueue_writes_sharq_layout(client, r, clock: FakeClock):
    assert enqueue(client) is True
    now = clock.now
    assert r.zrange(f"{P}:default", 0, -1, withscores=True) == [(b"q1", float(now))]
    assert r.lrange(f"{P}:default:q1", 0, -1) == [b"j1"]
    assert r.hgetall(f"{P}:payload") == {b"default:q1:j1": msgpack.packb({"n": 1}, use_bin_type=True)}
    assert r.hgetall(f"{P}:interval") == {b"default:q1": b"5000"}
    assert r.hgetall(f"{P}:default:q1:requeues_remaining") == {b"j1": b"-1"}
    assert r.smembers(f"{P}:ready:queue_type") == {b"default"}
    assert_counter(r, f"{P}:enqueue_counter", 1, now)
    assert_counter(r, f"{P}:default:q1:enqueue_counter", 1, now)
    m = minute_of(now)
    assert set(data_keys(r)) == {
        k.encode()
        for k in (
            f"{P}:default",
            f"{P}:default:q1",
            f"{P}:payload",
            f"{P}:interval",
            f"{P}:default:q1:requeues_remaining",
            f"{P}:ready:queue_type",
            f"{P}:enqueue_counter:{m}",
            f"{P}:default:q1:enqueue_counter:{m}",
        )
    }


def test_second_enqueue_overwrites_interval_and_keeps_ready_score(client, r, clock):
    enqueue(client, "j1", interval=5000)
    first = clock.now
    clock.advance(10)
    enqueue(client, "j2", interval=700, requeue_limit=3)
    assert r.zscore(f"{P}:default", "q1") == first
    assert r.hget(f"{P}:interval", "default:q1") == b"700"
    assert r.lrange(f"{P}:default:q1", 0, -1) == [b"j1", b"j2"]
    assert r.hget(f"{P}:default:q1:requeues_remaining", "j2") == b"3"
    assert_counter(r, f"{P}:enqueue_counter", 2, clock.now)


def test_enqueue_after_a_dequeue_is_ready_at_time_keeper_plus_interval(client, r, clock):
    enqueue(client, "j1", interval=5000)
    assert client.dequeue() is not None
    dequeued_at = clock.now
    clock.advance(100)
    enqueue(client, "j2", interval=3000)
    assert r.zscore(f"{P}:default", "q1") == dequeued_at + 3000


def test_dequeue_writes_sharq_layout(client, r, clock):
    enqueue(client, "j1", interval=5000)
    enqueue(client, "j2", interval=5000)
    job = client.dequeue()
    now = clock.now
    assert (job.queue_id, job.job_id, job.payload, job.requeues_remaining) == ("q1", "j1", {"n": 1}, -1)
    assert r.get(f"{P}:default:q1:time") == str(now).encode()
    assert 0 < r.pttl(f"{P}:default:q1:time") <= EXPIRE
    assert r.zrange(f"{P}:default:active", 0, -1, withscores=True) == [(b"q1:j1", float(now + EXPIRE))]
    assert r.smembers(f"{P}:active:queue_type") == {b"default"}
    assert r.zscore(f"{P}:default", "q1") == now + 5000
    assert r.lrange(f"{P}:default:q1", 0, -1) == [b"j2"]
    assert_counter(r, f"{P}:dequeue_counter", 1, now)
    assert_counter(r, f"{P}:default:q1:dequeue_counter", 1, now)
    # The payload stays until finish.
    assert r.hexists(f"{P}:payload", "default:q1:j1")


def test_dequeue_of_last_job_removes_queue_and_queue_type(client, r):
    enqueue(client)
    client.dequeue()
    assert not r.exists(f"{P}:default")
    assert not r.exists(f"{P}:default:q1")
    assert not r.exists(f"{P}:ready:queue_type")


def test_dequeue_without_stored_interval_uses_now(client, r, clock):
    enqueue(client, "j1", interval=5000)
    enqueue(client, "j2", interval=5000)
    r.hdel(f"{P}:interval", "default:q1")
    client.dequeue()
    assert r.zscore(f"{P}:default", "q1") == clock.now


def test_finish_removes_job_and_cleans_up(client, r, clock):
    enqueue(client)
    client.dequeue()
    assert client.finish("default", "q1", "j1") is True
    assert data_keys(r, f"{P}:*counter*") and not r.exists(
        f"{P}:payload", f"{P}:default:active", f"{P}:active:queue_type",
        f"{P}:default:q1:requeues_remaining",
    )
    # The interval is forgotten once no job of the queue can be held any more (its time
    # keeper + job_expire_interval), by a requeue pass.
    expire = client.settings.job_expire_interval
    assert r.hget(f"{P}:interval", "default:q1") is not None
    assert r.zrange(f"{P}:.forget_intervals", 0, -1, withscores=True) == [(b"default:q1", clock.now + expire)]
    assert client.finish("default", "q1", "j1") is False
    forget_gone_intervals(client, clock)
    assert not r.exists(f"{P}:interval", f"{P}:.forget_intervals")


def test_finish_keeps_interval_while_queue_has_jobs(client, r):
    enqueue(client, "j1")
    enqueue(client, "j2")
    client.dequeue()
    assert client.finish("default", "q1", "j1")
    assert r.hget(f"{P}:interval", "default:q1") == b"5000"
    assert r.hgetall(f"{P}:default:q1:requeues_remaining") == {b"j2": b"-1"}


def test_requeue_puts_job_in_front_and_decrements(client, r, clock):
    enqueue(client, "j1", requeue_limit=2)
    enqueue(client, "j2", requeue_limit=2)
    client.dequeue()
    dequeued_at = clock.now
    clock.advance(EXPIRE + 1)
    result = client.requeue()
    assert result.requeued == 1 and result.discarded == []
    assert r.lrange(f"{P}:default:q1", 0, -1) == [b"j1", b"j2"]
    assert r.hget(f"{P}:default:q1:requeues_remaining", "j1") == b"1"
    assert not r.exists(f"{P}:default:active") and not r.exists(f"{P}:active:queue_type")
    # The queue was still ready (it had j2), so its score is untouched.
    assert r.zscore(f"{P}:default", "q1") == dequeued_at + 5000


def test_requeue_of_only_job_makes_queue_ready_again(client, r, clock):
    enqueue(client, "j1", interval=300)
    client.dequeue()
    dequeued_at = clock.now
    r.pexpire(f"{P}:default:q1:time", 60000)  # keep the time keeper past the expiry
    clock.advance(EXPIRE + 1)
    client.requeue()
    assert r.zscore(f"{P}:default", "q1") == dequeued_at + 300
    assert r.smembers(f"{P}:ready:queue_type") == {b"default"}


def test_requeue_without_time_keeper_is_ready_now(client, r, clock):
    enqueue(client, "j1", interval=300)
    client.dequeue()
    r.delete(f"{P}:default:q1:time")
    clock.advance(EXPIRE + 1)
    client.requeue()
    assert r.zscore(f"{P}:default", "q1") == clock.now


def test_interval_only_for_known_queue(client, r):
    assert client.interval("default", "q1", 10) is False
    assert not r.exists(f"{P}:interval")
    enqueue(client)
    assert client.interval("default", "q1", 10) is True
    assert r.hget(f"{P}:interval", "default:q1") == b"10"


@pytest.mark.parametrize("purge", [False, True])
def test_clear_queue(client, r, purge):
    enqueue(client, "j1")
    enqueue(client, "j2")
    assert client.clear_queue("default", "q1", purge_all=purge) is True
    assert not r.exists(f"{P}:default", f"{P}:default:q1", f"{P}:ready:queue_type")
    # The cleared jobs' payloads and requeue counts always go (SharQ kept them without
    # purge_all, and then refused their ids for good); purge_all also takes the interval.
    assert not r.exists(f"{P}:payload", f"{P}:default:q1:requeues_remaining", f"{P}:.purging")
    assert bool(r.exists(f"{P}:interval")) is not purge
    assert client.clear_queue("default", "q1") is False
    assert enqueue(client, "j1") is True  # a cleared job id can be enqueued again


def test_clear_queue_deletes_list_even_when_not_ready(client, r):
    r.rpush(f"{P}:default:q9", "stray")
    assert client.clear_queue("default", "q9") is False
    assert not r.exists(f"{P}:default:q9")


def test_queue_length_and_deep_status(client, r):
    assert client.queue_length("default", "q1") == 0
    enqueue(client, "j1")
    enqueue(client, "j2")
    assert client.queue_length("default", "q1") == 2
    assert client.deep_status() is True
    assert r.get(f"sharq:deep_status:{P}") == b"sharq_deep_status"


def test_key_prefix_is_honoured(make_client, r):
    c = make_client(key_prefix="other")
    c.enqueue(queue_id="q", job_id="j", payload=1, interval=0, queue_type="sms")
    c.dequeue("sms")
    assert all(key.startswith(b"other:") for key in data_keys(r))
    assert r.exists("other:sms:active", "other:active:queue_type", "other:payload") == 3


def test_purge_of_a_long_queue_runs_in_bounded_steps(client, r, redis_server_url):
    from sharq_fast import _constants as C

    count = 2 * C.PURGE_BATCH + 7
    client.enqueue_many({"queue_id": "big", "job_id": f"j{i}", "payload": i, "interval": 0} for i in range(count))
    enqueue(client, "other", queue_id="q2")
    r.config_resetstat()
    assert client.clear_queue("default", "big", purge_all=True) is True
    assert r.info("commandstats")["cmdstat_evalsha"]["calls"] == 1 + 3  # clear, then 3 steps
    assert r.hkeys(f"{P}:payload") == [b"default:q2:other"]
    assert [k for k in data_keys(r, f"{P}:default:big*") if b"counter" not in k] == []
    assert r.hkeys(f"{P}:interval") == [b"default:q2"]
