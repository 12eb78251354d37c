"""The one place the HTTP server gets its Redis client from.

The app talks to Redis only through an object with AsyncClient's interface (coroutines
enqueue, dequeue(timeout=), finish, interval, metrics, clear_queue, queue_length,
deep_status, enqueue_many, dequeue_many(timeout=), finish_many; start_requeuer(); close()).
"""

from typing import Any, Dict

from .settings import ServerSettings


def make_client(settings: ServerSettings) -> Any:
    """A new asynchronous SharQ client for `settings` (its Redis and queue settings)."""
    # TEMPORARY: replace these two lines with `from ..aio import AsyncClient` once it exists.
    from ._sync_adapter import SyncAdapter

    AsyncClient = SyncAdapter
    overrides: Dict[str, Any] = {}
    if settings.key_prefix:
        overrides["key_prefix"] = settings.key_prefix
    if settings.job_expire_interval:
        overrides["job_expire_interval"] = settings.job_expire_interval
    if settings.config:
        return AsyncClient.from_config(settings.config, **overrides)
    return AsyncClient(settings.url or "redis://127.0.0.1:6379/0", **overrides)
