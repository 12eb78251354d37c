"""``Client``: the SharQ operations, single and batched, for threads.

The operations themselves are written once (``_ops``, ``_ops_queues``, public methods in
``_api``); this module gives them the sync transport, the background requeuer thread and
the client's lifetime.
"""

from typing import Any, Optional

from ._api import Operations
from ._connect import close_owned
from .exceptions import BatchError  # noqa: F401  (importable from here, as before)
from .requeuer import Requeuer


class Client(Operations):
    """A SharQ client. ``Client("redis://localhost:6379/0")``, through Redis Sentinel
    ``Client("redis+sentinel://host1:26379,host2:26379/mymaster/0")``,
    ``Client(redis.Redis(...))`` (or a ``Sentinel(...).master_for(...)`` client) or
    ``Client.from_config("sharq.conf")``; close it (or use it as a context manager).

    Thread-safe: each call takes a connection for the time of its round trip. Settings:
    `job_expire_interval` (ms a dequeued job may stay unfinished), `job_requeue_interval`
    (ms between requeuer runs), `default_job_requeue_limit` (-1: no limit), `clock` (ms
    since the epoch; inject one in tests), `wait_poll_interval` (s: how often a waiting
    dequeue looks for jobs that came without a wake-up), `retry_for` (s: how long a round
    whose connection failed is sent again before OutcomeUnknownError; to ride through a
    Sentinel failover, longer than the failover takes), `replicas` (enqueues, dequeues and
    finishes wait until that many replicas have them: WAIT, see ReplicationError),
    `replica_timeout` (s: how long they wait; keep it below socket_timeout); `requeuer=True`
    starts the background requeuer (start_requeuer)."""

    _REQUEUER = Requeuer

    # -- background requeuer and lifetime -------------------------------------------------

    def stop_requeuer(self, timeout: Optional[float] = 5.0) -> None:
        """Stop the background requeuer, if running, and release its lock."""
        if self._requeuer is not None:
            self._requeuer.stop(timeout)
            self._requeuer = None

    def close(self) -> None:
        """Stop the requeuer, refuse new calls (ClientClosedError), let calls in flight end
        (up to 5 s), and close the Redis connection if this client created it."""
        self.stop_requeuer()
        self._transport.close()
        if self._owns_redis:
            close_owned(self.redis)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
