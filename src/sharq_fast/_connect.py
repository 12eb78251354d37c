"""Making the redis-py client a sharq_fast client talks through: from a URL, from a SharQ
config file, or an existing redis-py client (sync or asyncio)."""

from typing import Any, Dict, Tuple

import redis
import redis.asyncio

from .config import SharqConfig, read_config
from .exceptions import BadArgumentException

_SCHEMES = ("redis://", "rediss://", "unix://")


def redis_from(target: Any, asyncio: bool) -> Tuple[Any, bool]:
    """(the redis-py client for `target`, whether the caller owns it): a URL makes a new
    client the caller closes; a redis-py client of the right kind is used as it is."""
    kind = redis.asyncio.Redis if asyncio else redis.Redis
    if isinstance(target, str):
        if not target.startswith(_SCHEMES):
            raise BadArgumentException(
                f"unsupported Redis URL {target!r}: use redis://, rediss:// or unix://"
            )
        try:
            return kind.from_url(target), True
        except ValueError as exc:  # redis-py's words for a malformed URL
            raise BadArgumentException(f"bad Redis URL {target!r}: {exc}") from None
    if isinstance(target, kind):
        return target, False
    name = "AsyncClient" if asyncio else "Client"
    raise BadArgumentException(
        f"{name}() takes a Redis URL (redis://, rediss://, unix://) or a {kind.__module__}.Redis, "
        f"not {type(target).__name__}"
    )


def from_config(path: str, asyncio: bool) -> Tuple[Any, Dict[str, Any]]:
    """(a new redis-py client, the client settings) of a SharQ config file."""
    config: SharqConfig = read_config(path)
    kind = redis.asyncio.Redis if asyncio else redis.Redis
    settings = {
        "key_prefix": config.key_prefix,
        "job_expire_interval": config.job_expire_interval,
        "job_requeue_interval": config.job_requeue_interval,
        "default_job_requeue_limit": config.default_job_requeue_limit,
    }
    return kind(**config.redis), settings
