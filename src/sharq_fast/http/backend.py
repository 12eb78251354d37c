"""The one place the HTTP server gets its Redis client from.

The app talks to Redis only through an object with AsyncClient's interface (coroutines
enqueue, dequeue(timeout=), finish, interval, metrics, clear_queue, queue_length,
deep_status, enqueue_many, dequeue_many(timeout=), finish_many; start_requeuer(); close()).
"""

from typing import Any, Dict

from ..aio import AsyncClient
from .settings import ServerSettings


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
