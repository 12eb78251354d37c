"""Interop with the real Plivo sharq 1.3.0, run in its own virtualenv on the same Redis:
jobs written by one are dequeued, finished and requeued by the other, and both leave the
same keys behind. Skipped when the sharq 1.3.0 virtualenv cannot be built (offline)."""

import json
import subprocess
import time
from urllib.parse import urlparse

import pytest

from redis_state import data_keys, dump
from sharq_fast import Client
from sharq_fast._peer import PeerUnavailable, ensure_peer_python, write_peer_config

PEER_SCRIPT = r"""
import json, sys
from sharq import SharQ
spec = json.load(sys.stdin)
queue = SharQ(spec["config"])
results = [getattr(queue, name)(**kwargs) for name, kwargs in spec["ops"]]
json.dump(results, sys.stdout, default=repr)
"""
EXPIRE = 200  # job_expire_interval of both sides, ms


@pytest.fixture(scope="session")
def peer_python():
    try:
        return ensure_peer_python()
    except PeerUnavailable as exc:
        pytest.skip(f"sharq 1.3.0 peer unavailable: {exc}")


@pytest.fixture
def peer(peer_python, redis_server_url, r, tmp_path):
    """peer(ops, prefix=...) runs SharQ 1.3.0 methods and returns their results."""
    url = urlparse(redis_server_url)

    def run(ops, prefix="sharq_server"):
        config = write_peer_config(
            tmp_path / f"{prefix}.conf",
            {"host": url.hostname, "port": url.port, "db": int(url.path.strip("/") or 0)},
            prefix,
            job_expire_interval=EXPIRE,
        )
        done = subprocess.run(
            [peer_python, "-I", "-c", PEER_SCRIPT],
            input=json.dumps({"config": config, "ops": ops}),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    return run


@pytest.fixture
def fast(redis_server_url, r):
    # Real time on both sides: sharq 1.3.0's clock cannot be injected.
    with Client(redis_server_url, job_expire_interval=EXPIRE) as client:
        yield client


def assert_only_counters_and_time_keepers_left(r):
    """After every job is finished, only keys that expire by themselves remain."""
    left = [key for key in data_keys(r, "sharq_server:*") if b"_counter:" not in key and not key.endswith(b":time")]
    assert left == []


def peer_enqueue(job_id, queue_id="q1", payload=None, interval=0, **extra):
    kwargs = dict(payload=payload if payload is not None else {"job": job_id}, interval=interval,
                  job_id=job_id, queue_id=queue_id, **extra)
    return ["enqueue", kwargs]


def test_sharq_enqueues_sharq_fast_dequeues_and_finishes(peer, fast, r):
    peer([peer_enqueue("j1"), peer_enqueue("j2", requeue_limit=3), peer_enqueue("j3", queue_id="q2", queue_type="sms")])
    jobs = [fast.dequeue(), fast.dequeue(), fast.dequeue("sms")]
    assert [(j.queue_id, j.job_id, j.payload, j.requeues_remaining) for j in jobs] == [
        ("q1", "j1", {"job": "j1"}, -1),
        ("q1", "j2", {"job": "j2"}, 3),
        ("q2", "j3", {"job": "j3"}, -1),
    ]
    assert fast.finish_many(jobs) == [True, True, True]
    # The queues' intervals go once no job of them can be held: a requeue pass after
    # job_expire_interval (README: intervals outlive held jobs; sharq 1.3.0 deletes them now).
    assert r.hlen("sharq_server:interval") == 2
    time.sleep(EXPIRE / 1000 + 0.05)
    fast.requeue()
    assert_only_counters_and_time_keepers_left(r)


def test_sharq_fast_enqueues_sharq_dequeues_and_finishes(peer, fast, r):
    fast.enqueue(queue_id="q1", job_id="j1", payload={"to": "+1555", "n": 1, "raw": b"\x00\xff"}, interval=0)
    fast.enqueue_many([{"queue_id": "q1", "job_id": f"m{i}", "payload": [i, "x"], "interval": 0} for i in range(3)])
    results = peer([["dequeue", {}] for _ in range(5)])
    assert [res["status"] for res in results] == ["success"] * 4 + ["failure"]
    assert results[0]["payload"] == {"to": "+1555", "n": 1, "raw": repr(b"\x00\xff")}
    assert [res["job_id"] for res in results[:4]] == ["j1", "m0", "m1", "m2"]
    assert results[1]["payload"] == [0, "x"] and results[1]["requeues_remaining"] == -1
    finished = peer([["finish", {"job_id": res["job_id"], "queue_id": "q1"}] for res in results[:4]])
    assert finished == [{"status": "success"}] * 4
    assert_only_counters_and_time_keepers_left(r)


def test_requeue_across_clients(peer, fast):
    peer([peer_enqueue("j1", requeue_limit=1)])
    assert fast.dequeue().requeues_remaining == 1
    time.sleep(EXPIRE / 1000 + 0.05)
    peer([["requeue", {}]])  # sharq 1.3.0 requeues a job sharq_fast dequeued
    job = fast.dequeue()
    assert (job.job_id, job.requeues_remaining) == ("j1", 0)
    time.sleep(EXPIRE / 1000 + 0.05)
    # sharq_fast discards it: the limit is spent.
    result = fast.requeue()
    assert result.requeued == 0 and [j.job_id for j in result.discarded] == ["j1"]
    assert peer([["dequeue", {}]]) == [{"status": "failure"}]


def test_sharq_fast_requeue_of_sharq_dequeued_job(peer, fast):
    fast.enqueue(queue_id="q1", job_id="j1", payload="p", interval=0)
    peer([["dequeue", {}]])
    time.sleep(EXPIRE / 1000 + 0.05)
    assert fast.requeue().requeued == 1
    assert peer([["dequeue", {}]])[0]["job_id"] == "j1"


def comparable(state):
    """A dump without what depends on the instant: scores, minutes, and the time keepers
    (they expire after job_expire_interval, so one side's may be gone already)."""
    out = {}
    for key, (kind, value, has_ttl) in state.items():
        if key.endswith(b":time"):
            continue
        parts = key.split(b":")
        if b"counter" in key:
            key = b":".join(parts[:-1])  # drop the minute
        if kind == "zset":
            value = sorted(value)
        out[key] = (kind, value, has_ttl)
    return out


def test_same_operations_leave_the_same_keys(peer, fast, redis_server_url, r):
    ops = [
        peer_enqueue("j1", requeue_limit=2),
        peer_enqueue("j2", interval=10),
        peer_enqueue("j3", queue_id="q2", queue_type="sms", payload=[1, 2.5, None, True]),
        ["dequeue", {}],
        ["dequeue", {"queue_type": "sms"}],
        ["finish", {"job_id": "j3", "queue_id": "q2", "queue_type": "sms"}],
        ["interval", {"interval": 50, "queue_id": "q1"}],
    ]
    peer(ops, prefix="peer")
    with Client(redis_server_url, key_prefix="mine", job_expire_interval=EXPIRE) as mine:
        for name, kwargs in ops:
            if name == "enqueue":
                mine.enqueue(**kwargs)
            elif name == "dequeue":
                mine.dequeue(kwargs.get("queue_type", "default"))
            elif name == "finish":
                mine.finish(kwargs.get("queue_type", "default"), kwargs["queue_id"], kwargs["job_id"])
            else:
                mine.interval("default", kwargs["queue_id"], kwargs["interval"])
    theirs, ours = comparable(dump(r, "peer:")), comparable(dump(r, "mine:"))
    # The one difference on purpose (README: intervals outlive held jobs): the finish of
    # sms:q2's last job does not delete the queue's interval but records it, to be
    # forgotten by a requeue pass once no job of it can be held.
    assert ours.pop(b".forget_intervals") == ("zset", [b"sms:q2"], False)
    kind, intervals, ttl = ours[b"interval"]
    assert intervals.pop(b"sms:q2") == b"0"
    assert ours == theirs


def test_enqueue_many_leaves_the_keys_sharq_enqueues_leave(peer, redis_server_url, r):
    """A batch is indistinguishable from SharQ's one-by-one enqueues (queues spread over
    chunks, two types, changing intervals and limits), and both sides then dequeue the
    same jobs in the same order."""
    jobs = [
        {
            "queue_type": f"t{n % 2}",
            "queue_id": f"q{n % 7}",
            "job_id": f"j{n}",
            "payload": {"n": n, "list": [n] * (n % 3)},
            "interval": 0 if n % 5 else (n * 37) % 500,
            "requeue_limit": (n % 4) - 1,
        }
        for n in range(120)
    ]
    peer([["enqueue", job] for job in jobs], prefix="peer")
    with Client(redis_server_url, key_prefix="mine") as mine:
        result = mine.enqueue_many(jobs, chunk_size=25)
        assert (result.enqueued, result.duplicates) == (120, [])
        assert comparable(dump(r, "mine:")) == comparable(dump(r, "peer:"))
    # Each side consumes the other's jobs: payloads intact, FIFO within each queue. (The
    # order across queues may differ: a batch makes its new queues ready at one instant,
    # where one-by-one enqueues each take their own.)
    taken = peer([["dequeue", {"queue_type": "t1"}] for _ in range(30)], prefix="mine")
    with Client(redis_server_url, key_prefix="peer") as theirs:
        taken += [
            {"queue_id": j.queue_id, "job_id": j.job_id, "payload": j.payload}
            for j in theirs.dequeue_many("t1", count=30)
        ]
    assert len(taken) == 60
    for job in taken:
        n = int(job["job_id"][1:])
        assert job["payload"] == {"n": n, "list": [n] * (n % 3)} and job["queue_id"] == f"q{n % 7}"
    for half in (taken[:30], taken[30:]):
        for queue_id in {job["queue_id"] for job in half}:
            numbers = [int(job["job_id"][1:]) for job in half if job["queue_id"] == queue_id]
            assert numbers == sorted(numbers)
