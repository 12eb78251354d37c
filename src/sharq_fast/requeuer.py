"""The background requeuer: go-sharq's RunRequeue, for one process at a time per prefix."""

import logging
import threading
import uuid
from typing import TYPE_CHECKING, Callable, Optional

from redis.exceptions import RedisError

from ._constants import REQUEUE_LOCK_KEY
from .types import Job

if TYPE_CHECKING:
    from .client import Client

log = logging.getLogger("sharq_fast.requeuer")

# Extend the lock only if we still hold it; release it only if we hold it.
_EXTEND = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class RequeueLock:
    """A Redis lock on the requeue of one key prefix, held by one token at a time and
    expiring by itself if its holder dies."""

    def __init__(self, client: "Client", ttl_ms: int) -> None:
        self._redis = client.redis
        self.key = REQUEUE_LOCK_KEY.format(prefix=client.key_prefix)
        self.token = uuid.uuid4().hex
        self.ttl_ms = ttl_ms

    def acquire(self) -> bool:
        """Take the lock, or extend it if we hold it. True while we hold it."""
        if self._redis.eval(_EXTEND, 1, self.key, self.token, self.ttl_ms):
            return True
        return bool(self._redis.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def release(self) -> None:
        """Give the lock up, if we hold it."""
        self._redis.eval(_RELEASE, 1, self.key, self.token)


class Requeuer(threading.Thread):
    """Runs ``client.requeue()`` every job_requeue_interval while holding the prefix's
    requeue lock. Redis errors are logged and retried at the next tick."""

    def __init__(self, client: "Client", on_discard: Optional[Callable[[Job], None]] = None) -> None:
        super().__init__(name=f"sharq-requeuer-{client.key_prefix}", daemon=True)
        self.client = client
        self.on_discard = on_discard
        self.interval_s = client.job_requeue_interval / 1000
        # Three missed ticks (at least 5 s) before another process may take over.
        self.lock = RequeueLock(client, max(3 * client.job_requeue_interval, 5000))
        self._stopping = threading.Event()
        self.runs = 0

    def run(self) -> None:
        while not self._stopping.is_set():
            self.tick()
            self._stopping.wait(self.interval_s)

    def tick(self) -> bool:
        """One round: requeue if we hold the lock. True if a requeue ran."""
        try:
            if not self.lock.acquire():
                return False
            result = self.client.requeue()
        except RedisError as exc:
            log.warning("requeue failed, retrying in %.3fs: %s", self.interval_s, exc)
            return False
        except Exception:  # never let one bad round kill the thread
            log.exception("requeue failed unexpectedly, retrying in %.3fs", self.interval_s)
            return False
        self.runs += 1
        if result.requeued or result.discarded:
            log.info("requeued %d jobs, discarded %d", result.requeued, len(result.discarded))
        for job in result.discarded:
            log.warning("discarded %s/%s/%s: requeue limit reached", job.queue_type, job.queue_id, job.job_id)
            if self.on_discard is not None:
                try:
                    self.on_discard(job)
                except Exception:
                    log.exception("on_discard failed for job %s", job.job_id)
        return True

    def stop(self, timeout: Optional[float] = 5.0) -> None:
        """Stop after the current round and release the lock."""
        self._stopping.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)
        try:
            self.lock.release()
        except RedisError as exc:
            log.warning("could not release the requeue lock (it expires by itself): %s", exc)
