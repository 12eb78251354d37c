"""The one place the HTTP server gets its Redis client from.

The app talks to Redis only through an object with AsyncClient's interface (coroutines
enqueue, dequeue(timeout=), finish, interval, metrics, clear_queue, queue_length,
deep_status, enqueue_many, dequeue_many(timeout=), finish_many; start_requeuer(),
stop_requeuer(), close()), plus, where the client allows it, ``length_dequeuer`` below.
"""

import time
from typing import Any, Awaitable, Callable, Dict, Optional, Tuple

from .. import _core
from .._ops import checked, queue_type_arg, replied_evalsha, wake_channel
from .._rounds import Op, Round, Wait, Watch
from .._settings import Settings, seconds
from .._transport_aio import AsyncTransport
from ..aio import AsyncClient
from ..exceptions import OutcomeUnknownError
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
    dequeue with that length: ``dequeue_with_length``). None for any other client (or one
    that must wait for replicas): the app then asks dequeue, then queue_length."""
    transport = getattr(client, "_transport", None)
    settings = getattr(client, "settings", None)
    if type(transport) is not AsyncTransport or getattr(settings, "replicas", None):
        return None

    def dequeue(queue_type: str, timeout: Optional[float] = None) -> Awaitable[Tuple[Optional[Job], int]]:
        return transport.run(dequeue_with_length(settings, queue_type, timeout))

    return dequeue


def dequeue_with_length(s: Settings, queue_type: Any, timeout: Any) -> Op[Tuple[Optional[Job], int]]:
    """The operation of length_dequeuer: ``_ops.dequeue`` (one job; with a timeout, waiting
    for a wake-up, the next ready time or the poll interval, as it does), with dequeue.lua's
    ARGV[4] set, so that its reply also holds the length of the job's queue after it."""
    queue_type_arg(queue_type)
    timeout = seconds(timeout, "timeout", allow_none=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    channel = wake_channel(s, queue_type)
    seen = (yield Watch(channel)) if timeout else 0
    while True:
        now = s.clock()
        call, token = replied_evalsha(s, "dequeue", (s.key_prefix, queue_type), (now, s.job_expire_interval, 1, 1))
        try:
            (reply,) = yield Round((call,))
        except OutcomeUnknownError as exc:
            raise OutcomeUnknownError(
                f"{exc}; dequeue: if Redis ran it, the job it took is active and comes back "
                "by requeue after job_expire_interval"
            ) from exc
        s.tokens.read((token,))
        reply = checked(reply)  # [next ready time, lease expiry, length, job fields...]
        if len(reply) > 3:
            return _core.core.parse_jobs(reply, queue_type, 3, reply[1])[0], reply[2]
        left = 0.0 if deadline is None else deadline - time.monotonic()
        if left <= 0:
            return None, 0
        pause = min(left, s.wait_poll_interval)
        if reply[0] >= 0:  # a queue is rate-limited until then (or gave only orphans)
            pause = min(pause, max((reply[0] - now) / 1000, 0.001))
        seen = yield Wait(channel, seen, pause)
