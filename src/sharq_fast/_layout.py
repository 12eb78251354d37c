"""The one place where a client's data layout is chosen, from the Redis it is given.

- a ``redis.Redis`` (or ``redis.asyncio.Redis``): the single-node, SharQ-compatible layout
  (SHARQ_PROTOCOL.md), its operations ``_ops`` and ``_ops_queues``, and the sync or
  asyncio transport;
- a ``redis.cluster.RedisCluster`` (or its asyncio twin): the cluster layout
  (docs/cluster-layout.md), its operations ``_ops_cluster`` and ``_ops_cluster_queues``,
  its scripts (lua/cluster/) and the cluster transports.

The public methods (``_api``) and the requeuer run ``settings.ops.<operation>``, so Client
and AsyncClient share every operation of either layout.
"""

from types import SimpleNamespace
from typing import Any

import redis.asyncio.cluster
import redis.cluster

from . import _ops, _ops_cluster, _ops_cluster_queues, _ops_queues
from ._settings import Settings

#: The operations every layout provides, by name.
OPERATION_NAMES = (
    "enqueue", "enqueue_many", "dequeue", "dequeue_many", "finish", "finish_many", "extend_many",
    "release_many", "fail_many", "requeue", "requeue_pass", "metrics", "interval", "clear_queue", "queue_length",
    "deep_status", "lock", "load_scripts",
)


def _namespace(*modules: Any) -> SimpleNamespace:
    found = {}
    for name in OPERATION_NAMES:
        owner = next(module for module in modules if hasattr(module, name))
        found[name] = getattr(owner, name)
    return SimpleNamespace(**found)


SINGLE_NODE = _namespace(_ops, _ops_queues)
CLUSTER = _namespace(_ops_cluster, _ops_cluster_queues)


def is_cluster(redis_client: Any) -> bool:
    """True for a redis-py cluster client (sync or asyncio)."""
    return isinstance(redis_client, (redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster))


def transport_for(redis_client: Any, settings: Settings, asyncio: bool) -> Any:
    """Choose the layout of `redis_client`: set ``settings.ops`` (and, on a cluster, the
    cluster scripts and state) and return the transport that drives those operations."""
    if is_cluster(redis_client):
        if settings.replicas:
            from .exceptions import BadArgumentException

            raise BadArgumentException(
                "replicas= (WAIT after writes) is not supported on the cluster layout yet", field="replicas"
            )
        from ._cluster_keys import ClusterState
        from .scripts import load_cluster_scripts

        from ._cluster_connect import PARTITIONS_ATTRIBUTE
        from ._cluster_keys import DEFAULT_PARTITIONS

        partitions = getattr(redis_client, PARTITIONS_ATTRIBUTE, DEFAULT_PARTITIONS)
        settings.cluster = ClusterState(settings.key_prefix, partitions)
        settings.scripts = load_cluster_scripts()
        settings.sha = {name: script.sha for name, script in settings.scripts.items()}
        settings.ops = CLUSTER
        if asyncio:
            from ._transport_cluster_aio import AsyncClusterTransport

            return AsyncClusterTransport(redis_client, settings)
        from ._transport_cluster import ClusterTransport

        return ClusterTransport(redis_client, settings)
    settings.ops = SINGLE_NODE
    if asyncio:
        from ._transport_aio import AsyncTransport

        return AsyncTransport(redis_client, settings)
    from ._transport import SyncTransport

    return SyncTransport(redis_client, settings)
