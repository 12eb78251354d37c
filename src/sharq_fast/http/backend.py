"""The one place the HTTP server gets its Redis client from.

The app talks to Redis only through an object with AsyncClient's interface (coroutines
enqueue, dequeue(timeout=), finish, interval, metrics, clear_queue, queue_length,
deep_status, enqueue_many, dequeue_many(timeout=), finish_many; start_requeuer(),
stop_requeuer(), close()), plus, where the client allows it, ``length_dequeuer`` below.
"""

from typing import Any, Awaitable, Callable, Dict, Optional, Tuple

from .._ops import dequeue_waiting
from .._rounds import Op
from .._settings import Settings
from .._transport_aio import AsyncTransport
from ..aio import AsyncClient
from ..types import Job
from .settings import ServerSettings

#: dequeue(queue_type, timeout) -> (job or None, length of the job's queue after it).
LengthDequeue = Callable[[str, Optional[float]], Awaitable[Tuple[Optional[Job], int]]]


def make_client(settings: ServerSettings) -> Any:
    """A new asynchronous SharQ client for `settings` (its Redis and queue settings)."""
    overrides: Dict[str, Any] = {"retry_for": settings.retry_for}
    if settings.key_prefix:
        overrides["key_prefix"] = settings.key_prefix
    if settings.job_expire_interval:
        overrides["job_expire_interval"] = settings.job_expire_interval
    if settings.config:
        return AsyncClient.from_config(settings.config, **overrides)
    return AsyncClient(settings.url or "redis://127.0.0.1:6379/0", **overrides)


def length_dequeuer(client: Any) -> Optional[LengthDequeue]:
    """For an AsyncClient on one Redis node: a coroutine function that takes a job and
    tells the length of its queue right after, in ONE script call (sharq-server answers a
    dequeue with that length: ``dequeue_with_length``). None for any other client: the app
    then asks dequeue, then queue_length."""
    transport = getattr(client, "_transport", None)
    settings = getattr(client, "settings", None)
    if type(transport) is not AsyncTransport:
        return None

    def dequeue(queue_type: str, timeout: Optional[float] = None) -> Awaitable[Tuple[Optional[Job], int]]:
        return transport.run(dequeue_with_length(settings, queue_type, timeout))

    return dequeue


def dequeue_with_length(s: Settings, queue_type: Any, timeout: Any) -> Op[Tuple[Optional[Job], int]]:
    """The operation of length_dequeuer: ``_ops.dequeue`` (one job; with a timeout, waiting
    as it does), with dequeue.lua's ARGV[4] set, so that its reply also holds the length of
    the job's queue after it."""
    jobs, length = yield from dequeue_waiting(s, queue_type, 1, timeout, with_length=True)
    return (jobs[0] if jobs else None), length
