"""Surviving a failover, with real processes: a producer (``replicas=1``) and a consumer keep
going through ``SENTINEL FAILOVER`` and through the master's SIGKILL; every acknowledged job
is delivered, none twice except by lease expiry; waiting dequeues and the requeuer follow
the new master; scripts are loaded there again. And the property under it all: a call
resent after its reply was lost gets its first reply on the new master when its write was
replicated, and runs there when it was not. And a call made while Redis is away waits for
it (the sync transport used to give up at once when the pool could not connect)."""

import threading
import time
from typing import Any, Callable, Iterator, Tuple

import pytest
import redis

from sharq_fast import Client
from sharq_fast._ops import prefix_key, replied_call
from sharq_fast._processes import wait_until
from sharq_fast._redis_sentinel import RedisSentinelSet
from sharq_fast._redis_server import RedisServer
from sharq_fast._rounds import Round
from sharq_fast import _core
from sharq_fast.scripts import load_scripts
from ha_workload import QT, REQUEUE_LIMIT, Consumer, Producer, wait_for

#: Long enough to ride through a failover (about 1.5 s graceful, 4 s after SIGKILL here).
RETRY_FOR = 30.0
#: Jobs acknowledged before the failure; seconds the producer goes on after it; its pause
#: between batches of 20 (at most ~2,000 jobs/s: less than the consumer takes).
BEFORE = 300
AFTER = 1.5
PAUSE = 0.01


@pytest.fixture
def core() -> None:
    """Overrides conftest's autouse `core`: failovers do not depend on the core."""
    return None


# -- the reply cache across a failover ----------------------------------------------------


@pytest.fixture
def pair() -> Iterator[Tuple[RedisServer, RedisServer]]:
    """A master and a replica in sync, for this test alone."""
    with RedisServer() as master:
        with RedisServer(args=["--replicaof", "127.0.0.1", str(master.port)]) as replica:
            conn = master.client()
            wait_until(lambda: conn.execute_command("WAIT", 1, 100) == 1, "the replica to sync", 30, 0.05)
            conn.close()
            yield master, replica


def _one_enqueue(client: Client) -> bytes:
    """The RESP of one enqueue call with its reply-cache token, as the client would send it."""
    settings = client.settings
    bodies, _ = _core.core.enqueue_chunks(
        settings.clock(), ({"queue_id": "q", "job_id": "j", "payload": 1, "interval": 0},), -1, -1, 1
    )
    command, _token = replied_call(settings, "enqueue", (prefix_key(settings),), bodies[0], 7)
    return command


def _send_raw(server: RedisServer, command: bytes) -> Any:
    """Send a packed command on a connection of its own and read its reply."""
    conn = server.client()
    try:
        conn.script_load(load_scripts()["enqueue"].source)
        pool_conn = conn.connection_pool.get_connection()
        try:
            pool_conn.send_packed_command((command,))
            return pool_conn.read_response()
        finally:
            conn.connection_pool.release(pool_conn)
    finally:
        conn.close()


def _resend(client: Client, command: bytes) -> Any:
    def op() -> Any:
        (reply,) = yield Round((command,))
        return reply

    return client._transport.run(op())


def test_a_replicated_call_resent_to_the_promoted_replica_answers_from_the_cache(pair: Any) -> None:
    master, replica = pair
    with Client(master.url) as client:
        command = _one_enqueue(client)
        assert _send_raw(master, command) == []  # ran: no duplicates; the reply is "lost"
        assert master.client().execute_command("WAIT", 1, 5000) == 1
        promoted = replica.client()
        promoted.execute_command("REPLICAOF", "NO", "ONE")
        with Client(replica.url) as on_new_master:
            on_new_master.settings.tokens = client.settings.tokens  # the same client, moved
            assert _resend(on_new_master, command) == []  # the first reply, not [1] (a duplicate)
        assert promoted.lrange("sharq_server:default:q", 0, -1) == [b"j"]  # ran once
        promoted.close()


def test_a_lost_call_resent_to_the_new_master_runs_there(pair: Any) -> None:
    master, replica = pair
    promoted = replica.client()
    promoted.execute_command("REPLICAOF", "NO", "ONE")  # from here on, writes to master are lost
    with Client(master.url) as client:
        command = _one_enqueue(client)
        assert _send_raw(master, command) == []
        with Client(replica.url) as on_new_master:
            on_new_master.settings.tokens = client.settings.tokens
            assert _resend(on_new_master, command) == []  # ran on the new master (script loaded on NOSCRIPT)
    assert promoted.lrange("sharq_server:default:q", 0, -1) == [b"j"]
    promoted.close()


# -- a producer and a consumer through a failover ---------------------------------------


def _master(sentinel_set: RedisSentinelSet) -> redis.Redis:
    return sentinel_set.server(sentinel_set.master_address()[1]).client()


def run_through(sentinel_set: RedisSentinelSet, make_client: Any, failure: Callable[[], Any]) -> None:
    """Start a producer and a consumer (with the requeuer), both as busy as they can be,
    cause `failure` once BEFORE jobs are acknowledged, stop the producer AFTER s later, and
    check what came out once the consumer has finished every job."""
    url = sentinel_set.url
    producer = Producer(make_client(url, clock=None, retry_for=RETRY_FOR, replica_timeout=0.5), pause=PAUSE)
    consumer_client = make_client(url, clock=None, retry_for=RETRY_FOR, replicas=1, replica_timeout=0.5,
                                  job_expire_interval=3000, job_requeue_interval=500)
    consumer_client.start_requeuer()
    consumer = Consumer(consumer_client)
    producer.start()
    consumer.start()
    try:
        wait_for(lambda: len(producer.acked) >= BEFORE, "the producer to get going", 60, producer, consumer)
        failure()
        acked_at_failure, delivered_at_failure = len(producer.acked), len(consumer.delivered())
        time.sleep(AFTER)
        producer.stopping.set()
        producer.join(120)
        assert not producer.is_alive()
        master = _master(sentinel_set)
        try:
            wait_for(lambda: consumer.finished_ids() >= producer.acked and master.hlen("sharq_server:payload") == 0,
                     "every acknowledged job to be finished", 90, producer, consumer)
        finally:
            master.close()
    finally:
        producer.stopping.set()
        consumer.stopping.set()
        consumer.join(30)
    print(f"acked at the failure: {acked_at_failure}, delivered: {delivered_at_failure}; acked in all "
          f"{len(producer.acked)} of {producer.sent}; deliveries: {sum(map(len, consumer.deliveries.values()))} of "
          f"{len(consumer.deliveries)} jobs")
    # The clients followed the failover by themselves: no call failed.
    assert (producer.errors, consumer.errors) == ([], [])
    assert len(producer.acked) == producer.sent > acked_at_failure  # it happened mid-way
    assert consumer.delivered() >= producer.acked
    assert consumer.given_twice_without_expiry() == {}
    assert all(counts[0] == REQUEUE_LIMIT for counts in consumer.deliveries.values())
    master = _master(sentinel_set)
    try:
        # Nothing left behind on the new master: no job queued, active or with a payload.
        assert master.hlen("sharq_server:payload") == 0
        assert master.zcard(f"sharq_server:{QT}:active") == 0
        # The scripts were loaded there again (they are not replicated).
        assert master.script_exists(consumer_client.settings.sha["dequeue"]) == [True]
    finally:
        master.close()


@pytest.mark.slow
def test_producer_and_consumer_through_sentinel_failover(redis_sentinel: RedisSentinelSet, make_client: Any) -> None:
    run_through(redis_sentinel, make_client, redis_sentinel.failover)


@pytest.fixture
def sentinel_set_2() -> Iterator[RedisSentinelSet]:
    """A master, two replicas and three sentinels: after the master is killed, the new one
    still has a replica to confirm writes (replicas=1)."""
    with RedisSentinelSet(replicas=2, sentinels=3) as sentinel_set:
        yield sentinel_set


@pytest.mark.slow
def test_producer_and_consumer_through_a_killed_master(sentinel_set_2: RedisSentinelSet, make_client: Any) -> None:
    run_through(sentinel_set_2, make_client, sentinel_set_2.kill_master)


@pytest.mark.slow
def test_waiting_dequeues_follow_the_new_master(sentinel_set_2: RedisSentinelSet, make_client: Any) -> None:
    """A dequeue waiting on the wake-up channel through a failover (and a SIGKILL) is woken
    by an enqueue on the new master: its pub/sub connection followed (the poll interval is
    longer than the wait, so only a wake-up can deliver the job)."""
    url = sentinel_set_2.url
    waiter = make_client(url, clock=None, retry_for=RETRY_FOR, wait_poll_interval=120)
    producer = make_client(url, clock=None, retry_for=RETRY_FOR)
    for failure in (sentinel_set_2.failover, sentinel_set_2.kill_master):
        got: list = []
        thread = threading.Thread(target=lambda: got.append(waiter.dequeue(QT, timeout=60)))
        thread.start()
        failure()
        producer.enqueue(queue_type=QT, queue_id="w", job_id=f"after-{failure.__name__}", payload=1, interval=0)
        thread.join(90)
        assert [job.job_id for job in got] == [f"after-{failure.__name__}"]


# -- a Redis that is away for a moment ------------------------------------------------------


def test_a_call_waits_while_redis_is_away(make_client: Any) -> None:
    """Connections that cannot be made (the pool's connect refused) are tried again within
    retry_for, as lost connections are: a call made while Redis is down returns once it is
    back, on both transports."""
    with RedisServer() as server:
        q = make_client(server.url, clock=None, retry_for=30)
        assert q.enqueue(queue_type=QT, queue_id="r", job_id="before", payload=1, interval=0)
        server.kill()
        back = threading.Timer(0.5, server.start)
        back.start()
        try:
            assert q.enqueue(queue_type=QT, queue_id="r", job_id="after", payload=1, interval=0) is True
        finally:
            back.join()
        assert q.queue_length(QT, "r") == 1  # the restart lost "before" (no AOF): this is the new one
