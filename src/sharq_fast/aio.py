"""``AsyncClient``: the SharQ operations for asyncio, the same as Client's.

Every public method of ``_api.Operations`` becomes a coroutine function here; the
operation behind it is the very one Client runs, driven by the asyncio transport, whose
auto-pipelining writes the calls that many tasks make in one loop turn together.
"""

import functools
from typing import Any, Callable, Optional, Union

import redis.asyncio

from . import _constants as C
from ._api import OPERATIONS, Operations
from ._connect import from_config, redis_from
from ._layout import transport_for
from ._rounds import Op
from ._settings import Clock, Settings
from .types import Job


def _coroutine(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def call(self: "AsyncClient", *args: Any, **kwargs: Any) -> Any:
        return await method(self, *args, **kwargs)

    return call


def _coroutine_methods(cls: type) -> type:
    for name in OPERATIONS:
        setattr(cls, name, _coroutine(getattr(Operations, name)))
    return cls


@_coroutine_methods
class AsyncClient(Operations):
    """A SharQ client for asyncio: ``AsyncClient("redis://localhost:6379/0")``,
    ``AsyncClient(redis.asyncio.Redis(...))`` or ``AsyncClient.from_config("sharq.conf")``;
    ``async with`` it, or ``await close()``. The methods and settings are Client's, as
    coroutines (see Client); ``enqueue_many`` also takes async iterables. Any number of
    tasks of one event loop may share it."""

    def __init__(
        self,
        redis_or_url: Union[str, redis.asyncio.Redis] = "redis://127.0.0.1:6379/0",
        *,
        key_prefix: str = C.DEFAULT_KEY_PREFIX,
        job_expire_interval: int = C.DEFAULT_JOB_EXPIRE_INTERVAL,
        job_requeue_interval: int = C.DEFAULT_JOB_REQUEUE_INTERVAL,
        default_job_requeue_limit: int = C.DEFAULT_JOB_REQUEUE_LIMIT,
        clock: Optional[Clock] = None,
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
        self.redis, self._owns_redis = redis_from(redis_or_url, asyncio=True)
        self._transport = transport_for(self.redis, self.settings, asyncio=True)
        self._requeuer: Any = None

    @classmethod
    def from_config(cls, path: str, **overrides: Any) -> "AsyncClient":
        """A client for the Redis and settings of a SharQ config file (sharq.conf);
        keyword arguments override the file's settings."""
        redis_client, settings = from_config(path, asyncio=True)
        client = cls(redis_client, **{**settings, **overrides})
        client._owns_redis = True
        return client

    def _run(self, op: Op[Any]) -> Any:
        return self._transport.run(op)

    def start_requeuer(self, on_discard: Optional[Callable[[Job], None]] = None) -> None:
        """Run requeue() in a task of the running loop while this process holds the
        requeue lock of the key prefix (see Client.start_requeuer)."""
        from .requeuer import AsyncRequeuer

        if self._requeuer is not None and self._requeuer.is_alive():
            return
        self._requeuer = AsyncRequeuer(self._transport, on_discard=on_discard)
        self._requeuer.start()

    async def stop_requeuer(self) -> None:
        """Stop the background requeuer, if running, and release its lock."""
        if self._requeuer is not None:
            requeuer, self._requeuer = self._requeuer, None
            await requeuer.stop()

    async def close(self) -> None:
        """Stop the requeuer, refuse new calls, close the connections (and the Redis
        client if this client created it)."""
        await self.stop_requeuer()
        await self._transport.close()
        if self._owns_redis:
            await self.redis.aclose()

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._transport.closed

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()
