"""Redis Sentinel: the ``redis+sentinel://`` URL, the master client of a sentinel set
(sync or asyncio), and clear errors when the sentinels cannot name a master.

A client made here asks the sentinels for the master's address every time it opens a
connection (redis-py's SentinelConnectionPool), so after a failover its new connections
go to the new master; the transports resend what failed on the old one (``_retry``).

URL: ``redis+sentinel://[[user]:password@]host1:26379[,host2:26379...]/<master>[/db][?options]``
(the scheme of the ``limits`` library). The credentials and the options (redis-py's URL
options: ``socket_timeout``, ...) are those of the master and replicas; the sentinels'
own credentials are the options ``sentinel_password`` and ``sentinel_username`` (limits
sends the URL's password to the sentinels too: give it there again if yours need it).
"""

from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import unquote

import msgspec
import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.asyncio.retry import Retry as AsyncRetry
from redis.retry import Retry

from .exceptions import BadArgumentException, MasterNotFoundError, SentinelAuthenticationError, UnknownMasterError

SCHEME = "redis+sentinel://"
DEFAULT_SENTINEL_PORT = 26379
#: Timeouts (s) of the connections to the sentinels: they answer at once when alive, and a
#: dead one must not hold up the search for the master.
SENTINEL_SOCKET_TIMEOUT = 1.0

Address = Tuple[str, int]


class SentinelSpec(msgspec.Struct):
    """Where the master is found: the sentinels' addresses, the master's name, the options
    of the data connections (db, credentials, ...) and of the sentinel connections."""

    sentinels: List[Address]
    master: str
    redis_kwargs: Dict[str, Any] = {}
    sentinel_kwargs: Dict[str, Any] = {}

    def __post_init__(self) -> None:
        if not self.sentinels:
            raise BadArgumentException("Redis Sentinel: give at least one sentinel host:port")
        if not self.master:
            raise BadArgumentException("Redis Sentinel: give the master's name (as the sentinels monitor it)")
        self.sentinels = [(host, int(port)) for host, port in self.sentinels]
        self.sentinel_kwargs = {k: v for k, v in self.sentinel_kwargs.items() if v is not None}


def parse_address(text: str) -> Address:
    """``host:port``, ``host`` (port 26379) or ``[v6addr]:port`` as (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    if not host:
        raise BadArgumentException(f"Redis Sentinel: bad sentinel address {text!r}: use host:port")
    try:
        number = int(port) if port else DEFAULT_SENTINEL_PORT
    except ValueError:
        raise BadArgumentException(f"Redis Sentinel: bad port in sentinel address {text!r}") from None
    if not 0 < number < 65536:
        raise BadArgumentException(f"Redis Sentinel: bad port in sentinel address {text!r}")
    return host, number


def parse_sentinel_url(url: str) -> SentinelSpec:
    """The SentinelSpec of a ``redis+sentinel://`` URL (see the module's docstring)."""
    if not url.startswith(SCHEME):
        raise BadArgumentException(f"not a Redis Sentinel URL: {url!r} (use {SCHEME}host:port,.../master)")
    rest = url[len(SCHEME) :]
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    sentinels = [parse_address(part) for part in hosts.split(",") if part.strip()]
    parts = [unquote(part) for part in path.split("/") if part]
    if not sentinels or not parts or len(parts) > 2:
        raise BadArgumentException(
            f"bad Redis Sentinel URL {_redact(url)!r}: use "
            "redis+sentinel://[[user]:password@]host1:port1[,host2:port2...]/<master name>[/db]"
        )
    # redis-py's own parser reads the credentials and options of the data connections.
    try:
        kwargs = parse_url(f"redis://{userinfo}{at}sentinel{'?' + query if query else ''}")
    except ValueError as exc:
        raise BadArgumentException(f"bad Redis Sentinel URL {_redact(url)!r}: {exc}") from None
    kwargs.pop("host", None)
    sentinel_kwargs = {"password": kwargs.pop("sentinel_password", None),
                       "username": kwargs.pop("sentinel_username", None)}
    if len(parts) == 2:
        try:
            kwargs.setdefault("db", int(parts[1]))
        except ValueError:
            raise BadArgumentException(f"bad Redis Sentinel URL {_redact(url)!r}: db {parts[1]!r} is not a number") from None
    return SentinelSpec(sentinels, parts[0], kwargs, sentinel_kwargs)


def _redact(url: str) -> str:
    head, at, tail = url.rpartition("@")
    return f"{SCHEME}***@{tail}" if at else url


def _no_retry(asyncio: bool) -> Any:
    return (AsyncRetry if asyncio else Retry)(NoBackoff(), 0)


def master_client(spec: SentinelSpec, asyncio: bool) -> Any:
    """A new redis-py client (sync or asyncio) of the master the sentinels name; close it
    with ``close_sentinels`` too (its sentinel connections are not the pool's).

    Its connections make one try each: the transports retry (``_retry``), asking the
    sentinels again every time. redis-py's default (ten tries with backoff up to 1 s,
    inside each of ours) made a client follow a new master up to a second late. One try
    per sentinel too: the search goes on to the next one at once."""
    kind = _AsyncSentinel if asyncio else _SyncSentinel
    sentinel_options: Dict[str, Any] = {
        "socket_timeout": SENTINEL_SOCKET_TIMEOUT,
        "socket_connect_timeout": SENTINEL_SOCKET_TIMEOUT,
        "retry": _no_retry(asyncio),
        **spec.sentinel_kwargs,
    }
    sentinel = kind(spec.sentinels, sentinel_kwargs=sentinel_options, **{"retry": _no_retry(asyncio), **spec.redis_kwargs})
    return sentinel.master_for(spec.master)


def sentinel_manager(redis_client: Any) -> Any:
    """The redis-py Sentinel behind a master client made by ``master_for``, else None."""
    return getattr(getattr(redis_client, "connection_pool", None), "sentinel_manager", None)


def close_sentinels(redis_client: Any) -> None:
    """Close the sentinel connections of a sync master client made by master_client."""
    manager = sentinel_manager(redis_client)
    if isinstance(manager, _SyncSentinel):
        for sentinel in manager.sentinels:
            sentinel.close()


async def aclose_sentinels(redis_client: Any) -> None:
    """Close the sentinel connections of an asyncio master client made by master_client."""
    manager = sentinel_manager(redis_client)
    if isinstance(manager, _AsyncSentinel):
        for sentinel in manager.sentinels:
            await sentinel.aclose()


# -- why no master was found -----------------------------------------------------------


def _address(sentinel: Any) -> str:
    kwargs = sentinel.connection_pool.connection_kwargs
    return f"{kwargs.get('host')}:{kwargs.get('port')}"


def explain(master: str, answers: List[Tuple[str, Any]]) -> Exception:
    """The error that says why no sentinel named a master: `answers` holds, for each
    sentinel, its address and what SENTINEL MASTERS gave (a dict) or the error it raised.

    No sentinel reachable, or the master down (a failover is under way): MasterNotFoundError,
    which the transports retry for retry_for. Sentinels that refuse the credentials:
    SentinelAuthenticationError; sentinels that monitor no master of that name:
    UnknownMasterError. Those two are not retried: a new attempt would meet them again."""
    where = ", ".join(address for address, _ in answers)
    answered = {address: masters for address, masters in answers if isinstance(masters, dict)}
    errors = [(address, error) for address, error in answers if not isinstance(error, dict)]
    if not answered:
        if errors and all(isinstance(error, redis.AuthenticationError) for _, error in errors):
            return SentinelAuthenticationError(
                f"the sentinels at {where} refused the credentials ({errors[0][1]}): give the sentinels' "
                "password as sentinel_password (URL option, or [redis] sentinel_password in sharq.conf)"
            )
        detail = "; ".join(f"{address}: {error}" for address, error in errors)
        return MasterNotFoundError(f"no sentinel answered ({detail}): is a sentinel running at {where}?")
    if not any(master in masters for masters in answered.values()):
        names = sorted({name for masters in answered.values() for name in masters})
        return UnknownMasterError(
            f"the sentinels at {', '.join(answered)} monitor no master named {master!r} (they monitor: "
            f"{', '.join(map(repr, names)) or 'none'}): check the master name (the URL's path, or "
            "[redis] sentinel_master in sharq.conf)"
        )
    states = []
    for address, masters in answered.items():
        state = masters.get(master)
        if state is not None:
            states.append(f"{address} says {state.get('ip')}:{state.get('port')} is {state.get('flags')}")
    return MasterNotFoundError(
        f"the sentinels know master {master!r} but none names a master that is up ({'; '.join(states)}): "
        "a failover may be under way"
    )


def _master_address(reply: Any, force_ip: Optional[str]) -> Optional[Address]:
    """(host, port) of a GET-MASTER-ADDR-BY-NAME reply; None for an unknown name."""
    if not reply:
        return None
    host, port = reply[0], reply[1]
    host = host.decode() if isinstance(host, bytes) else str(host)
    return (force_ip if force_ip is not None else host), int(port)


class _SyncSentinel(redis.sentinel.Sentinel):
    """redis-py's Sentinel, asking for the master as the Sentinel client guide says, and
    with a clear error when none is found.

    ``SENTINEL GET-MASTER-ADDR-BY-NAME`` names the promoted replica as soon as it is the
    master, while redis-py's ``SENTINEL MASTERS`` goes on naming the old master until the
    failover has reconfigured every replica (a second or more, during which the old
    master, once demoted, refuses writes). A master that is down but not yet replaced is
    named too: connecting to it fails, and the transports try again."""

    def discover_master(self, service_name: str) -> Address:
        for index, sentinel in enumerate(self.sentinels):
            try:
                reply = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", service_name)
            except (redis.ConnectionError, redis.TimeoutError):
                continue
            address = _master_address(reply, getattr(self, "_force_master_ip", None))
            if address is not None:
                self.sentinels[0], self.sentinels[index] = sentinel, self.sentinels[0]  # ask it first next time
                return address
        answers: List[Tuple[str, Any]] = []
        for sentinel in self.sentinels:
            try:
                answers.append((_address(sentinel), sentinel.sentinel_masters()))
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                answers.append((_address(sentinel), exc))
        raise explain(service_name, answers)


class _AsyncSentinel(redis.asyncio.sentinel.Sentinel):
    """redis-py's asyncio Sentinel, asking for the master as _SyncSentinel does."""

    async def discover_master(self, service_name: str) -> Address:
        for index, sentinel in enumerate(self.sentinels):
            try:
                reply = await sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", service_name)
            except (redis.ConnectionError, redis.TimeoutError):
                continue
            address = _master_address(reply, getattr(self, "_force_master_ip", None))
            if address is not None:
                self.sentinels[0], self.sentinels[index] = sentinel, self.sentinels[0]
                return address
        answers: List[Tuple[str, Any]] = []
        for sentinel in self.sentinels:
            try:
                answers.append((_address(sentinel), await sentinel.sentinel_masters()))
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                answers.append((_address(sentinel), exc))
        raise explain(service_name, answers)
