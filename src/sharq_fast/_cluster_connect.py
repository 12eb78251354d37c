"""Redis Cluster clients from ``redis+cluster://`` URLs and sharq.conf (``clustered = true``).

``redis+cluster://[user:password@]host:port[,host:port...][?partitions=N]`` names startup
nodes (any live node will do: redis-py reads the slot map from it) and, optionally, the
partitions of new queue types; ``rediss+cluster://`` uses TLS.
"""

from typing import Any, Dict, List, Tuple
from urllib.parse import unquote

import redis.asyncio.cluster
import redis.cluster

from ._cluster_keys import MAX_PARTITIONS
from .exceptions import BadArgumentException


def cluster_kind(asyncio: bool) -> type:
    """The redis-py cluster client class of the sync or asyncio flavour."""
    return redis.asyncio.cluster.RedisCluster if asyncio else redis.cluster.RedisCluster


def parse_cluster_url(url: str) -> Tuple[List[Tuple[str, int]], Dict[str, Any]]:
    """(startup nodes, connection keyword arguments) of a ``redis+cluster://`` URL."""
    scheme, _, rest = url.partition("://")
    rest = rest.split("/", 1)[0].split("?", 1)[0]
    kwargs: Dict[str, Any] = {}
    if "@" in rest:
        userinfo, rest = rest.rsplit("@", 1)
        user, _, password = userinfo.partition(":")
        if password:
            kwargs["password"] = unquote(password)
            if user:
                kwargs["username"] = unquote(user)
        elif user:
            kwargs["password"] = unquote(user)
    if scheme == "rediss+cluster":
        kwargs["ssl"] = True
    nodes = []
    for item in rest.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise BadArgumentException(
                f"bad Redis Cluster URL {url!r}: expected redis+cluster://host:port[,host:port...]"
            )
        nodes.append((host.strip("[]"), int(port)))
    return nodes, kwargs


#: Attribute of a redis-py cluster client that sets the partitions of the queue types a
#: sharq_fast client on it registers first (default ``_cluster_keys.DEFAULT_PARTITIONS``);
#: ``?partitions=N`` in a ``redis+cluster://`` URL sets it.
PARTITIONS_ATTRIBUTE = "sharq_fast_partitions"


def url_partitions(url: str) -> Any:
    """The ``partitions=N`` option of a cluster URL (None when absent)."""
    query = url.partition("?")[2]
    for item in query.split("&"):
        name, _, value = item.partition("=")
        if name == "partitions":
            if not value.isdigit() or not 1 <= int(value) <= MAX_PARTITIONS:
                raise BadArgumentException(f"partitions={value!r} in {url!r}: give a number from 1 to {MAX_PARTITIONS}")
            return int(value)
    return None


def cluster_client(url: str, asyncio: bool, **extra: Any) -> Any:
    """A new redis-py cluster client (sync or asyncio) for a ``redis+cluster://`` URL."""
    nodes, kwargs = parse_cluster_url(url)
    partitions = url_partitions(url)
    client = cluster_from_nodes(nodes, asyncio, **kwargs, **extra)
    if partitions is not None:
        setattr(client, PARTITIONS_ATTRIBUTE, partitions)
    return client


def cluster_from_nodes(nodes: List[Tuple[str, int]], asyncio: bool, **kwargs: Any) -> Any:
    """A new redis-py cluster client on these startup nodes."""
    if asyncio:
        startup = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in nodes]
        return redis.asyncio.cluster.RedisCluster(startup_nodes=startup, **kwargs)
    return redis.cluster.RedisCluster(startup_nodes=[redis.cluster.ClusterNode(h, p) for h, p in nodes], **kwargs)
