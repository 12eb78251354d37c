"""Making the redis-py client a sharq_fast client talks through: from a URL, from a SharQ
config file, or an existing redis-py client (sync or asyncio)."""

from typing import Any, Dict, Tuple

import redis
import redis.asyncio

from . import _sentinel
from .config import SharqConfig, read_config
from .exceptions import BadArgumentException

_SCHEMES = ("redis://", "rediss://", "unix://")
_NAMES = "redis://, rediss://, unix://, redis+sentinel://, redis+cluster://"


def redis_from(target: Any, asyncio: bool) -> Tuple[Any, bool]:
    """(the redis-py client for `target`, whether the caller owns it): a URL makes a new
    client the caller closes; a redis-py client of the right kind is used as it is."""
    clustered = _cluster_from(target, asyncio)
    if clustered is not None:
        return clustered
    kind = redis.asyncio.Redis if asyncio else redis.Redis
    if isinstance(target, str):
        if target.startswith(_sentinel.SCHEME):
            return _sentinel.master_client(_sentinel.parse_sentinel_url(target), asyncio), True
        if not target.startswith(_SCHEMES):
            raise BadArgumentException(f"unsupported Redis URL {target!r}: use {_NAMES}")
        try:
            return kind.from_url(target), True
        except ValueError as exc:  # redis-py's words for a malformed URL
            raise BadArgumentException(f"bad Redis URL {target!r}: {exc}") from None
    if isinstance(target, kind):
        return target, False
    name = "AsyncClient" if asyncio else "Client"
    raise BadArgumentException(
        f"{name}() takes a Redis URL ({_NAMES}) or a {kind.__module__}.Redis, not {type(target).__name__}"
    )


def redis_for_config(config: SharqConfig, asyncio: bool) -> Any:
    """A new redis-py client for the Redis a SharQ config describes (a cluster client for
    ``clustered = true``, a Sentinel-managed one for ``sentinels``)."""
    if config.clustered:
        from ._cluster_connect import cluster_from_nodes

        kwargs = dict(config.redis)
        node = (kwargs.pop("host"), kwargs.pop("port"))
        return cluster_from_nodes([node], asyncio, **{k: v for k, v in kwargs.items() if v is not None})
    if config.sentinel is not None:
        return _sentinel.master_client(config.sentinel, asyncio)
    kind = redis.asyncio.Redis if asyncio else redis.Redis
    return kind(**config.redis)


def from_config(path: str, asyncio: bool) -> Tuple[Any, Dict[str, Any]]:
    """(a new redis-py client, the client settings) of a SharQ config file."""
    config: SharqConfig = read_config(path)
    settings = {
        "key_prefix": config.key_prefix,
        "job_expire_interval": config.job_expire_interval,
        "job_requeue_interval": config.job_requeue_interval,
        "default_job_requeue_limit": config.default_job_requeue_limit,
    }
    return redis_for_config(config, asyncio), settings


def close_owned(redis_client: Any) -> None:
    """Close a sync redis-py client this package made (and its sentinel connections)."""
    redis_client.close()
    _sentinel.close_sentinels(redis_client)


async def aclose_owned(redis_client: Any) -> None:
    """Close an asyncio redis-py client this package made (and its sentinel connections)."""
    await redis_client.aclose()
    await _sentinel.aclose_sentinels(redis_client)


# -- Redis Cluster (the cluster layout, docs/cluster-layout.md) ----------------------------

_CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")


def _cluster_from(target: Any, asyncio: bool) -> Any:
    """(a cluster client, owned) for a ``redis+cluster://`` URL, (target, not owned) for a
    redis-py cluster client of the right kind, else None."""
    from ._cluster_connect import cluster_client, cluster_kind

    if isinstance(target, str) and target.startswith(_CLUSTER_SCHEMES):
        return cluster_client(target, asyncio), True
    if isinstance(target, cluster_kind(asyncio)):
        return target, False
    return None
