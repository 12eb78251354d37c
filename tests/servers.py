"""Pytest fixtures (a plugin: ``pytest_plugins = ["servers"]`` in conftest.py) that start
real Redis deployments on free ports and stop them by PID afterwards, even when the test
fails. None of them touches the Redis on port 6379 or SHARQ_FAST_TEST_REDIS_URL.

| fixture                  | scope    | what                                                   |
|--------------------------|----------|--------------------------------------------------------|
| redis_cluster            | session  | RedisCluster, 3 masters, no replicas (flushall() it)   |
| redis_cluster_replicas   | function | RedisCluster, 3 masters + 1 replica each (kill_master) |
| redis_sentinel           | function | RedisSentinelSet: master, 1 replica, 3 sentinels       |
| tls_redis                | session  | RedisServer(tls=True): `url` (rediss://), `ca_path`    |
| debug_redis              | function | RedisServer(debug=True) (DEBUG SLEEP, ...)             |
| fault_proxy              | function | FaultProxy in front of this test's debug_redis         |
"""

from typing import Iterator

import pytest

from fault_proxy import FaultProxy
from sharq_fast._processes import find_redis_cli
from sharq_fast._redis_cluster import RedisCluster
from sharq_fast._redis_sentinel import RedisSentinelSet
from sharq_fast._redis_server import RedisServer, find_redis_server


def _need_redis_cli() -> None:
    if not find_redis_cli(find_redis_server()):
        pytest.skip("no redis-cli (needed to create a cluster); set SHARQ_FAST_REDIS_CLI")


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A 3-master cluster without replicas, shared by the session: use your own keys or
    call flushall(); reshard() is fine (the layout changes), kill_master() is refused."""
    _need_redis_cli()
    with RedisCluster(masters=3, replicas=0) as cluster:
        yield cluster


@pytest.fixture
def redis_cluster_replicas() -> Iterator[RedisCluster]:
    """A 3-master cluster with one replica per master, for this test alone (about 2 s to
    start; kill_master() takes about 4 s)."""
    _need_redis_cli()
    with RedisCluster(masters=3, replicas=1) as cluster:
        yield cluster


@pytest.fixture
def redis_sentinel() -> Iterator[RedisSentinelSet]:
    """A master, one replica and three sentinels ("mymaster"), for this test alone (about
    2 s to start; failover() about 1.5 s, kill_master() about 4 s)."""
    with RedisSentinelSet(replicas=1, sentinels=3) as sentinel_set:
        yield sentinel_set


@pytest.fixture(scope="session")
def tls_redis() -> Iterator[RedisServer]:
    """A TLS-only redis-server shared by the session: connect to `url` (rediss://) with
    ``ssl_ca_certs=ca_path``."""
    try:
        server = RedisServer(tls=True)
    except RuntimeError as exc:
        if "tls" in str(exc).lower() and "Bad directive" in str(exc):  # built without TLS
            pytest.skip(f"this redis-server has no TLS: {exc}")
        raise
    with server:
        yield server


@pytest.fixture
def debug_redis() -> Iterator[RedisServer]:
    """A private redis-server with DEBUG enabled (``DEBUG SLEEP`` stalls it), for this
    test alone."""
    with RedisServer(debug=True) as server:
        yield server


@pytest.fixture
def fault_proxy(debug_redis: RedisServer) -> Iterator[FaultProxy]:
    """A FaultProxy forwarding to this test's debug_redis (`target_url` bypasses it)."""
    with FaultProxy("127.0.0.1", debug_redis.port) as proxy:
        yield proxy
