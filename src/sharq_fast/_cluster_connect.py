"""Redis Cluster clients from ``redis+cluster://`` URLs and sharq.conf (``clustered = true``).

``redis+cluster://[user:password@]host:port[,host:port...]`` names startup nodes (any
live node will do: redis-py reads the slot map from it); ``rediss+cluster://`` uses TLS.
"""

from typing import Any, Dict, List, Tuple
from urllib.parse import unquote

import redis.asyncio.cluster
import redis.cluster

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


def cluster_client(url: str, asyncio: bool, **extra: Any) -> Any:
    """A new redis-py cluster client (sync or asyncio) for a ``redis+cluster://`` URL."""
    nodes, kwargs = parse_cluster_url(url)
    return cluster_from_nodes(nodes, asyncio, **kwargs, **extra)


def cluster_from_nodes(nodes: List[Tuple[str, int]], asyncio: bool, **kwargs: Any) -> Any:
    """A new redis-py cluster client on these startup nodes."""
    if asyncio:
        startup = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in nodes]
        return redis.asyncio.cluster.RedisCluster(startup_nodes=startup, **kwargs)
    return redis.cluster.RedisCluster(startup_nodes=[redis.cluster.ClusterNode(h, p) for h, p in nodes], **kwargs)
