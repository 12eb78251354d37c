"""A producer and a consumer in threads, for failover tests and the failover benchmark:
what the producer had acknowledged, what the consumer was given and finished.

They take a Client or an AsyncClient behind async_facade.SyncFacade. Jobs carry a requeue
limit, so every delivery says how many requeues it had left: a job given twice with the
same count was given twice without its lease expiring in between (the failure the tests
look for); a lower count means it came back by lease expiry (allowed: at-least-once).
"""

import threading
import time
from collections import defaultdict
from typing import Any, Dict, List, Set

import redis

from sharq_fast import ReplicationError

QT = "ha"
REQUEUE_LIMIT = 50
QUEUES = 8


def job(n: int) -> Dict[str, Any]:
    return {"queue_type": QT, "queue_id": f"q{n % QUEUES}", "job_id": f"j{n}", "payload": {"n": n}, "interval": 0,
            "requeue_limit": REQUEUE_LIMIT}


class Producer(threading.Thread):
    """Enqueues jobs j0, j1, ... in batches, `pause` s apart, until stopped (a batch is sent
    to its end first), each batch until acknowledged (enqueue_many returned, or the job was
    not among the unconfirmed of a ReplicationError)."""

    def __init__(self, client: Any, batch: int = 20, pause: float = 0.0, replicas: int = 1) -> None:
        super().__init__(name="ha-producer", daemon=True)
        self.client = client
        self.batch = batch
        self.pause = pause
        self.replicas = replicas
        self.sent = 0
        self.acked: Set[str] = set()
        self.errors: List[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.send([job(n) for n in range(self.sent, self.sent + self.batch)])
            self.sent += self.batch
            if self.pause:
                time.sleep(self.pause)

    def send(self, pending: List[Dict[str, Any]]) -> None:
        while pending:
            try:
                self.client.enqueue_many(pending, chunk_size=10, replicas=self.replicas)
            except ReplicationError as exc:
                again = set(exc.unconfirmed) | set(range(exc.resume_from or len(pending), len(pending)))
                self.acked.update(j["job_id"] for i, j in enumerate(pending) if i not in again)
                pending = [pending[i] for i in sorted(again)]
                self.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            except (redis.ConnectionError, redis.TimeoutError) as exc:  # OutcomeUnknownError too
                self.errors.append(f"{type(exc).__name__}: {exc}")  # send them all again: those that landed are duplicates
                time.sleep(0.05)
                continue
            self.acked.update(j["job_id"] for j in pending)
            pending = []


class Consumer(threading.Thread):
    """Dequeues (waiting) and finishes until stopped; records every delivery."""

    def __init__(self, client: Any, count: int = 20, wait: float = 0.5) -> None:
        super().__init__(name="ha-consumer", daemon=True)
        self.client = client
        self.count = count
        self.wait = wait
        self.deliveries: Dict[str, List[int]] = defaultdict(list)  # job id -> requeues_remaining of each
        self.finished: Set[str] = set()
        self.errors: List[str] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                jobs = self.client.dequeue_many(QT, self.count, timeout=self.wait)
            except ReplicationError as exc:
                jobs = exc.result  # taken, not confirmed: still ours to finish
                self.errors.append(f"{type(exc).__name__}: {exc}")
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")  # jobs a lost dequeue took come back by lease expiry
                time.sleep(0.05)
                continue
            if not jobs:
                continue
            with self._lock:
                for j in jobs:
                    self.deliveries[j.job_id].append(j.requeues_remaining)
            try:
                done = self.client.finish_many(jobs)
            except ReplicationError as exc:
                done = exc.result
                self.errors.append(f"{type(exc).__name__}: {exc}")
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")  # unfinished: they come back by lease expiry
                continue
            with self._lock:
                self.finished.update(j.job_id for j, ok in zip(jobs, done) if ok)

    def delivered(self) -> Set[str]:
        with self._lock:
            return set(self.deliveries)

    def finished_ids(self) -> Set[str]:
        with self._lock:
            return set(self.finished)

    def given_twice_without_expiry(self) -> Dict[str, List[int]]:
        """Jobs given again with no fewer requeues left than before: not by lease expiry."""
        with self._lock:
            return {
                job_id: counts for job_id, counts in self.deliveries.items()
                if any(later >= earlier for earlier, later in zip(counts, counts[1:]))
            }


def wait_for(predicate: Any, what: str, timeout: float, *threads: Any) -> None:
    """Wait until predicate() is true; on timeout, fail with the threads' errors."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            errors = {thread.name: thread.errors[-5:] for thread in threads}
            raise AssertionError(f"timed out waiting for {what}; last errors: {errors}")
        time.sleep(0.05)
