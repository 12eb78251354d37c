"""An in-memory model of SharQ's semantics, as sharq_fast documents them: what
tests/test_model.py checks a real Redis against after every step.

It is written from sharq 1.3.0's behaviour (SHARQ_PROTOCOL.md, its Lua scripts) and the
differences README.md documents, job by job and in plain Python, so that it stays an
independent description and not a copy of the scripts:

- a queue (queue_type, queue_id) has a FIFO of queued job ids, a ready time (its score in
  the ready set, None when it is not ready), an interval (None when forgotten), a time
  keeper (the time of its last dequeue; None when it never had one or it expired) and,
  once it was left without queued jobs, the time from which it may forget its interval
  (README: sharq_fast forgets it only once no job of the queue can still be held);
- a live job (queued or active) has its payload, requeues remaining and, while active,
  its lease (expiry in ms);
- each operation is a sequence of SharQ's single-job operations at one instant `now`,
  except where sharq_fast documents otherwise (noted at each method);
- an orphan is a queued job id whose payload another writer deleted: no longer a job,
  only an entry in its queue (and a requeue count) until a dequeue drops it.

Every method returns what the client must answer. ``expected_keys`` renders the model as
the Redis keys (under the prefix) that SharQ's layout gives it, for an exact comparison.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple

QueueKey = Tuple[str, str]  # (queue_type, queue_id)
JobKey = Tuple[str, str, str]  # (queue_type, queue_id, job_id)


@dataclass
class Queue:
    jobs: List[str] = field(default_factory=list)  # queued job ids, front first
    ready_at: Optional[int] = None  # score in the ready set P:T
    interval: Optional[int] = None  # field T:Q of P:interval
    last_dequeue: Optional[int] = None  # the time keeper P:T:Q:time
    forget_at: Optional[int] = None  # score in P:.forget_intervals


@dataclass
class LiveJob:
    payload: Any
    requeues_remaining: int
    lease: Optional[int] = None  # score in P:T:active while active


@dataclass
class Delivered:
    """What a dequeue hands out (compared with sharq_fast's Job)."""

    queue_type: str
    queue_id: str
    job_id: str
    payload: Any
    requeues_remaining: int
    expires_at: int


class Model:
    """SharQ's state and operations; `expire` is job_expire_interval (ms), `default_limit`
    default_job_requeue_limit."""

    def __init__(self, expire: int, default_limit: int = -1) -> None:
        self.expire = expire
        self.default_limit = default_limit
        self.queues: Dict[QueueKey, Queue] = {}
        self.jobs: Dict[JobKey, LiveJob] = {}
        self.orphan_counts: Dict[JobKey, int] = {}  # requeue counts of orphans
        # History, for reporting and for tests that look at a job's fate.
        self.finished: List[JobKey] = []
        self.discarded: List[JobKey] = []
        self.cleared: List[JobKey] = []
        # Per-minute counters: (kind, queue or None, minute) -> count.
        self.counters: Dict[Tuple[str, Optional[QueueKey], int], int] = {}

    # -- helpers ------------------------------------------------------------------------

    def queue(self, queue_type: str, queue_id: str) -> Queue:
        return self.queues.setdefault((queue_type, queue_id), Queue())

    def _count(self, kind: str, queue: QueueKey, now: int, n: int = 1) -> None:
        minute = now // 60000 * 60000
        for scope in (None, queue):
            self.counters[(kind, scope, minute)] = self.counters.get((kind, scope, minute), 0) + n

    def active(self, key: JobKey) -> bool:
        job = self.jobs.get(key)
        return job is not None and job.lease is not None

    def _push_front(self, queue_type: str, queue_id: str, job_ids: List[str], now: int) -> None:
        """Requeue and release: back to the front of the queue; a queue that was empty
        becomes ready at its time keeper + interval (both must exist), else now."""
        q = self.queue(queue_type, queue_id)
        was_empty = not q.jobs
        q.jobs[:0] = job_ids
        if was_empty:
            if q.last_dequeue is not None and q.interval is not None:
                q.ready_at = q.last_dequeue + q.interval
            else:
                q.ready_at = now

    def _defer_forget(self, queue_type: str, queue_id: str, now: int) -> None:
        """A queue left without queued jobs by finish or fail may still have other jobs
        held: its interval is forgotten by a later requeue, from its time keeper +
        job_expire_interval on (now at the earliest)."""
        q = self.queues[(queue_type, queue_id)]
        if not q.jobs:
            held_until = None if q.last_dequeue is None else q.last_dequeue + self.expire
            q.forget_at = now if held_until is None or held_until <= now else held_until

    def _forget(self, queue: Queue, now: int) -> None:
        """The forget rule a requeue applies: a queue with queued jobs keeps its interval;
        one whose time keeper is missing or older than job_expire_interval forgets it;
        another waits for its time keeper + job_expire_interval."""
        if queue.jobs:
            queue.forget_at = None
        elif queue.last_dequeue is None or queue.last_dequeue + self.expire <= now:
            queue.interval = None
            queue.forget_at = None
        else:
            queue.forget_at = queue.last_dequeue + self.expire

    # -- enqueue ------------------------------------------------------------------------

    def enqueue(self, now: int, queue_type: str, queue_id: str, job_id: str, payload: Any, interval: int,
                requeue_limit: Optional[int] = None) -> bool:
        """SharQ's enqueue; a job id that is queued or active in its queue is refused
        (False) and changes nothing (README: duplicate job ids)."""
        key = (queue_type, queue_id, job_id)
        if key in self.jobs:
            return False
        q = self.queue(queue_type, queue_id)
        q.jobs.append(job_id)
        limit = self.default_limit if requeue_limit is None else requeue_limit
        self.jobs[key] = LiveJob(payload, limit)
        self.orphan_counts.pop(key, None)  # its count is overwritten
        q.interval = interval  # every enqueue overwrites the queue's interval
        if q.ready_at is None:
            # Ready now, or at the time keeper + the interval of the job that made the
            # queue ready.
            q.ready_at = now if q.last_dequeue is None else q.last_dequeue + interval
        self._count("enqueue", (queue_type, queue_id), now)
        return True

    def enqueue_many(self, now: int, jobs: List[Dict[str, Any]], bad_index: Optional[int] = None,
                     chunk_size: int = 100) -> Tuple[int, List[int]]:
        """(enqueued, duplicate positions) of enqueueing `jobs` one by one. With a bad job
        at `bad_index`, only the chunks of `chunk_size` before its chunk are enqueued."""
        if bad_index is not None:
            jobs = jobs[: bad_index // chunk_size * chunk_size]
        enqueued, duplicates = 0, []
        for position, job in enumerate(jobs):
            if self.enqueue(now, job.get("queue_type", "default"), job["queue_id"], job["job_id"],
                            job["payload"], job["interval"], job.get("requeue_limit")):
                enqueued += 1
            else:
                duplicates.append(position)
        return enqueued, duplicates

    # -- dequeue ------------------------------------------------------------------------

    def dequeue(self, now: int, queue_type: str) -> Optional[Delivered]:
        """SharQ's dequeue: the ready queue with the lowest (ready time, queue_id) whose
        ready time has come gives its first job. An orphan met on the way is dropped with
        its requeue count, and the next job is served instead (README: orphans)."""
        while True:
            ready = [(q.ready_at, queue_id) for (t, queue_id), q in self.queues.items()
                     if t == queue_type and q.ready_at is not None and q.ready_at <= now]
            if not ready:
                return None
            _, queue_id = min(ready)
            q = self.queues[(queue_type, queue_id)]
            job_id = q.jobs.pop(0)
            if (queue_type, queue_id, job_id) in self.jobs:
                break
            self.orphan_counts.pop((queue_type, queue_id, job_id), None)
            if not q.jobs:
                q.ready_at = None
        q.last_dequeue = now
        if q.jobs:
            q.ready_at = now + (q.interval or 0)  # no interval stored: now
        else:
            q.ready_at = None
        job = self.jobs[(queue_type, queue_id, job_id)]
        job.lease = now + self.expire
        self._count("dequeue", (queue_type, queue_id), now)
        return Delivered(queue_type, queue_id, job_id, job.payload, job.requeues_remaining, job.lease)

    def dequeue_many(self, now: int, queue_type: str, count: int) -> List[Delivered]:
        """What `count` dequeues at the same instant give (so a queue with an interval > 0
        gives at most one job, and interval-0 queues as many as they have)."""
        delivered = []
        for _ in range(count):
            job = self.dequeue(now, queue_type)
            if job is None:
                break
            delivered.append(job)
        return delivered

    # -- finish, extend, release --------------------------------------------------------

    def finish(self, now: int, queue_type: str, queue_id: str, job_id: str, lease: int = 0) -> bool:
        """SharQ's finish; with a lease (a Job), only while the job's lease is that one. A
        queue left without queued jobs keeps its interval until no job of it can still be
        held (SharQ deletes it at once: README)."""
        key = (queue_type, queue_id, job_id)
        job = self.jobs.get(key)
        if job is None or job.lease is None or (lease and job.lease != lease):
            return False
        del self.jobs[key]
        self._defer_forget(queue_type, queue_id, now)
        self.finished.append(key)
        return True

    def finish_many(self, now: int, refs: Iterable[Tuple[str, str, str, int]]) -> List[bool]:
        """finish() of each (queue_type, queue_id, job_id, lease) in turn."""
        return [self.finish(now, *ref) for ref in refs]

    def extend_many(self, now: int, refs: List[Tuple[str, str, str, int]], ms: int) -> List[int]:
        """New lease expiry per job (0: lease lost). All leases are checked before any is
        moved, so a job named twice is extended twice to the same expiry."""
        held = [self.jobs.get(ref[:3]) is not None and self.jobs[ref[:3]].lease == ref[3] for ref in refs]
        results = []
        for ref, holds in zip(refs, held):
            if holds:
                self.jobs[ref[:3]].lease = now + ms
            results.append(now + ms if holds else 0)
        return results

    def release_many(self, now: int, refs: List[Tuple[str, str, str, int]]) -> List[bool]:
        """Jobs still held go back to the front of their queues, each queue's in input
        order, without counting a requeue; a job named twice is released once."""
        held = [self.jobs.get(ref[:3]) is not None and self.jobs[ref[:3]].lease == ref[3] for ref in refs]
        results, seen = [], set()
        released: Dict[QueueKey, List[str]] = {}
        for ref, holds in zip(refs, held):
            key = ref[:3]
            if holds and key not in seen:
                seen.add(key)
                self.jobs[key].lease = None
                released.setdefault(key[:2], []).append(key[2])
                results.append(True)
            else:
                results.append(False)
        for (queue_type, queue_id), job_ids in released.items():
            self._push_front(queue_type, queue_id, job_ids, now)
        return results

    def fail_many(self, now: int, refs: List[Tuple[str, str, str, int]], backoff: int,
                  dead_letter: Optional[str]) -> List[str]:
        """Outcome per job ("retried", "discarded", "dead_lettered", "lost") of failing jobs
        still held (README: failed jobs). A failure counts as an expiry would: a job with
        requeues left goes back to the front of its queue now, one requeue counted (each
        queue's jobs in input order), or with a backoff only its lease moves to now +
        backoff (the requeue counts it later); a job out of requeues is discarded, and with
        a dead-letter queue type enqueued there (same ids and payload, interval 0, the
        default requeue limit; an existing job of that id is kept). A discarded job's queue
        left without queued jobs forgets its interval later, as after finish. A job named
        twice fails once."""
        held = [self.jobs.get(ref[:3]) is not None and self.jobs[ref[:3]].lease == ref[3] for ref in refs]
        results: List[str] = []
        seen = set()
        back: Dict[QueueKey, List[str]] = {}
        emptied: List[QueueKey] = []
        dead: List[Tuple[JobKey, Any]] = []
        for ref, holds in zip(refs, held):
            key = ref[:3]
            if not holds or key in seen:
                results.append("lost")
                continue
            seen.add(key)
            job = self.jobs[key]
            if job.requeues_remaining == 0:
                del self.jobs[key]
                self.discarded.append(key)
                emptied.append(key[:2])
                if dead_letter is not None:
                    dead.append((key, job.payload))
                results.append("dead_lettered" if dead_letter is not None else "discarded")
            elif backoff > 0:
                job.lease = now + backoff
                results.append("retried")
            else:
                if job.requeues_remaining > -1:
                    job.requeues_remaining -= 1
                job.lease = None
                back.setdefault(key[:2], []).append(key[2])
                results.append("retried")
        for (queue_type, queue_id), job_ids in back.items():
            self._push_front(queue_type, queue_id, job_ids, now)
        for queue_key in emptied:
            self._defer_forget(*queue_key, now)
        for key, payload in dead:
            self.enqueue(now, dead_letter, key[1], key[2], payload, 0)  # type: ignore[arg-type]
        return results

    # -- requeue ------------------------------------------------------------------------

    def requeue(self, now: int) -> Tuple[int, List[Delivered]]:
        """(requeued, discarded) of SharQ's requeue at `now`: expired jobs of each queue
        type in the active set's order (lease, then "queue_id:job_id") go back to the front
        of their queues one by one, but those whose requeues run out, which are discarded
        with their payloads (README: discarded jobs). Then the forget rule (_forget) runs on
        the queues of discarded jobs and on those whose forgetting is due."""
        requeued = 0
        discarded: List[Delivered] = []
        emptied = set()
        expired = sorted(
            (key[0], job.lease, f"{key[1]}:{key[2]}", key) for key, job in self.jobs.items()
            if job.lease is not None and job.lease <= now
        )
        for _, _, _, key in expired:
            job = self.jobs[key]
            if job.requeues_remaining > -1:
                job.requeues_remaining -= 1
                if job.requeues_remaining == -1:
                    del self.jobs[key]
                    self.discarded.append(key)
                    discarded.append(Delivered(*key, job.payload, -1, 0))
                    emptied.add(key[:2])
                    continue
            job.lease = None
            self._push_front(key[0], key[1], [key[2]], now)
            requeued += 1
        emptied.update(key for key, q in self.queues.items() if q.forget_at is not None and q.forget_at <= now)
        for queue_key in emptied:
            self._forget(self.queues[queue_key], now)
        return requeued, discarded

    # -- queues -------------------------------------------------------------------------

    def interval(self, queue_type: str, queue_id: str, interval: int) -> bool:
        """Set the interval of a queue that has one."""
        q = self.queues.get((queue_type, queue_id))
        if q is None or q.interval is None:
            return False
        q.interval = interval
        return True

    def clear_queue(self, queue_type: str, queue_id: str, purge_all: bool) -> bool:
        """Take the queue out of the ready set and delete its queued jobs, payloads and
        requeue counts included (README: clear_queue); with purge_all, when it was ready,
        its interval too. True when it was ready."""
        q = self.queue(queue_type, queue_id)
        was_ready = q.ready_at is not None
        q.ready_at = None
        if was_ready and purge_all:
            q.interval = None
        for job_id in q.jobs:
            key = (queue_type, queue_id, job_id)
            if key in self.jobs and not self.active(key):
                del self.jobs[key]
                self.cleared.append(key)
            self.orphan_counts.pop(key, None)
        q.jobs = []
        return was_ready

    def drop_time_keeper(self, queue_type: str, queue_id: str) -> None:
        """A time keeper's real-time TTL ran out."""
        self.queue(queue_type, queue_id).last_dequeue = None

    def orphan(self, key: JobKey) -> None:
        """Another writer deleted the payload of a queued job."""
        job = self.jobs.pop(key)
        assert job.lease is None, "only queued jobs are made orphans"
        self.orphan_counts[key] = job.requeues_remaining

    def queue_ids(self, queue_type: str) -> List[str]:
        """metrics(queue_type): ready queues and queues with active jobs."""
        ids = {queue_id for (t, queue_id), q in self.queues.items() if t == queue_type and q.ready_at is not None}
        ids.update(key[1] for key, job in self.jobs.items() if key[0] == queue_type and job.lease is not None)
        return sorted(ids)

    # -- the Redis layout ---------------------------------------------------------------

    def expected_keys(self) -> Dict[str, Tuple[str, Any, bool]]:
        """The keys under the prefix (without it and its ':'), as (type, value, has TTL),
        in SharQ's layout; payloads as objects (decode the stored ones to compare)."""
        keys: Dict[str, Tuple[str, Any, bool]] = {}

        def put(name: str, kind: str, member: str, value: Any) -> None:  # a hash field, a zset member
            keys.setdefault(name, (kind, {}, False))[1][member] = value

        ready_types, active_types = set(), set()
        for (queue_type, queue_id), q in self.queues.items():
            queue = f"{queue_type}:{queue_id}"
            if q.jobs:
                keys[queue] = ("list", list(q.jobs), False)
            if q.ready_at is not None:
                put(queue_type, "zset", queue_id, q.ready_at)
                ready_types.add(queue_type)
            if q.interval is not None:
                put("interval", "hash", queue, str(q.interval))
            if q.last_dequeue is not None:
                keys[f"{queue}:time"] = ("string", str(q.last_dequeue), True)
            if q.forget_at is not None:
                put(".forget_intervals", "zset", queue, q.forget_at)
        for (queue_type, queue_id, job_id), job in self.jobs.items():
            put("payload", "hash", f"{queue_type}:{queue_id}:{job_id}", job.payload)
            put(f"{queue_type}:{queue_id}:requeues_remaining", "hash", job_id, str(job.requeues_remaining))
            if job.lease is not None:
                put(f"{queue_type}:active", "zset", f"{queue_id}:{job_id}", job.lease)
                active_types.add(queue_type)
        for (queue_type, queue_id, job_id), count in self.orphan_counts.items():
            put(f"{queue_type}:{queue_id}:requeues_remaining", "hash", job_id, str(count))
        if ready_types:
            keys["ready:queue_type"] = ("set", ready_types, False)
        if active_types:
            keys["active:queue_type"] = ("set", active_types, False)
        for (kind, scope, minute), count in self.counters.items():
            name = f"{kind}_counter:{minute}" if scope is None else f"{scope[0]}:{scope[1]}:{kind}_counter:{minute}"
            keys[name] = ("string", str(count), True)
        return keys
