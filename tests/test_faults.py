"""Lost replies, stalls and connection trouble: every call answers the truth or says that
its outcome is unknown, and no job is lost (the retry rule: sharq_fast/_retry.py).

A FaultProxy between the client and a private Redis forwards a request, lets Redis run
it, and cuts the connection instead of passing the reply on. Every test runs on both
transports and both cores.
"""

import threading
import time
from typing import Any, Callable, Dict, List

import pytest
import redis

from sharq_fast import Client, ClientClosedError, FailOutcome, OutcomeUnknownError
from sharq_fast.types import EnqueueResult, RequeueResult

P = "sharq_server"
EXPIRE = 1000


def job(job_id: str, queue_id: str = "q1", **kw: Any) -> Dict[str, Any]:
    return {"queue_id": queue_id, "job_id": job_id, "payload": {"id": job_id}, "interval": 0, **kw}


@pytest.fixture
def direct(debug_redis) -> Any:
    """redis-py straight to the Redis behind the proxy (no faults)."""
    conn = debug_redis.client()
    yield conn
    conn.close()


@pytest.fixture
def proxied(make_client, fault_proxy):
    """A client whose every byte goes through the fault proxy, connected already (a
    connection's handshake replies are not what the tests cut)."""
    client = make_client(url=fault_proxy.url, retry_for=5)
    client.deep_status()
    return client


def cut_reply_of(proxy: Any, call: Callable[[], Any]) -> Any:
    """Run `call` with the reply to its next request cut off: Redis runs it, the client
    never reads the answer and must get it again without running it twice."""
    cuts = proxy.cuts
    proxy.cut_next_reply()
    result = call()
    assert proxy.cuts == cuts + 1, "the proxy cut nothing: the test tests nothing"
    return result


# -- a lost reply gives the true answer, for every operation -------------------------------


def test_enqueue(proxied, fault_proxy, direct):
    assert cut_reply_of(fault_proxy, lambda: proxied.enqueue(**job("j1"))) is True
    assert direct.lrange(f"{P}:default:q1", 0, -1) == [b"j1"]
    assert proxied.enqueue(**job("j1")) is False  # a real duplicate is still one


def test_enqueue_many(proxied, fault_proxy, direct):
    result = cut_reply_of(fault_proxy, lambda: proxied.enqueue_many([job(f"j{i}") for i in range(5)]))
    assert result == EnqueueResult(enqueued=5, duplicates=[])
    assert direct.llen(f"{P}:default:q1") == 5


def test_dequeue(proxied, fault_proxy, direct):
    proxied.enqueue(**job("j1", requeue_limit=0))
    got = cut_reply_of(fault_proxy, proxied.dequeue)
    assert got is not None and got.job_id == "j1" and got.expires_at > 0
    assert direct.zrange(f"{P}:default:active", 0, -1) == [b"q1:j1"]
    assert proxied.finish_many([got]) == [True]  # the lease the client got is the real one


def test_dequeue_many(proxied, fault_proxy):
    proxied.enqueue_many([job(f"j{i}") for i in range(3)])
    got = cut_reply_of(fault_proxy, lambda: proxied.dequeue_many(count=10))
    assert [j.job_id for j in got] == ["j0", "j1", "j2"]
    assert proxied.dequeue_many(count=10) == []


def test_finish_and_finish_many(proxied, fault_proxy):
    proxied.enqueue_many([job(f"j{i}") for i in range(3)])
    first, *rest = proxied.dequeue_many(count=3)
    assert cut_reply_of(fault_proxy, lambda: proxied.finish("default", "q1", first.job_id)) is True
    assert cut_reply_of(fault_proxy, lambda: proxied.finish_many(rest)) == [True, True]
    assert proxied.finish_many([first, *rest]) == [False] * 3


def test_requeue_hands_over_its_discards(proxied, fault_proxy, clock):
    proxied.enqueue_many([job("gone", requeue_limit=0), job("back", queue_id="q2")])
    proxied.dequeue_many(count=2)
    clock.advance(EXPIRE)
    result = cut_reply_of(fault_proxy, proxied.requeue)
    assert result.requeued == 1 and [j.job_id for j in result.discarded] == ["gone"]
    assert result.discarded[0].payload == {"id": "gone"}
    assert proxied.requeue() == RequeueResult(requeued=0, discarded=[])


def test_clear_queue_purges_once(proxied, fault_proxy, direct):
    proxied.enqueue_many([job(f"j{i}") for i in range(4)])
    assert cut_reply_of(fault_proxy, lambda: proxied.clear_queue("default", "q1", purge_all=True)) is True
    assert not direct.exists(f"{P}:payload", f"{P}:.purging", f"{P}:default:q1", f"{P}:interval")
    assert [k for k in direct.keys(f"{P}:.purging*")] == []


def test_interval_extend_release(proxied, fault_proxy, clock):
    proxied.enqueue(**job("j1"))
    assert cut_reply_of(fault_proxy, lambda: proxied.interval("default", "q1", 50)) is True
    got = proxied.dequeue()
    before = got.expires_at
    clock.advance(10)
    assert cut_reply_of(fault_proxy, lambda: proxied.extend(got, 5000)) is True
    assert got.expires_at == before + 10 + 5000 - EXPIRE
    assert cut_reply_of(fault_proxy, lambda: proxied.release(got)) is True
    assert proxied.dequeue() is None  # back, but the interval (50 ms since its dequeue) holds
    clock.advance(40)
    assert proxied.dequeue().job_id == "j1"


def test_fail_many(proxied, fault_proxy, direct):
    proxied.enqueue_many([job("back", requeue_limit=2), job("dead", queue_id="q2", requeue_limit=0)])
    taken = sorted(proxied.dequeue_many(count=2), key=lambda j: j.job_id)
    outcomes = cut_reply_of(fault_proxy, lambda: proxied.fail_many(taken, dead_letter="dl"))
    assert outcomes == [FailOutcome.RETRIED, FailOutcome.DEAD_LETTERED]
    # Ran once: one requeue counted, one dead-letter copy.
    assert direct.hget(f"{P}:default:q1:requeues_remaining", "back") == b"1"
    assert direct.lrange(f"{P}:dl:q2", 0, -1) == [b"dead"]
    assert proxied.fail_many(taken) == [FailOutcome.LOST] * 2


def test_reads_are_read_again(proxied, fault_proxy):
    proxied.enqueue(**job("j1"))
    assert cut_reply_of(fault_proxy, lambda: proxied.queue_length("default", "q1")) == 1
    assert cut_reply_of(fault_proxy, lambda: proxied.metrics("default")).queue_ids == ["q1"]


# -- stalls and dead ends --------------------------------------------------------------


def test_redis_stall_longer_than_the_socket_timeout(make_client, debug_redis, direct):
    """A redis-py socket timeout (0.3 s) during a 0.6 s stall: the batch is resent with its
    tokens and every job is reported as it really went (none as a false duplicate)."""
    client = make_client(url=debug_redis.url + "?socket_timeout=0.3", retry_for=5)
    client.deep_status()
    stall = threading.Thread(target=lambda: debug_redis.client().execute_command("DEBUG", "SLEEP", "0.6"))
    stall.start()
    time.sleep(0.05)
    result = client.enqueue_many([job(f"j{i}", queue_id=f"q{i % 7}") for i in range(1000)])
    stall.join()
    assert result == EnqueueResult(enqueued=1000, duplicates=[])
    assert direct.hlen(f"{P}:payload") == 1000


def test_no_reply_within_retry_for_raises_outcome_unknown(make_client, fault_proxy, direct):
    client = make_client(url=fault_proxy.url + "?socket_timeout=0.2", retry_for=0.5)
    client.enqueue_many([job("a0")])
    fault_proxy.blackhole(True)
    jobs = [job(f"b{i}") for i in range(5)]
    with pytest.raises(OutcomeUnknownError) as info:
        client.enqueue_many(jobs)
    assert info.value.resume_from == 0 and info.value.enqueued == 0
    fault_proxy.blackhole(False)  # the held request may now run: resending is still safe
    again = client.enqueue_many(jobs[info.value.resume_from :])
    assert again.enqueued + len(again.duplicates) == 5
    assert direct.llen(f"{P}:default:q1") == 6


def test_call_that_never_reached_redis_is_a_connection_error(make_client, fault_proxy, direct):
    fault_proxy.refuse(True)
    client = make_client(url=fault_proxy.url, retry_for=0.2)
    with pytest.raises(redis.ConnectionError) as info:
        client.enqueue(**job("j1"))
    assert not isinstance(info.value, OutcomeUnknownError)
    assert not direct.exists(f"{P}:default:q1")


def test_a_redis_restart_between_calls_is_survived(make_client, debug_redis):
    client = make_client(url=debug_redis.url)
    assert client.enqueue(**job("j1"))
    debug_redis.restart()  # no persistence: the job is gone, the scripts too
    assert client.enqueue(**job("j2")) is True  # reconnects, loads the scripts (NOSCRIPT)
    assert client.dequeue().job_id == "j2"


# -- threads, pools, close (the sync client) ----------------------------------------------


def test_bounded_pool_and_requeuer(redis_server_url, r, clock):
    """Two connections are enough for the caller and the requeuer: no thread keeps one."""
    pool = redis.ConnectionPool.from_url(redis_server_url, max_connections=2)
    client = Client(redis.Redis(connection_pool=pool), clock=clock, job_requeue_interval=10)
    try:
        client.start_requeuer()
        for i in range(20):
            client.enqueue(**job(f"j{i}"))
        assert len(client.dequeue_many(count=20)) == 20
        clock.advance(EXPIRE)
        deadline = time.monotonic() + 5
        while client.queue_length("default", "q1") < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.queue_length("default", "q1") == 20
        assert client._requeuer.runs > 0
    finally:
        client.close()


def test_close_while_threads_are_mid_call(redis_server_url, r):
    """Calls in flight end with their own answer or an error; none reads another's
    reply; calls after close raise ClientClosedError."""
    client = Client(redis_server_url)
    wrong: List[str] = []
    errors: List[BaseException] = []

    def work(n: int) -> None:
        queue_type = f"t{n}"
        i = 0
        try:
            while True:  # until the client is closed under it
                i += 1
                if not client.enqueue(queue_type=queue_type, queue_id="q", job_id=f"j{i}", payload=i, interval=0):
                    wrong.append(f"{queue_type}: fresh j{i} refused")
                got = client.dequeue(queue_type)
                if got is None or got.queue_type != queue_type or got.payload != i:
                    wrong.append(f"{queue_type}: dequeued {got} after j{i}")
        except (ClientClosedError, OutcomeUnknownError, redis.ConnectionError) as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    client.close()
    for thread in threads:
        thread.join(10)
    assert wrong == []
    assert len(errors) == 8 and all(isinstance(e, ClientClosedError) for e in errors), errors
    with pytest.raises(ClientClosedError):
        client.enqueue(**job("late"))
