"""Model-based test: long random sequences of the public operations on a real Redis,
checked after every step against tests/model.py, an independent description of SharQ's
semantics (queued, active, finished, discarded and cleared jobs; each queue's ready time,
interval and time keeper; requeues remaining; the per-minute counters).

Every rule calls the client (both cores, both transports: conftest's fixtures) and the
model, and compares the answers; after every rule the whole keyspace under the prefix is
compared with the keys the model renders in SharQ's layout. The clock is injected, and
job_expire_interval is long so that the time keepers (PSETEX'd in Redis' real time) do not
expire during a run; their expiry is a rule of its own (drop_time_keepers).

Steps: SHARQ_FAST_MODEL_EXAMPLES examples (default 10) of up to SHARQ_FAST_MODEL_STEPS
rules (default 30) per parametrization; SHARQ_FAST_MODEL_SHRINK=0 reports a failure
without shrinking it (long runs: shrinking a sequence of Redis calls takes minutes).
"""

import os
from typing import Any, Dict, List, Optional, Tuple

import msgpack
import pytest
import redis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from sharq_fast import BadArgumentException, Job
from sharq_fast import _constants as C

from conftest import minute_now
from model import Delivered, Model
from redis_state import is_reply_cache

P = "sharq_server"
EXPIRE = 600_000  # long: time keepers live this long in Redis' real time
EXAMPLES = int(os.environ.get("SHARQ_FAST_MODEL_EXAMPLES", "10"))
STEPS = int(os.environ.get("SHARQ_FAST_MODEL_STEPS", "30"))
SHRINK = os.environ.get("SHARQ_FAST_MODEL_SHRINK", "1") != "0"

QUEUE_TYPES = ["t1", "t2"]
QUEUE_IDS = ["q1", "q2", "q3"]
JOB_IDS = [f"j{i}" for i in range(6)]  # few ids: duplicates are common

payloads = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=6) | st.binary(max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=5,
)
intervals = st.sampled_from([0, 0, 1, 500, 1000, 3000])
queue_types = st.sampled_from(QUEUE_TYPES)
queue_ids = st.sampled_from(QUEUE_IDS)


@st.composite
def job_requests(draw: Any) -> Dict[str, Any]:
    request = {
        "queue_type": draw(queue_types),
        "queue_id": draw(queue_ids),
        "job_id": draw(st.sampled_from(JOB_IDS)),
        "payload": draw(payloads),
        "interval": draw(intervals),
    }
    limit = draw(st.sampled_from([None, -1, 0, 0, 1, 2]))
    if limit is not None or draw(st.booleans()):
        request["requeue_limit"] = limit
    return request


#: Ways to make a job request bad (each raises BadArgumentException before it is sent).
BAD_JOBS = [
    lambda job: {**job, "job_id": "bad id"},
    lambda job: {**job, "queue_id": ""},
    lambda job: {**job, "queue_id": "active"},  # reserved: SharQ's active set
    lambda job: {**job, "interval": -1},
    lambda job: {**job, "interval": True},
    lambda job: {**job, "interval": 2**53},
    lambda job: {**job, "requeue_limit": -2},
    lambda job: {**job, "payload": object()},
    lambda job: {key: value for key, value in job.items() if key != "payload"},
    lambda job: {**job, "priority": 1},
    lambda job: 42,
]


def read_keys(r: redis.Redis) -> Dict[str, Tuple[str, Any, bool]]:
    """The keys under P: as the model renders them (payloads decoded, scores as ints)."""
    keys = [key for key in r.scan_iter(match=f"{P}:*", count=1000) if not is_reply_cache(key)]
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
    kinds = [kind.decode() for kind in pipe.execute()]
    readers = {
        "string": pipe.get,
        "list": lambda key: pipe.lrange(key, 0, -1),
        "hash": pipe.hgetall,
        "set": pipe.smembers,
        "zset": lambda key: pipe.zrange(key, 0, -1, withscores=True),
    }
    kept = [(key, kind) for key, kind in zip(keys, kinds) if kind in readers]  # "none": expired since SCAN
    for key, kind in kept:
        readers[kind](key)
        pipe.pttl(key)
    replies = pipe.execute()
    state = {}
    for n, (raw, kind) in enumerate(kept):
        value, ttl = replies[2 * n], replies[2 * n + 1]
        key = raw.decode()[len(P) + 1 :]
        if kind == "string":
            value = value.decode()
        elif kind == "list":
            value = [item.decode() for item in value]
        elif kind == "hash":
            value = {
                field.decode(): msgpack.unpackb(data, raw=False) if key == "payload" else data.decode()
                for field, data in value.items()
            }
        elif kind == "set":
            value = {member.decode() for member in value}
        else:
            value = {member.decode(): int(score) for member, score in value}
        state[key] = (kind, value, ttl > 0)
    return state


def as_delivered(job: Job) -> Delivered:
    return Delivered(job.queue_type, job.queue_id, job.job_id, job.payload, job.requeues_remaining, job.expires_at)


def machine_for(client: Any, r: redis.Redis, clock: Any, monkeypatch: pytest.MonkeyPatch) -> type:
    """The state machine class, on this test's client, Redis and clock."""

    class SharqMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            r.flushdb()
            clock.now = minute_now()  # counters expire at real times (EXPIREAT)
            self.model = Model(EXPIRE)
            self.handed: List[Job] = []  # every Job given out (dequeued, or discarded)

        # -- picking jobs -----------------------------------------------------------------

        def pick_refs(self, data: Any, kinds: List[str], max_size: int = 4) -> Tuple[List[Any], List[Tuple]]:
            """References to jobs (mostly ones handed out, fresh or stale) for the client,
            and the same as (queue_type, queue_id, job_id, lease) for the model (lease 0:
            by ids; -1: a Job that holds no lease, which nothing may act on)."""
            refs, model_refs = [], []
            for _ in range(data.draw(st.integers(1, max_size), label="jobs")):
                kind = data.draw(st.sampled_from(kinds), label="kind")
                if not self.handed or data.draw(st.integers(0, 5), label="unknown") == 0:
                    ids = (data.draw(queue_types), data.draw(queue_ids), data.draw(st.sampled_from(JOB_IDS)))
                    job = Job(*ids, payload=None, requeues_remaining=-1, expires_at=clock.now + EXPIRE)
                else:
                    job = data.draw(st.sampled_from(self.handed), label="handed")
                ids = (job.queue_type, job.queue_id, job.job_id)
                if kind == "job":
                    refs.append(job)
                    model_refs.append((*ids, job.expires_at or -1))
                elif kind == "ids":
                    refs.append(ids)
                    model_refs.append((*ids, 0))
                else:  # an explicit lease: the Job's, or one that is off by one
                    lease = max(1, job.expires_at + data.draw(st.sampled_from([0, 0, 1]), label="off"))
                    refs.append((*ids, lease))
                    model_refs.append((*ids, lease))
            return refs, model_refs

        # -- rules ------------------------------------------------------------------------

        @rule(job=job_requests())
        def enqueue(self, job: Dict[str, Any]) -> None:
            expected = self.model.enqueue(clock.now, **job)
            assert client.enqueue(**job) == expected

        @rule(jobs=st.lists(job_requests(), max_size=8), chunk_size=st.integers(1, 4), depth=st.integers(1, 3),
              data=st.data())
        def enqueue_many(self, jobs: List[Dict[str, Any]], chunk_size: int, depth: int, data: Any) -> None:
            bad_index = None
            if jobs and data.draw(st.integers(0, 3), label="bad") == 0:
                bad_index = data.draw(st.integers(0, len(jobs) - 1), label="bad_index")
                jobs = list(jobs)
                jobs[bad_index] = data.draw(st.sampled_from(BAD_JOBS), label="bad_job")(jobs[bad_index])
            enqueued, duplicates = self.model.enqueue_many(clock.now, jobs, bad_index, chunk_size)
            if bad_index is None:
                result = client.enqueue_many(iter(jobs), chunk_size=chunk_size, pipeline_depth=depth)
                assert (result.enqueued, result.duplicates) == (enqueued, duplicates)
            else:
                with pytest.raises(BadArgumentException) as info:
                    client.enqueue_many(iter(jobs), chunk_size=chunk_size, pipeline_depth=depth)
                assert (info.value.index, info.value.enqueued) == (bad_index, enqueued)

        @rule(queue_type=queue_types, timeout=st.sampled_from([None, None, 0, 0.01]))
        def dequeue(self, queue_type: str, timeout: Optional[float]) -> None:
            """(A timeout waits on the wake-up channel; the injected clock stands still.)"""
            expected = self.model.dequeue(clock.now, queue_type)
            job = client.dequeue(queue_type, timeout=timeout)
            assert (job and as_delivered(job)) == expected
            if job is not None:
                self.handed.append(job)

        @rule(queue_type=queue_types, count=st.integers(1, 8), per_call=st.sampled_from([1, 3, 100]))
        def dequeue_many(self, queue_type: str, count: int, per_call: int) -> None:
            """`count` jobs, `per_call` a script call (all in one round trip)."""
            monkeypatch.setattr(C, "MAX_DEQUEUE_PER_CALL", per_call)
            expected = self.model.dequeue_many(clock.now, queue_type, count)
            jobs = client.dequeue_many(queue_type, count)
            assert [as_delivered(job) for job in jobs] == expected
            self.handed.extend(jobs)

        @rule(data=st.data())
        def finish(self, data: Any) -> None:
            refs, model_refs = self.pick_refs(data, ["ids"], max_size=1)
            assert client.finish(*refs[0]) == self.model.finish(clock.now, *model_refs[0])

        @rule(data=st.data(), chunk_size=st.integers(1, 3))
        def finish_many(self, data: Any, chunk_size: int) -> None:
            refs, model_refs = self.pick_refs(data, ["job", "job", "ids", "lease"])
            assert client.finish_many(refs, chunk_size=chunk_size) == self.model.finish_many(clock.now, model_refs)

        @rule(data=st.data(), ms=st.sampled_from([1, 1000, EXPIRE, 2 * EXPIRE]))
        def extend(self, data: Any, ms: int) -> None:
            refs, model_refs = self.pick_refs(data, ["job"])
            if any(ref[3] == -1 for ref in model_refs):
                with pytest.raises(BadArgumentException, match="lease"):
                    client.extend_many(refs, ms)
                return
            before = [job.expires_at for job in refs]
            expected = self.model.extend_many(clock.now, model_refs, ms)
            assert client.extend_many(refs, ms) == [bool(expiry) for expiry in expected]
            # A Job's expires_at follows its lease; a Job that lost it keeps its old one.
            for job, old, expiry in zip(refs, before, expected):
                assert job.expires_at == (expiry or old)

        @rule(data=st.data())
        def release(self, data: Any) -> None:
            refs, model_refs = self.pick_refs(data, ["job", "job", "lease"])
            if any(ref[3] == -1 for ref in model_refs):
                with pytest.raises(BadArgumentException, match="lease"):
                    client.release_many(refs)
                return
            expected = self.model.release_many(clock.now, model_refs)
            if len(refs) == 1 and isinstance(refs[0], Job):
                assert client.release(refs[0]) == expected[0]
            else:
                assert client.release_many(refs) == expected

        @rule(data=st.data(), backoff=st.sampled_from([0, 0, 1, 1000, EXPIRE]),
              dead_letter=st.sampled_from([None, None, "dl", "t2"]))
        def fail(self, data: Any, backoff: int, dead_letter: Optional[str]) -> None:
            held = [job for job in self.handed if self.model.active((job.queue_type, job.queue_id, job.job_id))
                    and self.model.jobs[(job.queue_type, job.queue_id, job.job_id)].lease == job.expires_at]
            if held and data.draw(st.integers(0, 3), label="held") > 0:
                # Mostly jobs still held: what a worker fails (pick_refs mostly finds stale ones).
                refs = data.draw(st.lists(st.sampled_from(held), min_size=1, max_size=4), label="held jobs")
                model_refs = [(job.queue_type, job.queue_id, job.job_id, job.expires_at) for job in refs]
            else:
                refs, model_refs = self.pick_refs(data, ["job", "job", "lease"])
            if any(ref[3] == -1 or ref[0] == dead_letter for ref in model_refs):
                # No lease, or the dead-letter type is a job's own: refused.
                with pytest.raises(BadArgumentException):
                    client.fail_many(refs, backoff_ms=backoff, dead_letter=dead_letter)
                return
            expected = self.model.fail_many(clock.now, model_refs, backoff, dead_letter)
            if len(refs) == 1 and isinstance(refs[0], Job):
                got = [client.fail(refs[0], backoff_ms=backoff, dead_letter=dead_letter)]
            else:
                got = client.fail_many(refs, backoff_ms=backoff, dead_letter=dead_letter)
            assert [outcome.value for outcome in got] == expected

        @rule(queue_type=queue_types, queue_id=queue_ids, value=intervals)
        def interval(self, queue_type: str, queue_id: str, value: int) -> None:
            assert client.interval(queue_type, queue_id, value) == self.model.interval(queue_type, queue_id, value)

        @rule(ms=st.sampled_from([0, 1, 499, 500, 1000, 2999]) | st.integers(0, 5000))
        def advance(self, ms: int) -> None:
            clock.advance(ms)

        @rule(ms=st.sampled_from([0, 1000, EXPIRE - 1, EXPIRE, EXPIRE + 3000]), batch=st.integers(1, 3))
        def requeue(self, ms: int, batch: int) -> None:
            """Requeue after moving the clock, in steps of `batch` jobs (a few calls)."""
            clock.advance(ms)
            requeued, discarded = self.model.requeue(clock.now)
            monkeypatch.setattr(C, "REQUEUE_BATCH", batch)
            result = client.requeue()
            assert (result.requeued, [as_delivered(job) for job in result.discarded]) == (requeued, discarded)
            self.handed.extend(result.discarded)

        @rule(queue_type=queue_types, queue_id=queue_ids, purge_all=st.booleans(), batch=st.sampled_from([1, 2, 500]))
        def clear_queue(self, queue_type: str, queue_id: str, purge_all: bool, batch: int) -> None:
            """Clear a queue, its jobs purged `batch` at a time."""
            monkeypatch.setattr(C, "PURGE_BATCH", batch)
            expected = self.model.clear_queue(queue_type, queue_id, purge_all)
            assert client.clear_queue(queue_type, queue_id, purge_all) == expected

        @rule(queues=st.lists(st.tuples(queue_types, queue_ids), min_size=1, unique=True))
        def drop_time_keepers(self, queues: List[Tuple[str, str]]) -> None:
            """What Redis does when a time keeper's TTL (real time) runs out."""
            r.delete(*[f"{P}:{queue_type}:{queue_id}:time" for queue_type, queue_id in queues])
            for queue in queues:
                self.model.drop_time_keeper(*queue)

        @rule(data=st.data())
        def make_orphan(self, data: Any) -> None:
            """Another writer deletes a queued job's payload (a purge race, an old client)."""
            queued = sorted(key for key, job in self.model.jobs.items() if job.lease is None)
            if queued:
                key = data.draw(st.sampled_from(queued), label="orphan")
                r.hdel(f"{P}:payload", ":".join(key))
                self.model.orphan(key)

        @rule(queue_type=queue_types, queue_id=queue_ids)
        def read_metrics(self, queue_type: str, queue_id: str) -> None:
            assert client.metrics(queue_type).queue_ids == self.model.queue_ids(queue_type)
            queue = self.model.queues.get((queue_type, queue_id))
            assert client.queue_length(queue_type, queue_id) == (len(queue.jobs) if queue else 0)
            minutes = [clock.now // 60000 * 60000 - i * 60000 for i in range(10)]
            counts = client.metrics(queue_type, queue_id)
            for kind, got in (("enqueue", counts.enqueue_counts), ("dequeue", counts.dequeue_counts)):
                assert got == {m: self.model.counters.get((kind, (queue_type, queue_id), m), 0) for m in minutes}
            types = {t for (t, _), q in self.model.queues.items() if q.ready_at is not None}
            types.update(key[0] for key, job in self.model.jobs.items() if job.lease is not None)
            assert client.metrics().queue_types == sorted(types)

        # -- after every step -------------------------------------------------------------

        @invariant()
        def redis_matches_model(self) -> None:
            assert read_keys(r) == self.model.expected_keys()

    return SharqMachine


def test_operations_match_the_model(make_client: Any, r: redis.Redis, clock: Any, monkeypatch: pytest.MonkeyPatch):
    """Random sequences of every public operation agree with the model, answer by answer
    and key by key (both cores, both transports)."""
    client = make_client(job_expire_interval=EXPIRE)
    machine = machine_for(client, r, clock, monkeypatch)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            phases=list(Phase) if SHRINK else [Phase.explicit, Phase.reuse, Phase.generate],
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


def test_a_discarded_job_finishes_nothing(client: Any, clock: Any) -> None:
    """Found by the model test: a Job discarded by requeue (expires_at 0, no lease) given
    to finish_many finished a later delivery of the same job id, by its ids."""
    client.enqueue(queue_id="q1", job_id="j1", payload=1, interval=0, requeue_limit=0)
    client.dequeue()
    clock.advance(C.DEFAULT_JOB_EXPIRE_INTERVAL)
    (discarded,) = client.requeue().discarded
    assert discarded.expires_at == 0
    client.enqueue(queue_id="q1", job_id="j1", payload=2, interval=0)
    again = client.dequeue()
    assert client.finish_many([discarded]) == [False]
    with pytest.raises(BadArgumentException, match="lease"):
        client.extend(discarded, 1000)
    assert client.finish_many([again]) == [True]


def test_a_dropped_orphan_leaves_no_requeue_count(client: Any, r: redis.Redis) -> None:
    """Found by the model test: dequeue dropped an orphan (a queued job id whose payload
    another writer deleted) but kept its requeue count, for good."""
    client.enqueue(queue_id="q1", job_id="j1", payload=1, interval=0, requeue_limit=3)
    client.enqueue(queue_id="q1", job_id="j2", payload=2, interval=0, requeue_limit=3)
    r.hdel(f"{P}:payload", "default:q1:j1")
    assert client.dequeue().job_id == "j2"
    assert r.hgetall(f"{P}:default:q1:requeues_remaining") == {b"j2": b"3"}
