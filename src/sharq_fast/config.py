"""Reading SharQ's INI config file (sharq.conf)."""

import configparser
import os
from typing import Any, Dict, Optional

import msgspec

from ._constants import (
    DEFAULT_JOB_EXPIRE_INTERVAL,
    DEFAULT_JOB_REQUEUE_INTERVAL,
    DEFAULT_JOB_REQUEUE_LIMIT,
    DEFAULT_KEY_PREFIX,
)
from ._sentinel import SentinelSpec, parse_address
from .exceptions import BadArgumentException, ConfigError


class SharqConfig(msgspec.Struct):
    """What a sharq.conf says: the queue settings and the keyword arguments of the
    ``redis.Redis`` it describes."""

    key_prefix: str = DEFAULT_KEY_PREFIX
    job_expire_interval: int = DEFAULT_JOB_EXPIRE_INTERVAL
    job_requeue_interval: int = DEFAULT_JOB_REQUEUE_INTERVAL
    default_job_requeue_limit: int = DEFAULT_JOB_REQUEUE_LIMIT
    redis: Dict[str, Any] = {}
    #: Set when the config names sentinels: then `redis` holds no address.
    sentinel: Optional[SentinelSpec] = None
    #: ``clustered = true``: `redis` names a startup node of a Redis Cluster, and clients
    #: use the cluster layout (docs/cluster-layout.md).
    clustered: bool = False


def _int(parser: configparser.ConfigParser, section: str, option: str, default: int, minimum: int = 0) -> int:
    raw = parser.get(section, option, fallback="").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"[{section}] {option} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"[{section}] {option} must be >= {minimum}, got {value}")
    return value


def _str(parser: configparser.ConfigParser, section: str, option: str) -> Optional[str]:
    value = parser.get(section, option, fallback="").strip()
    return value or None


def read_config(path: "os.PathLike[str] | str") -> SharqConfig:
    """Parse a SharQ config file. Unlike sharq 1.3.0 under Python 3, this reads its own
    sample config: ``;`` and ``#`` start inline comments, empty values mean "not set"."""
    parser = configparser.ConfigParser(inline_comment_prefixes=(";", "#"), interpolation=None)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read SharQ config {os.fspath(path)!r}: {exc.strerror}") from None
    except configparser.Error as exc:
        raise ConfigError(f"SharQ config {os.fspath(path)!r} is not valid INI: {exc}") from None

    conn_type = _str(parser, "redis", "conn_type") or "tcp_sock"
    redis_kwargs: Dict[str, Any] = {
        "db": _int(parser, "redis", "db", 0),
        "password": _str(parser, "redis", "password"),
    }
    username = _str(parser, "redis", "username")
    if username:
        redis_kwargs["username"] = username
    if conn_type == "unix_sock":
        socket_path = _str(parser, "redis", "unix_socket_path")
        if not socket_path:
            raise ConfigError("[redis] conn_type is unix_sock but unix_socket_path is not set")
        redis_kwargs["unix_socket_path"] = socket_path
    elif conn_type == "tcp_sock":
        redis_kwargs["host"] = _str(parser, "redis", "host") or "127.0.0.1"
        redis_kwargs["port"] = _int(parser, "redis", "port", 6379)
    else:
        raise ConfigError(f"[redis] conn_type must be tcp_sock or unix_sock, got {conn_type!r}")
    clustered = (_str(parser, "redis", "clustered") or "false").lower()
    if clustered not in configparser.ConfigParser.BOOLEAN_STATES:
        raise ConfigError(f"[redis] clustered must be true or false, got {clustered!r}")
    is_clustered = configparser.ConfigParser.BOOLEAN_STATES[clustered]
    if is_clustered:
        # SharQ's own clustered mode cannot work (its scripts build key names inside Lua);
        # here it means sharq_fast's cluster layout.
        if conn_type != "tcp_sock":
            raise ConfigError("[redis] clustered = true needs conn_type = tcp_sock (a startup node's host and port)")
        if redis_kwargs.pop("db"):
            raise ConfigError("[redis] db must be 0 with clustered = true: a Redis Cluster has only database 0")
    sentinel = _sentinel_config(parser, redis_kwargs)  # takes the address out of redis_kwargs
    if sentinel is not None and is_clustered:
        raise ConfigError("[redis] sentinels and clustered = true exclude each other: a Redis Cluster fails over by itself")
    return SharqConfig(
        key_prefix=_str(parser, "redis", "key_prefix") or DEFAULT_KEY_PREFIX,
        job_expire_interval=_int(parser, "sharq", "job_expire_interval", DEFAULT_JOB_EXPIRE_INTERVAL, 1),
        job_requeue_interval=_int(parser, "sharq", "job_requeue_interval", DEFAULT_JOB_REQUEUE_INTERVAL, 1),
        default_job_requeue_limit=_int(parser, "sharq", "default_job_requeue_limit", DEFAULT_JOB_REQUEUE_LIMIT, -1),
        redis=redis_kwargs,
        sentinel=sentinel,
        clustered=is_clustered,
    )


def _sentinel_config(parser: configparser.ConfigParser, redis_kwargs: Dict[str, Any]) -> Optional[SentinelSpec]:
    """``[redis] sentinels = host:port, host:port`` and ``sentinel_master = name`` (with
    ``sentinel_password`` / ``sentinel_username`` for the sentinels' own AUTH): the master
    is found through Redis Sentinel; db, password and username are the master's."""
    sentinels = _str(parser, "redis", "sentinels")
    master = _str(parser, "redis", "sentinel_master")
    if not sentinels and not master:
        return None
    if not (sentinels and master):
        raise ConfigError("[redis] sentinels (host:port, host:port, ...) and sentinel_master go together")
    try:
        addresses = [parse_address(part) for part in sentinels.split(",") if part.strip()]
    except BadArgumentException as exc:
        raise ConfigError(f"[redis] sentinels: {exc}") from None
    for option in ("host", "port", "unix_socket_path"):  # the sentinels give the address
        redis_kwargs.pop(option, None)
    sentinel_kwargs = {
        "password": _str(parser, "redis", "sentinel_password"),
        "username": _str(parser, "redis", "sentinel_username"),
    }
    return SentinelSpec(addresses, master, dict(redis_kwargs), sentinel_kwargs)
