"""Read a Redis keyspace back as plain Python values, for exact layout comparisons.

The clients' reply caches (``P:.replies:<client>``, see lua/_replies.lua) are left out:
they are the transport's bookkeeping, not queue data, and differ from client to client."""

from typing import Any, Dict

import redis


def dump_key(r: redis.Redis, key: bytes) -> Any:
    """(type, value) of one key; value as bytes, list, dict, set or zset dict."""
    kind = r.type(key).decode()
    if kind == "string":
        value: Any = r.get(key)
    elif kind == "list":
        value = r.lrange(key, 0, -1)
    elif kind == "hash":
        value = r.hgetall(key)
    elif kind == "set":
        value = r.smembers(key)
    elif kind == "zset":
        value = dict(r.zrange(key, 0, -1, withscores=True))
    else:
        value = None
    return kind, value


def dump(r: redis.Redis, prefix: str = "") -> Dict[bytes, Any]:
    """Every key starting with `prefix`, the prefix stripped, with type, value and
    whether it has a TTL."""
    state = {}
    for key in r.scan_iter(match=(prefix + "*") if prefix else "*", count=1000):
        if is_reply_cache(key):
            continue
        kind, value = dump_key(r, key)
        state[key[len(prefix):]] = (kind, value, r.pttl(key) > 0)
    return state


def raw_snapshot(r: redis.Redis) -> Dict[bytes, Any]:
    """Byte-for-byte snapshot: DUMP and PTTL of every key."""
    return {key: (r.dump(key), r.pttl(key) > 0) for key in r.scan_iter(count=1000) if not is_reply_cache(key)}


def is_reply_cache(key: bytes) -> bool:
    """True for a client's reply cache key."""
    return b":.replies:" in key


def data_keys(r: redis.Redis, pattern: str = "*") -> list:
    """KEYS `pattern`, without the clients' reply caches."""
    return [key for key in r.keys(pattern) if not is_reply_cache(key)]
