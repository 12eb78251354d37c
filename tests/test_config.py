"""Reading SharQ config files: ``sharq_fast.config.read_config``, ``Client.from_config``
and ``SharQ(config_path)``.

The format is sharq-server's sharq.conf: INI with ``name : value`` (or ``=``) and ``;``
inline comments. SharQ 1.3.0 itself cannot read its own sample under Python 3 (its
ConfigParser keeps ``1000 ; in milliseconds`` as the value); sharq_fast can.
"""

import textwrap
from pathlib import Path
from typing import Iterator

import pytest
import redis

from redis_server import RedisServer
from sharq_fast import Client, SharQ
from sharq_fast._constants import (
    DEFAULT_JOB_EXPIRE_INTERVAL,
    DEFAULT_JOB_REQUEUE_INTERVAL,
    DEFAULT_JOB_REQUEUE_LIMIT,
    DEFAULT_KEY_PREFIX,
)
from sharq_fast.config import SharqConfig, read_config
from sharq_fast.exceptions import BadArgumentException, ConfigError, SharqException

TESTS = Path(__file__).parent
SAMPLE = TESTS / "sharq.test.conf"
DATA = TESTS / "data"


def write(tmp_path: Path, text: str, name: str = "sharq.conf") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def tcp_config(tmp_path: Path, server: RedisServer, *, extra_redis: str = "", sharq: str = "", name: str = "s.conf") -> Path:
    return write(
        tmp_path,
        f"""
        [sharq]
        job_expire_interval : 1500 ; in milliseconds
        job_requeue_interval : 700 ; in milliseconds
        default_job_requeue_limit : 2 ; retries twice
        {sharq}

        [redis]
        db : 0
        key_prefix : cfg_test
        conn_type : tcp_sock ; or unix_sock
        port : {server.port}
        host : 127.0.0.1
        clustered : false
        {extra_redis}
        """,
        name,
    )


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """A private redis-server for this module (it also listens on a unix socket)."""
    srv = RedisServer()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def server_conn(server: RedisServer) -> Iterator[redis.Redis]:
    """A client on the private server, every db flushed before the test."""
    conn = redis.Redis(unix_socket_path=server.unix_socket)
    conn.flushall()
    yield conn
    conn.close()


# --------------------------------------------------------------------------------------
# read_config: parsing
# --------------------------------------------------------------------------------------


def test_sample_config_with_inline_comments() -> None:
    """sharq.test.conf is sharq-server's sharq.conf: `:` separators, `;` comments, a
    [sharq-server] section that sharq_fast ignores, an empty password."""
    config = read_config(SAMPLE)
    assert isinstance(config, SharqConfig)
    assert config.key_prefix == "sharq_server"
    assert config.job_expire_interval == 1000
    assert config.job_requeue_interval == 1000
    assert config.default_job_requeue_limit == -1
    assert config.redis == {"db": 0, "password": None, "host": "127.0.0.1", "port": 6379}


def test_read_config_accepts_pathlike_and_str() -> None:
    assert read_config(str(SAMPLE)) == read_config(SAMPLE)


def test_unix_socket_config() -> None:
    config = read_config(DATA / "sharq_unix.conf")
    assert config.key_prefix == "unix_prefix"
    assert (config.job_expire_interval, config.job_requeue_interval, config.default_job_requeue_limit) == (5000, 2000, 3)
    # `#` inline comments too; host and port are not used for a unix socket.
    assert config.redis == {"db": 1, "password": None, "unix_socket_path": "/var/run/redis/redis.sock"}


@pytest.mark.parametrize("name", ["sharq_minimal.conf"])
def test_defaults_when_options_missing(name: str) -> None:
    config = read_config(DATA / name)
    assert config.key_prefix == DEFAULT_KEY_PREFIX == "sharq_server"
    assert config.job_expire_interval == DEFAULT_JOB_EXPIRE_INTERVAL == 1000
    assert config.job_requeue_interval == DEFAULT_JOB_REQUEUE_INTERVAL == 1000
    assert config.default_job_requeue_limit == DEFAULT_JOB_REQUEUE_LIMIT == -1
    assert config.redis == {"db": 0, "password": None, "host": "127.0.0.1", "port": 6379}


@pytest.mark.parametrize("text", ["", "; only a comment\n", "[sharq]\n[redis]\n[sharq-server]\n"],
                         ids=["empty", "comment", "empty-sections"])
def test_defaults_without_sections(tmp_path: Path, text: str) -> None:
    assert read_config(write(tmp_path, text)) == SharqConfig(
        redis={"db": 0, "password": None, "host": "127.0.0.1", "port": 6379}
    )


def test_empty_values_mean_default(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [sharq]
        job_expire_interval :
        job_requeue_interval : ; nothing
        [redis]
        key_prefix :
        host :
        port :
        db :
        conn_type :
        """,
    )
    config = read_config(path)
    assert config.key_prefix == "sharq_server"
    assert config.job_expire_interval == 1000
    assert config.redis == {"db": 0, "password": None, "host": "127.0.0.1", "port": 6379}


def test_values_are_stripped(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [sharq]
        job_expire_interval =    2000    ; padded
        [redis]
        host =   redis.example   
        port=6380
        password : s3cret ; the password
        key_prefix : my_app
        """,
    )
    config = read_config(path)
    assert config.job_expire_interval == 2000
    assert config.key_prefix == "my_app"
    assert config.redis == {"db": 0, "password": "s3cret", "host": "redis.example", "port": 6380}


def test_username_option(tmp_path: Path) -> None:
    path = write(tmp_path, "[redis]\nusername : alice\npassword : pw\n")
    assert read_config(path).redis == {"db": 0, "password": "pw", "username": "alice", "host": "127.0.0.1", "port": 6379}


def test_options_are_case_insensitive(tmp_path: Path) -> None:
    path = write(tmp_path, "[sharq]\nJOB_EXPIRE_INTERVAL : 42\n[redis]\nKey_Prefix : kp\n")
    config = read_config(path)
    assert (config.job_expire_interval, config.key_prefix) == (42, "kp")


# --------------------------------------------------------------------------------------
# read_config: errors
# --------------------------------------------------------------------------------------


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "does-not-exist.conf"
    with pytest.raises(ConfigError) as info:
        read_config(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, SharqException)


def test_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=str(tmp_path)):
        read_config(tmp_path)


@pytest.mark.parametrize(
    "text",
    ["job_expire_interval : 1000\n", "[sharq\nx : 1\n", "[redis]\nhost : a\nhost : b\n"],
    ids=["no-section", "broken-header", "duplicate-option"],
)
def test_invalid_ini_is_a_config_error(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="not valid INI") as info:
        read_config(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "section, option, value",
    [
        ("sharq", "job_expire_interval", "1s"),
        ("sharq", "job_requeue_interval", "1.5"),
        ("sharq", "default_job_requeue_limit", "infinite"),
        ("redis", "port", "http"),
        ("redis", "db", "zero"),
    ],
)
def test_bad_integer_names_the_option(tmp_path: Path, section: str, option: str, value: str) -> None:
    path = write(tmp_path, f"[{section}]\n{option} : {value} ; comment\n")
    with pytest.raises(ConfigError, match=f"\\[{section}\\] {option} must be an integer") as info:
        read_config(path)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize("value", ["true", "True", "yes", "on", "1"])
def test_clustered_means_the_cluster_layout(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f"[redis]\nhost : 127.0.0.1\nport : 7000\nclustered : {value} ; cluster mode\n")
    config = read_config(path)
    assert config.clustered
    assert config.redis["host"] == "127.0.0.1" and config.redis["port"] == 7000 and "db" not in config.redis


def test_clustered_sample_is_read() -> None:
    assert read_config(DATA / "sharq_clustered.conf").clustered


@pytest.mark.parametrize(
    "extra, message",
    [("db : 2\n", "db must be 0"), ("conn_type : unix_sock\nunix_socket_path : /tmp/s\n", "tcp_sock")],
)
def test_clustered_refuses_what_a_cluster_cannot_do(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        read_config(write(tmp_path, f"[redis]\nclustered : true\n{extra}"))


@pytest.mark.parametrize("value", ["false", "False", "no", "off", "0", ""])
def test_clustered_false(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f"[redis]\nclustered : {value}\n")
    assert "host" in read_config(path).redis


def test_unknown_conn_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="conn_type.*'udp_sock'"):
        read_config(write(tmp_path, "[redis]\nconn_type : udp_sock\n"))


def test_unix_sock_needs_a_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unix_socket_path"):
        read_config(write(tmp_path, "[redis]\nconn_type : unix_sock ; no path\n"))


def test_config_error_from_sharq_and_client(tmp_path: Path) -> None:
    path = write(tmp_path, "[redis]\nport : abc\n")
    with pytest.raises(ConfigError, match="port"):
        SharQ(str(path))
    with pytest.raises(ConfigError, match="port"):
        Client.from_config(str(path))
    with pytest.raises(ConfigError, match="missing.conf"):
        Client.from_config(str(tmp_path / "missing.conf"))


@pytest.mark.parametrize(
    "option, value",
    [("job_expire_interval", 0), ("job_requeue_interval", -5), ("default_job_requeue_limit", -2)],
)
def test_out_of_range_settings_are_refused(tmp_path: Path, option: str, value: int) -> None:
    """Integers that parse but make no sense are refused when the client is built (as a
    SharqException, before anything reaches Redis)."""
    path = write(tmp_path, f"[sharq]\n{option} : {value}\n")
    with pytest.raises(SharqException):
        Client.from_config(str(path))
    with pytest.raises(SharqException):
        SharQ(str(path))


# --------------------------------------------------------------------------------------
# Against a server: TCP, db, unix socket, password
# --------------------------------------------------------------------------------------


def test_from_config_client_enqueues_and_dequeues(tmp_path: Path, server: RedisServer, server_conn: redis.Redis) -> None:
    with Client.from_config(str(tcp_config(tmp_path, server))) as client:
        assert client.key_prefix == "cfg_test"
        assert client.job_expire_interval == 1500
        assert client.job_requeue_interval == 700
        assert client.default_job_requeue_limit == 2
        assert client.enqueue(queue_type="sms", queue_id="q", job_id="j1", payload={"a": 1}, interval=0) is True
        assert server_conn.lrange("cfg_test:sms:q", 0, -1) == [b"j1"]
        assert server_conn.hget("cfg_test:sms:q:requeues_remaining", "j1") == b"2"
        job = client.dequeue("sms")
        assert (job.queue_id, job.job_id, job.payload, job.requeues_remaining) == ("q", "j1", {"a": 1}, 2)
        assert client.finish("sms", "q", "j1") is True
        assert client.dequeue("sms") is None


def test_from_config_overrides(tmp_path: Path, server: RedisServer, server_conn: redis.Redis) -> None:
    with Client.from_config(str(tcp_config(tmp_path, server)), key_prefix="override", job_expire_interval=99) as client:
        assert (client.key_prefix, client.job_expire_interval, client.job_requeue_interval) == ("override", 99, 700)
        client.enqueue(queue_id="q", job_id="j", payload=1, interval=5)
        assert server_conn.exists("override:default:q")


def test_from_config_client_owns_its_connection(tmp_path: Path, server: RedisServer) -> None:
    client = Client.from_config(str(tcp_config(tmp_path, server)))
    assert client._owns_redis is True
    client.deep_status()
    client.close()


def test_db_option(tmp_path: Path, server: RedisServer, server_conn: redis.Redis) -> None:
    path = tcp_config(tmp_path, server, extra_redis="").read_text().replace("db : 0", "db : 3")
    (tmp_path / "db3.conf").write_text(path)
    with Client.from_config(str(tmp_path / "db3.conf")) as client:
        client.enqueue(queue_id="q", job_id="j", payload=1, interval=0)
    db3 = redis.Redis(unix_socket_path=server.unix_socket, db=3)
    try:
        assert db3.lrange("cfg_test:default:q", 0, -1) == [b"j"]
        assert not server_conn.exists("cfg_test:default:q")  # db 0
    finally:
        db3.close()


def unix_config(tmp_path: Path, server: RedisServer, extra: str = "") -> Path:
    return write(
        tmp_path,
        f"""
        [sharq]
        job_expire_interval : 1000 ; in milliseconds
        job_requeue_interval : 1000 ; in milliseconds
        default_job_requeue_limit : -1 ; retries infinitely

        [redis]
        db : 2
        key_prefix : sock_prefix
        conn_type : unix_sock ; or tcp_sock
        unix_socket_path : {server.unix_socket}
        port : 1 ; ignored for a unix socket
        host : 192.0.2.1 ; ignored for a unix socket
        {extra}
        """,
        "unix.conf",
    )


def test_unix_socket_client(tmp_path: Path, server: RedisServer, server_conn: redis.Redis) -> None:
    path = unix_config(tmp_path, server)
    assert read_config(path).redis == {"db": 2, "password": None, "unix_socket_path": server.unix_socket}
    with Client.from_config(str(path)) as client:
        kwargs = client.redis.connection_pool.connection_kwargs
        assert kwargs["path"] == server.unix_socket
        assert client.enqueue(queue_id="q", job_id="j", payload="x", interval=0) is True
        job = client.dequeue()
        assert (job.job_id, job.payload) == ("j", "x")
    db2 = redis.Redis(unix_socket_path=server.unix_socket, db=2)
    try:
        assert db2.zrange("sock_prefix:default:active", 0, -1) == [b"q:j"]
    finally:
        db2.close()


def test_unix_socket_sharq(tmp_path: Path, server: RedisServer, server_conn: redis.Redis) -> None:
    sq = SharQ(str(unix_config(tmp_path, server)))
    try:
        assert sq._r.connection_pool.connection_kwargs["path"] == server.unix_socket
        assert sq.enqueue(payload={"k": "v"}, interval=0, job_id="j", queue_id="q", queue_type="t") == {"status": "queued"}
        response = sq.dequeue("t")
        assert response == {"status": "success", "queue_id": "q", "job_id": "j", "payload": {"k": "v"},
                            "requeues_remaining": -1}
        assert sq.finish("j", "q", "t") == {"status": "success"}
        assert sq.deep_status() is True
        assert sq._r.get("sharq:deep_status:sock_prefix") == b"sharq_deep_status"
    finally:
        sq._r.close()


@pytest.fixture
def password_server() -> Iterator[RedisServer]:
    """A private server of its own, given a password at runtime."""
    srv = RedisServer()
    conn = redis.Redis(unix_socket_path=srv.unix_socket)
    conn.config_set("requirepass", "s3cr3t pass")
    conn.close()
    try:
        yield srv
    finally:
        srv.stop()


def test_password(tmp_path: Path, password_server: RedisServer) -> None:
    good = tcp_config(tmp_path, password_server, extra_redis="password : s3cr3t pass ; space inside", name="good.conf")
    assert read_config(good).redis["password"] == "s3cr3t pass"
    with Client.from_config(str(good)) as client:
        assert client.enqueue(queue_id="q", job_id="j", payload=1, interval=0) is True
        assert client.dequeue().job_id == "j"
    sq = SharQ(str(good))
    try:
        assert sq.deep_status() is True
        assert sq.metrics("default") == {"status": "success", "queue_ids": ["q"]}
    finally:
        sq._r.close()

    missing = tcp_config(tmp_path, password_server, name="missing.conf")
    with Client.from_config(str(missing)) as client:
        with pytest.raises(redis.AuthenticationError):
            client.enqueue(queue_id="q", job_id="j2", payload=1, interval=0)

    wrong = tcp_config(tmp_path, password_server, extra_redis="password : nope", name="wrong.conf")
    with Client.from_config(str(wrong)) as client:
        with pytest.raises(redis.AuthenticationError):
            client.deep_status()


def test_username_and_password_acl(tmp_path: Path, server: RedisServer, server_conn: redis.Redis) -> None:
    server_conn.acl_setuser("sharq_user", enabled=True, passwords=["+userpw"], keys=["*"], commands=["+@all"])
    try:
        path = tcp_config(tmp_path, server, extra_redis="username : sharq_user\npassword : userpw")
        with Client.from_config(str(path)) as client:
            assert client.redis.acl_whoami() == "sharq_user" or client.redis.acl_whoami() == b"sharq_user"
            assert client.enqueue(queue_id="q", job_id="j", payload=1, interval=0) is True
    finally:
        server_conn.acl_deluser("sharq_user")


def test_sharq_and_client_from_one_config_interoperate(tmp_path: Path, server: RedisServer, server_conn: redis.Redis) -> None:
    path = str(tcp_config(tmp_path, server))
    sq = SharQ(path)
    try:
        with Client.from_config(path) as client:
            sq.enqueue(payload=[1, 2], interval=0, job_id="from-sharq", queue_id="q", queue_type="t")
            job = client.dequeue("t")
            assert (job.job_id, job.payload, job.requeues_remaining) == ("from-sharq", [1, 2], 2)
            client.enqueue(queue_type="t", queue_id="q", job_id="from-client", payload="p", interval=0)
            assert sq.dequeue("t")["job_id"] == "from-client"
            assert sq.finish("from-sharq", "q", "t") == {"status": "success"}
            assert client.finish("t", "q", "from-client") is True
    finally:
        sq._r.close()


def test_bad_argument_is_not_a_config_error() -> None:
    assert not issubclass(BadArgumentException, ConfigError)
    assert not issubclass(ConfigError, BadArgumentException)


@pytest.mark.parametrize(
    "section,option,value",
    [
        ("sharq", "job_expire_interval", "0"),
        ("sharq", "job_requeue_interval", "-5"),
        ("sharq", "default_job_requeue_limit", "-2"),
        ("redis", "clustered", "maybe"),
    ],
)
def test_out_of_range_values_are_config_errors_naming_the_option(tmp_path, section, option, value):
    path = tmp_path / "sharq.conf"
    path.write_text(f"[{section}]\n{option} : {value} ; comment\n")
    with pytest.raises(ConfigError, match=option):
        read_config(path)
