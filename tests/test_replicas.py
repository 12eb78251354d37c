"""Replicated writes (``replicas=``): a WAIT ends each write round of enqueue, enqueue_many,
dequeue and finish; a round it does not confirm is sent again (same reply-cache tokens:
it runs once) for retry_for, then ReplicationError says what is not confirmed. On both
transports and cores, against a private master with one replica, and a lone master
(WAIT there never counts a replica)."""

from typing import Any, Iterator, Tuple

import pytest
import redis

from sharq_fast import BadArgumentException, Client, ReplicationError
from sharq_fast._processes import wait_until
from sharq_fast._redis_server import RedisServer
from redis_state import dump

QT = "rt"


def job(n: int, queue: int = 0) -> dict:
    return {"queue_type": QT, "queue_id": f"q{queue}", "job_id": f"j{n}", "payload": {"n": n}, "interval": 0}


def waits(conn: redis.Redis) -> int:
    """WAIT commands the server has run."""
    return conn.info("commandstats").get("cmdstat_wait", {}).get("calls", 0)


@pytest.fixture(scope="module")
def pair() -> Iterator[Tuple[RedisServer, RedisServer]]:
    """A master and its replica, in sync."""
    with RedisServer() as master:
        with RedisServer(args=["--replicaof", "127.0.0.1", str(master.port)]) as replica:
            conn = master.client()
            wait_until(lambda: conn.execute_command("WAIT", 1, 100) == 1, "the replica to sync", 30, 0.05)
            conn.close()
            yield master, replica


@pytest.fixture(scope="module")
def lone() -> Iterator[RedisServer]:
    """A master without replicas."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def master(pair: Tuple[RedisServer, RedisServer]) -> Iterator[redis.Redis]:
    conn = pair[0].client()
    conn.flushall()
    yield conn
    conn.close()


@pytest.fixture
def lone_conn(lone: RedisServer) -> Iterator[redis.Redis]:
    conn = lone.client()
    conn.flushall()
    yield conn
    conn.close()


@pytest.fixture
def unconfirmed_client(lone: RedisServer, lone_conn: redis.Redis, make_client: Any) -> Any:
    """replicas=1 on a master without replicas: WAIT always counts 0 (short timeouts)."""
    return make_client(lone.url, replicas=1, replica_timeout=0.05, retry_for=0.3)


# -- confirmed --------------------------------------------------------------------------


def test_replicas_1_waits_after_each_write_round(pair: Any, master: redis.Redis, make_client: Any) -> None:
    client = make_client(pair[0].url, replicas=1)
    client.load_scripts()  # (a NOSCRIPT would send the round and its WAIT again)
    before = waits(master)
    assert client.enqueue(**job(0)) is True
    result = client.enqueue_many([job(n) for n in range(1, 6)], chunk_size=2, pipeline_depth=1)  # 3 rounds
    assert (result.enqueued, result.duplicates, result.unconfirmed) == (5, [], [])
    jobs = client.dequeue_many(QT, count=4)
    assert len(jobs) == 4
    assert client.finish_many(jobs) == [True] * 4
    last = client.dequeue(QT)
    assert client.finish(last.queue_type, last.queue_id, last.job_id) is True
    client.queue_length(QT, "q0")  # reads wait for nothing
    assert waits(master) - before == 1 + 3 + 1 + 1 + 1 + 1
    replica = pair[1].client()
    try:  # everything the last WAIT confirmed is on the replica
        assert dump(replica) == dump(master)
    finally:
        replica.close()


def test_replicas_per_call(pair: Any, master: redis.Redis, make_client: Any) -> None:
    client = make_client(pair[0].url)  # replicas=0: no WAIT unless a call asks
    client.load_scripts()
    before = waits(master)
    client.enqueue(**job(0))
    client.enqueue_many([job(1), job(2)])
    assert waits(master) == before
    client.enqueue_many([job(3), job(4)], replicas=1)
    assert waits(master) == before + 1
    jobs = client.dequeue_many(QT, count=10)
    assert waits(master) == before + 1
    assert client.finish_many(jobs, replicas=1) == [True] * 5
    assert waits(master) == before + 2


def test_wait_is_sent_again_after_noscript(pair: Any, master: redis.Redis, make_client: Any) -> None:
    """Scripts that were not loaded (a new master after a failover) are loaded and sent
    again, and so is the WAIT after them: it must count their writes."""
    client = make_client(pair[0].url, replicas=1)
    client.enqueue(**job(0))
    master.script_flush()
    before = waits(master)
    assert client.enqueue_many([job(1), job(2)]).enqueued == 2
    assert waits(master) - before == 2


# -- not confirmed -----------------------------------------------------------------------


def test_enqueue_many_unconfirmed_raises_with_positions(unconfirmed_client: Any, lone_conn: redis.Redis) -> None:
    jobs = [job(n) for n in range(6)]
    with pytest.raises(ReplicationError) as info:
        unconfirmed_client.enqueue_many(jobs, chunk_size=2, pipeline_depth=1)
    error = info.value
    assert (error.unconfirmed, error.resume_from, error.replicas, error.reached) == ([0, 1], 2, 1, 0)
    # The round was sent again while WAIT said no: answered from the reply cache, so the
    # jobs ran once (not reported as duplicates of themselves).
    assert (error.result.enqueued, error.result.duplicates, error.result.unconfirmed) == (2, [], [0, 1])
    assert waits(lone_conn) >= 2
    assert "send the unconfirmed ones again" in str(error)
    assert lone_conn.lrange(f"sharq_server:{QT}:q0", 0, -1) == [b"j0", b"j1"]
    assert sum(unconfirmed_client.metrics(QT, "q0").enqueue_counts.values()) == 2
    # What the caller does: send the unconfirmed jobs and the rest again.
    again = [jobs[i] for i in error.unconfirmed] + jobs[error.resume_from:]
    result = unconfirmed_client.enqueue_many(again, replicas=0)
    assert (result.enqueued, result.duplicates) == (4, [0, 1])


def test_enqueue_unconfirmed(unconfirmed_client: Any, lone_conn: redis.Redis) -> None:
    before = waits(lone_conn)
    with pytest.raises(ReplicationError) as info:
        unconfirmed_client.enqueue(**job(0))
    assert (info.value.result, info.value.unconfirmed) == (True, [0])
    assert lone_conn.llen(f"sharq_server:{QT}:q0") == 1
    # One call, one round: sent again (with its WAIT) while retry_for lasted, on every transport.
    assert waits(lone_conn) - before >= 2


def test_dequeue_unconfirmed_gives_the_jobs_it_took(unconfirmed_client: Any, lone_conn: redis.Redis) -> None:
    unconfirmed_client.enqueue_many([job(0), job(1)], replicas=0)
    with pytest.raises(ReplicationError) as info:
        unconfirmed_client.dequeue_many(QT, count=1)
    (taken,) = info.value.result
    assert taken.job_id == "j0" and info.value.unconfirmed == [0]
    # Sent again several times, it took one job, once.
    assert lone_conn.zrange(f"sharq_server:{QT}:active", 0, -1) == [b"q0:j0"]
    assert lone_conn.lrange(f"sharq_server:{QT}:q0", 0, -1) == [b"j1"]
    assert unconfirmed_client.finish_many([taken], replicas=0) == [True]


def test_finish_unconfirmed(unconfirmed_client: Any, lone_conn: redis.Redis) -> None:
    unconfirmed_client.enqueue_many([job(0), job(1)], replicas=0)
    with pytest.raises(ReplicationError) as info:
        unconfirmed_client.dequeue_many(QT, count=2)
    jobs = info.value.result
    with pytest.raises(ReplicationError) as info:
        unconfirmed_client.finish_many([jobs[0], ("rt", "q0", "nope")])
    assert (info.value.result, info.value.unconfirmed) == ([True, False], [0, 1])
    with pytest.raises(ReplicationError) as info:
        unconfirmed_client.finish(QT, "q0", "j1")
    assert info.value.result is True
    assert lone_conn.zcard(f"sharq_server:{QT}:active") == 0


@pytest.mark.parametrize(
    "settings",
    [{"replicas": -1}, {"replicas": True}, {"replicas": 1.0}, {"replica_timeout": 0}, {"replica_timeout": -1}],
)
def test_bad_replica_settings(settings: dict, redis_server_url: str) -> None:
    with pytest.raises(BadArgumentException):
        Client(redis_server_url, **settings)


def test_bad_replicas_per_call(client: Any) -> None:
    with pytest.raises(BadArgumentException, match="replicas"):
        client.enqueue_many([job(0)], replicas=-1)
    with pytest.raises(BadArgumentException, match="replicas"):
        client.finish_many([(QT, "q0", "j0")], replicas="1")
    assert client.settings.as_dict()["replicas"] == 0
