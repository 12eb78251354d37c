"""``Client``: the SharQ operations, single and batched, for threads.

The operations themselves are written once (``_ops``, ``_ops_queues``, public methods in
``_api``); this module gives them the sync transport, the background requeuer thread and
the client's lifetime.
"""

from typing import Any, Callable, Optional, Union

import redis

from . import _constants as C
from ._api import Operations
from ._connect import from_config, redis_from
from ._layout import transport_for
from ._rounds import Op
from ._settings import Clock, Settings
from .exceptions import BatchError  # noqa: F401  (importable from here, as before)
from .types import Job


class Client(Operations):
    """A SharQ client. ``Client("redis://localhost:6379/0")``, ``Client(redis.Redis(...))``
    or ``Client.from_config("sharq.conf")``; close it (or use it as a context manager).

    Thread-safe: each call takes a connection for the time of its round trip. Settings:
    `job_expire_interval` (ms a dequeued job may stay unfinished), `job_requeue_interval`
    (ms between requeuer runs), `default_job_requeue_limit` (-1: no limit), `clock` (ms
    since the epoch; inject one in tests), `wait_poll_interval` (s: how often a waiting
    dequeue looks for jobs that came without a wake-up), `retry_for` (s: how long a round
    whose connection failed is sent again before OutcomeUnknownError)."""

    def __init__(
        self,
        redis_or_url: Union[str, redis.Redis] = "redis://127.0.0.1:6379/0",
        *,
        key_prefix: str = C.DEFAULT_KEY_PREFIX,
        job_expire_interval: int = C.DEFAULT_JOB_EXPIRE_INTERVAL,
        job_requeue_interval: int = C.DEFAULT_JOB_REQUEUE_INTERVAL,
        default_job_requeue_limit: int = C.DEFAULT_JOB_REQUEUE_LIMIT,
        clock: Optional[Clock] = None,
        requeuer: bool = False,
        wait_poll_interval: float = C.DEFAULT_WAIT_POLL_INTERVAL,
        retry_for: float = C.DEFAULT_RETRY_FOR,
    ) -> None:
        self.settings = Settings(
            key_prefix=key_prefix,
            job_expire_interval=job_expire_interval,
            job_requeue_interval=job_requeue_interval,
            default_job_requeue_limit=default_job_requeue_limit,
            clock=clock,
            wait_poll_interval=wait_poll_interval,
            retry_for=retry_for,
        )
        self.redis, self._owns_redis = redis_from(redis_or_url, asyncio=False)
        self._transport = transport_for(self.redis, self.settings, asyncio=False)
        self._requeuer: Any = None
        if requeuer:
            self.start_requeuer()

    @classmethod
    def from_config(cls, path: str, **overrides: Any) -> "Client":
        """A client for the Redis and settings of a SharQ config file (sharq.conf);
        keyword arguments override the file's settings."""
        redis_client, settings = from_config(path, asyncio=False)
        client = cls(redis_client, **{**settings, **overrides})
        client._owns_redis = True
        return client

    def _run(self, op: Op[Any]) -> Any:
        return self._transport.run(op)

    # -- background requeuer and lifetime -------------------------------------------------

    def start_requeuer(self, on_discard: Optional[Callable[[Job], None]] = None) -> None:
        """Run requeue() in a daemon thread while this process holds the requeue lock of
        the key prefix (one requeuer at a time across processes): every
        job_requeue_interval, sooner when a lease expires before. `on_discard` is called
        with each job discarded for running out of requeues."""
        from .requeuer import Requeuer

        if self._requeuer is not None and self._requeuer.is_alive():
            return
        self._requeuer = Requeuer(self._transport, on_discard=on_discard)
        self._requeuer.start()

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
            self.redis.close()

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._transport.closed

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
