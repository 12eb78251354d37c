"""Redis Sentinel: the ``redis+sentinel://`` URL and ``[redis] sentinels`` in sharq.conf,
an existing ``Sentinel(...).master_for(...)`` client, the whole client through a real
sentinel set (master, replica, three sentinels), AUTH on sentinels and master, and clear
errors for a wrong master name, unreachable sentinels and wrong credentials.

Failovers are in test_failover.py."""

import json
import textwrap
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis
import redis.asyncio.sentinel
import redis.sentinel

import sharq_fast
from sharq_fast import AsyncClient, BadArgumentException, Client, ConfigError, SharQ
from sharq_fast._processes import free_port
from sharq_fast._redis_sentinel import RedisSentinelSet
from sharq_fast._retry import is_connection_error
from sharq_fast._sentinel import SentinelSpec, explain, parse_address, parse_sentinel_url
from sharq_fast.cli import main
from sharq_fast.config import read_config
from sharq_fast.exceptions import MasterNotFoundError, SentinelAuthenticationError, UnknownMasterError
from async_facade import SyncFacade

QT = "st"


@pytest.fixture
def core() -> None:
    """Overrides conftest's autouse `core`: the connection does not depend on the core."""
    return None


# -- the URL ----------------------------------------------------------------------------


def test_url_hosts_master_db_and_credentials() -> None:
    spec = parse_sentinel_url("redis+sentinel://:pw@h1:26380,h2,[::1]:26381/mymaster/3")
    assert spec.sentinels == [("h1", 26380), ("h2", 26379), ("::1", 26381)]
    assert spec.master == "mymaster"
    assert spec.redis_kwargs == {"password": "pw", "db": 3}
    assert spec.sentinel_kwargs == {}


def test_url_like_limits_without_db_and_with_options() -> None:
    spec = parse_sentinel_url(
        "redis+sentinel://alice:p%40ss@127.0.0.1:26379/my-service?socket_timeout=2.5&sentinel_password=sp"
        "&sentinel_username=watcher"
    )
    assert spec.master == "my-service"
    assert spec.redis_kwargs == {"username": "alice", "password": "p@ss", "socket_timeout": 2.5}
    assert spec.sentinel_kwargs == {"password": "sp", "username": "watcher"}


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://h1:26379",  # no master
        "redis+sentinel://h1:26379/",
        "redis+sentinel:///mymaster",  # no sentinel
        "redis+sentinel://h1:port/mymaster",
        "redis+sentinel://h1:70000/mymaster",
        "redis+sentinel://h1:26379/mymaster/zero",
        "redis+sentinel://h1:26379/mymaster/0/extra",
        "redis+sentinel://h1:26379/mymaster?socket_timeout=soon",
    ],
)
def test_bad_urls_are_refused_before_connecting(url: str) -> None:
    with pytest.raises(BadArgumentException, match="Sentinel"):
        Client(url)


def test_unsupported_scheme_names_the_sentinel_scheme() -> None:
    with pytest.raises(BadArgumentException, match=r"redis\+sentinel://"):
        Client("memcached://localhost")


def test_parse_address() -> None:
    assert parse_address(" host ") == ("host", 26379)
    assert parse_address("[fe80::1]") == ("fe80::1", 26379)
    with pytest.raises(BadArgumentException):
        parse_address(":26379")


# -- sharq.conf -------------------------------------------------------------------------


def write_conf(tmp_path: Path, redis_lines: str) -> Path:
    path = tmp_path / "sharq.conf"
    path.write_text("[sharq]\njob_expire_interval = 2000\n[redis]\nkey_prefix = sent\n" + textwrap.dedent(redis_lines))
    return path


def test_config_with_sentinels(tmp_path: Path) -> None:
    config = read_config(write_conf(tmp_path, """\
        db = 2
        password = datapw
        host = ignored.example
        sentinels = 10.0.0.1:26379, 10.0.0.2:26380 ,10.0.0.3 ; three of them
        sentinel_master = mymaster
        sentinel_password = sentpw
        """))
    assert config.sentinel == SentinelSpec(
        [("10.0.0.1", 26379), ("10.0.0.2", 26380), ("10.0.0.3", 26379)], "mymaster", {"db": 2, "password": "datapw"},
        {"password": "sentpw"},
    )
    assert config.redis == {"db": 2, "password": "datapw"}  # the sentinels give the address
    assert read_config(tmp_path / "sharq.conf") == config


@pytest.mark.parametrize(
    "lines, message",
    [
        ("sentinels = h:26379\n", "go together"),
        ("sentinel_master = mymaster\n", "go together"),
        ("sentinels = h:x\nsentinel_master = m\n", "sentinels"),
    ],
)
def test_config_sentinel_errors(tmp_path: Path, lines: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        read_config(write_conf(tmp_path, lines))


# -- clear errors ---------------------------------------------------------------------


def test_explain_tells_the_cases_apart() -> None:
    down = {"mymaster": {"ip": "10.0.0.9", "port": 6379, "flags": "master,s_down"}}
    assert isinstance(explain("mymaster", [("a:1", down)]), MasterNotFoundError)
    assert "failover may be under way" in str(explain("mymaster", [("a:1", down)]))
    unknown = explain("nosuch", [("a:1", down), ("b:2", redis.ConnectionError("refused"))])
    assert isinstance(unknown, UnknownMasterError) and "they monitor: 'mymaster'" in str(unknown)
    nobody = explain("mymaster", [("a:1", redis.ConnectionError("refused")), ("b:2", redis.TimeoutError("slow"))])
    assert type(nobody) is MasterNotFoundError and "no sentinel answered" in str(nobody) and "b:2: slow" in str(nobody)
    auth = explain("mymaster", [("a:1", redis.AuthenticationError("invalid password"))])
    assert isinstance(auth, SentinelAuthenticationError) and "sentinel_password" in str(auth)
    # The retry rule: waiting cannot fix a wrong name or password; it can bring sentinels back.
    assert is_connection_error(nobody) and not is_connection_error(unknown) and not is_connection_error(auth)
    # They are redis-py's errors too (sync and asyncio).
    assert isinstance(unknown, redis.sentinel.MasterNotFoundError)
    assert isinstance(unknown, redis.asyncio.sentinel.MasterNotFoundError)


def test_no_reachable_sentinel(make_client: Any) -> None:
    url = f"redis+sentinel://127.0.0.1:{free_port()},127.0.0.1:{free_port()}/mymaster/0"
    q = make_client(url, retry_for=0.2)
    with pytest.raises(MasterNotFoundError, match="no sentinel answered") as info:
        q.enqueue(queue_type=QT, queue_id="a", job_id="j", payload=1, interval=0)
    assert "is a sentinel running at 127.0.0.1:" in str(info.value)


# -- a real sentinel set --------------------------------------------------------------


@pytest.fixture(scope="module")
def sentinels() -> Iterator[RedisSentinelSet]:
    """A master, a replica and three sentinels shared by this module (no failover)."""
    with RedisSentinelSet(replicas=1, sentinels=3) as sentinel_set:
        yield sentinel_set


@pytest.fixture
def master(sentinels: RedisSentinelSet) -> Iterator[redis.Redis]:
    """A plain client on the master, flushed."""
    conn = sentinels.server(sentinels.master_address()[1]).client()
    conn.flushall()
    yield conn
    conn.close()


def test_wrong_master_name_is_a_clear_error_at_once(sentinels: RedisSentinelSet, make_client: Any) -> None:
    q = make_client(sentinels.url.replace("/mymaster/", "/nosuch/"))
    with pytest.raises(UnknownMasterError, match=r"monitor no master named 'nosuch' \(they monitor: 'mymaster'\)"):
        q.deep_status()


def exercise(q: Any, other: Any, clock: Any, master: redis.Redis) -> None:
    """Every public operation once, checked, through `q`; `other` enqueues while q waits."""
    assert q.enqueue(queue_type=QT, queue_id="a", job_id="j0", payload={"x": 0}, interval=0) is True
    result = q.enqueue_many(
        [{"queue_type": QT, "queue_id": f"q{n % 3}", "job_id": f"j{n}", "payload": n, "interval": 0} for n in range(1, 31)],
        chunk_size=7,
    )
    assert (result.enqueued, result.duplicates) == (30, [])
    assert master.hlen("sharq_server:payload") == 31  # on the master the sentinels name
    assert q.queue_length(QT, "q0") == 10
    assert q.interval(QT, "a", 0) is True
    job = q.dequeue(QT)
    assert job is not None and q.extend(job, 5000) is True and q.release(job) is True
    jobs = q.dequeue_many(QT, count=100)
    assert len(jobs) == 31
    assert q.finish_many(jobs[:-1]) == [True] * 30
    last = jobs[-1]
    assert q.finish(last.queue_type, last.queue_id, last.job_id) is True
    q.enqueue(queue_type=QT, queue_id="b", job_id="late", payload=1, interval=0)
    assert q.dequeue(QT) is not None
    clock.advance(q.job_expire_interval + 1)
    assert q.requeue().requeued == 1
    metrics = q.metrics()
    assert metrics.queue_types == [QT] and sum(metrics.enqueue_counts.values()) == 32
    assert q.metrics(QT).queue_ids == ["b"] and q.metrics(QT, "b").queue_length == 1
    assert q.clear_queue(QT, "b", purge_all=True) is True
    assert q.deep_status() is True
    q.load_scripts()
    # A waiting dequeue is woken by another client's enqueue (wake-ups through the master).
    timer = threading.Timer(0.3, lambda: other.enqueue(queue_type=QT, queue_id="w", job_id="w", payload=1, interval=0))
    timer.start()
    woken = q.dequeue(QT, timeout=30)
    timer.join()
    assert woken is not None and woken.job_id == "w"
    q.start_requeuer()
    q.stop_requeuer()


def test_the_whole_client_through_the_sentinel_url(
    sentinels: RedisSentinelSet, master: redis.Redis, make_client: Any, clock: Any
) -> None:
    q = make_client(sentinels.url, wait_poll_interval=60)
    exercise(q, make_client(sentinels.url), clock, master)


def test_an_existing_master_for_client(
    sentinels: RedisSentinelSet, master: redis.Redis, transport: str, loop_thread: Any, clock: Any
) -> None:
    if transport == "sync":
        made = [Client(sentinels.sentinel().master_for("mymaster"), clock=clock, wait_poll_interval=60)
                for _ in range(2)]
    else:
        def factory() -> AsyncClient:
            sentinel = redis.asyncio.sentinel.Sentinel(sentinels.sentinel_addresses)
            return AsyncClient(sentinel.master_for("mymaster"), clock=clock, wait_poll_interval=60)

        made = [SyncFacade(loop_thread, factory) for _ in range(2)]
    try:
        exercise(made[0], made[1], clock, master)
    finally:
        for q in made:
            q.close()
    assert not made[0]._owns_redis  # the caller's client is left open


def test_from_config_and_the_sharq_dropin(
    sentinels: RedisSentinelSet, master: redis.Redis, tmp_path: Path, transport: str, loop_thread: Any
) -> None:
    hosts = ", ".join(f"{host}:{port}" for host, port in sentinels.sentinel_addresses)
    path = write_conf(tmp_path, f"sentinels = {hosts}\nsentinel_master = mymaster\ndb = 1\n")
    if transport == "sync":
        q: Any = Client.from_config(str(path))
    else:
        q = SyncFacade(loop_thread, lambda: AsyncClient.from_config(str(path)))
    with q:
        assert q.key_prefix == "sent" and q.job_expire_interval == 2000
        assert q.enqueue(queue_type=QT, queue_id="a", job_id="j", payload=1, interval=0)
    sq = SharQ(str(path))
    assert sq.dequeue(QT)["job_id"] == "j"
    assert sq.redis_client().connection_pool.service_name == "mymaster"
    master.select(1)
    assert master.zcard(f"sent:{QT}:active") == 1


def test_cli_takes_the_sentinel_url(sentinels: RedisSentinelSet, master: redis.Redis, capsys: Any) -> None:
    with Client(sentinels.url) as q:
        q.enqueue(queue_type=QT, queue_id="a", job_id="j", payload=1, interval=0)
    assert main(["stats", "--url", sentinels.url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["queue_types"] == [QT]
    assert main(["stats", "--url", sentinels.url.replace("/mymaster/", "/nosuch/")]) != 0
    assert "monitor no master named 'nosuch'" in capsys.readouterr().err


# -- AUTH -----------------------------------------------------------------------------


def test_auth_on_sentinels_and_master(make_client: Any, tmp_path: Path) -> None:
    with RedisSentinelSet(password="datapw", sentinel_password="sentpw") as sentinel_set:
        url = sentinel_set.url + "?sentinel_password=sentpw"
        assert url.startswith("redis+sentinel://:datapw@")
        q = make_client(url)
        assert q.enqueue(queue_type=QT, queue_id="a", job_id="j", payload=1, interval=0)
        assert q.dequeue(QT).job_id == "j"
        with pytest.raises(SentinelAuthenticationError, match="refused the credentials"):
            make_client(sentinel_set.url, retry_for=30).deep_status()  # not retried
        with pytest.raises(redis.AuthenticationError):
            make_client(url.replace("datapw", "wrong"), retry_for=30).deep_status()
        hosts = ",".join(f"{host}:{port}" for host, port in sentinel_set.sentinel_addresses)
        path = write_conf(tmp_path, f"sentinels = {hosts}\nsentinel_master = mymaster\npassword = datapw\n"
                                    "sentinel_password = sentpw\n")
        with Client.from_config(str(path)) as from_file:
            assert from_file.deep_status() is True


def test_package_exports_the_new_error() -> None:
    assert sharq_fast.ReplicationError.__module__ == "sharq_fast.exceptions"
