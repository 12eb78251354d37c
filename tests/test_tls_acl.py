"""TLS and Redis ACL users: everything sharq_fast does, over ``rediss://`` with the CA
verified, and as an ACL user holding exactly the line README.md documents (read from the
README, so the documented line is the tested one); clear errors for a certificate that
does not verify, a wrong password, and users without the rights.

The workload covers every command sharq_fast sends: the scripts of every operation (their
KEYS and the commands inside them), NOSCRIPT recovery (SCRIPT LOAD), waiting dequeues
(PSUBSCRIBE, woken by PUBLISH), the requeuer's lock, metrics, deep status, the SharQ
drop-in, the commands stats and requeue, and sharq-fast serve.
"""

import logging
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, List

import httpx
import pytest
import redis

import sharq_fast
from sharq_fast import Client, SharQ
from sharq_fast._redis_server import RedisServer
from sharq_fast._tls_certs import make_tls_files
from sharq_fast.cli import main

from async_facade import SyncFacade
from conftest import FakeClock
from http_helpers import ServeProcess
from test_sharq_dropin import render_config

README = Path(__file__).resolve().parent.parent / "README.md"
PREFIX = "acl_app"
PASSWORD = "s3cret-pw"
EXPIRE = 60_000


@pytest.fixture(autouse=True)
def core() -> None:
    """Once, not once per core: TLS and ACL are the transport's and Redis' business."""


def documented_acl_line(user: str = "sharq", password: str = PASSWORD, prefix: str = PREFIX) -> str:
    """README's ACL SETUSER line for `prefix`, as ACL SETUSER arguments."""
    (line,) = [line for line in README.read_text().splitlines() if line.startswith("ACL SETUSER sharq on ")]
    rules = line[len("ACL SETUSER sharq "):]
    rules = rules.replace(">PASSWORD", f">{password}").replace("~P:*", f"~{prefix}:*")
    rules = re.sub(r":P\b", f":{prefix}", rules).replace("&P:", f"&{prefix}:")
    assert "P:" not in rules.replace(f"{prefix}:", ""), rules
    return f"{user} {rules}"


def without(line: str, rule: str) -> str:
    """`line` less one of its rules."""
    rules = line.split()
    rules.remove(rule)
    return " ".join(rules)


def user_url(server: RedisServer, user: str, password: str = PASSWORD) -> str:
    """The server's URL for `user` (with the CA, over TLS)."""
    scheme, rest = server.url.split("://", 1)
    url = f"{scheme}://{user}:{password}@{rest}"
    if server.tls:
        url += f"?ssl_ca_certs={server.ca_path}&ssl_check_hostname=true"
    return url


@pytest.fixture(scope="module")
def acl_redis() -> Iterator[RedisServer]:
    """A Redis with the documented user, and users that lack one right each."""
    line = documented_acl_line()
    users = [
        line,
        without(documented_acl_line("nochannel"), f"&{PREFIX}:.wake:*"),
        without(documented_acl_line("noscripts"), "+evalsha"),
        documented_acl_line("otherprefix", prefix="other_app"),
    ]
    with RedisServer(users=users) as server:
        yield server


@pytest.fixture
def admin(acl_redis: RedisServer) -> Iterator[redis.Redis]:
    conn = acl_redis.client()
    conn.flushall()
    yield conn
    conn.close()


@pytest.fixture
def tls_admin(tls_redis: RedisServer) -> Iterator[redis.Redis]:
    """The session's TLS server, with the documented user (ACL SETUSER on the TLS server
    itself: TLS and ACL at once); the prefix's keys are removed afterwards."""
    tls_redis.acl_setuser(documented_acl_line())
    conn = tls_redis.client()
    yield conn
    keys = conn.keys(f"{PREFIX}:*") + conn.keys(f"sharq:*:{PREFIX}")
    if keys:
        conn.delete(*keys)
    conn.close()


@pytest.fixture
def connect(transport: str, loop_thread: Any) -> Iterator[Callable[..., Any]]:
    """connect(url, **settings): a Client or an AsyncClient (behind a sync facade)."""
    made: List[Any] = []

    def make(url: str, **settings: Any) -> Any:
        settings.setdefault("key_prefix", PREFIX)
        if transport == "sync":
            client: Any = sharq_fast.Client(url, **settings)
        else:
            client = SyncFacade(loop_thread, lambda: sharq_fast.AsyncClient(url, **settings))
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def workload(connect: Callable[..., Any], url: str, admin: redis.Redis, tmp_path: Path,
             caplog: pytest.LogCaptureFixture) -> None:
    """Everything sharq_fast does, through `url`; checks the answers, that nothing was
    refused in the background (the requeuer logs its errors), and that every key written
    is the prefix's or one of SharQ's two."""
    caplog.set_level(logging.WARNING, logger="sharq_fast")
    others = set(admin.keys("*"))  # (the session's TLS server has other tests' keys)
    clock = FakeClock()
    client = connect(url, clock=clock, job_expire_interval=EXPIRE, job_requeue_interval=50, wait_poll_interval=30)
    job = {"queue_type": "sms", "queue_id": "q1", "payload": {"to": "+1"}, "interval": 0}
    assert client.enqueue(job_id="j1", requeue_limit=0, **job) is True
    assert client.enqueue(job_id="j1", **job) is False
    assert client.enqueue_many([{"job_id": f"b{n}", **job} for n in range(3)]).enqueued == 3
    assert client.interval("sms", "q1", 0) is True
    jobs = client.dequeue_many("sms", 10)
    assert [j.job_id for j in jobs] == ["j1", "b0", "b1", "b2"]
    assert client.extend(jobs[0], 1000) is True
    assert client.release(jobs[1]) is True
    assert client.finish_many(jobs[2:]) == [True, True]
    again = client.dequeue("sms")
    assert again.job_id == "b0" and client.finish("sms", "q1", "b0") is True
    clock.advance(EXPIRE)
    result = client.requeue()  # j1 (limit 0) is discarded
    assert [j.job_id for j in result.discarded] == ["j1"]
    # Metrics (the per-minute counters are bumped by pcall: a refused INCRBY is silent),
    # queue length, deep status.
    totals = client.metrics()
    assert (sum(totals.enqueue_counts.values()), sum(totals.dequeue_counts.values())) == (4, 5)
    assert client.metrics("sms").queue_ids == []
    assert client.metrics("sms", "q1").queue_length == 0 and client.queue_length("sms", "q1") == 0
    assert client.deep_status() is True
    # clear_queue, with its purge in steps.
    assert client.enqueue_many([{"job_id": f"c{n}", **job, "queue_id": "q9"} for n in range(3)]).enqueued == 3
    assert client.clear_queue("sms", "q9", purge_all=True) is True
    # fail: a retry, then out of requeues into a dead-letter type.
    assert client.enqueue(job_id="f1", requeue_limit=1, **{**job, "queue_id": "q8"}) is True
    failing = client.dequeue("sms")
    assert client.fail(failing, dead_letter="sms_dead").value == "retried"
    clock.advance(1)
    failing = client.dequeue("sms")
    assert client.fail(failing, dead_letter="sms_dead").value == "dead_lettered"
    assert client.dequeue("sms_dead").job_id == "f1"
    # NOSCRIPT: the scripts are loaded again (SCRIPT LOAD).
    admin.script_flush()
    assert client.enqueue(job_id="n1", **job) is True and client.dequeue("sms").job_id == "n1"
    # A waiting dequeue is woken by the enqueue's PUBLISH (its poll is 30 s away).
    producer = Client(url, key_prefix=PREFIX, clock=clock)
    try:
        timer = threading.Timer(0.3, lambda: producer.enqueue(job_id="w1", **{**job, "queue_type": "wake"}))
        timer.start()
        started = time.monotonic()
        woken = client.dequeue("wake", timeout=10)
        assert woken is not None and woken.job_id == "w1" and time.monotonic() - started < 5
        timer.join()
    finally:
        producer.close()
    # The requeuer takes, keeps (PEXPIRE) and gives back (DEL) its lock.
    lock = f"sharq:requeue_lock:{PREFIX}"
    client.start_requeuer()
    wait_for(lambda: admin.exists(lock) == 1)
    time.sleep(0.3)  # rounds every 50 ms: the lock is kept several times
    client.stop_requeuer()
    assert admin.exists(lock) == 0
    if url.startswith("redis://"):  # (sharq.conf has no TLS settings)
        _sharq_dropin(url, tmp_path)
    # Nothing outside the prefix but SharQ's two keys.
    foreign = [key for key in set(admin.keys("*")) - others if not key.startswith(f"{PREFIX}:".encode())]
    assert set(foreign) <= {f"sharq:deep_status:{PREFIX}".encode(), lock.encode()}, foreign
    assert [record.getMessage() for record in caplog.records if record.name.startswith("sharq_fast")] == []


def _sharq_dropin(url: str, tmp_path: Path) -> None:
    """The SharQ drop-in, from a sharq.conf with the user."""
    config = render_config(tmp_path / "sharq.conf", "redis://127.0.0.1:6379/0", sharq={},
                           redis_opts=_config_redis(url))
    sq = SharQ(str(config))
    try:
        assert sq.enqueue(payload=1, interval=0, job_id="s1", queue_id="q2", queue_type="sms") == {"status": "queued"}
        assert sq.dequeue("sms")["job_id"] == "s1" and sq.finish("s1", "q2", "sms") == {"status": "success"}
        assert sq.metrics("sms")["status"] == "success"
    finally:
        sq._client.close()


def _config_redis(url: str) -> dict:
    """sharq.conf [redis] options for `url` (user, password, port; no TLS: the config
    has no TLS settings)."""
    match = re.match(r"rediss?://([^:]+):([^@]+)@127\.0\.0\.1:(\d+)/", url)
    assert match, url
    return {"username": match.group(1), "password": match.group(2), "port": match.group(3), "key_prefix": PREFIX}


# -- ACL ---------------------------------------------------------------------------------------


def test_documented_acl_user_runs_everything(acl_redis: RedisServer, admin: redis.Redis, connect: Any,
                                             tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    workload(connect, user_url(acl_redis, "sharq"), admin, tmp_path, caplog)


def test_wrong_password_is_a_clear_error_at_once(acl_redis: RedisServer, connect: Any) -> None:
    for user, password in (("sharq", "wrong"), ("nobody", PASSWORD)):
        client = connect(user_url(acl_redis, user, password))
        started = time.monotonic()
        with pytest.raises(redis.AuthenticationError, match="invalid username-password pair"):
            client.enqueue(queue_id="q1", job_id="j1", payload=1, interval=0)
        assert time.monotonic() - started < 2  # not retried for retry_for


def test_user_without_rights_gets_noperm_and_nothing_changes(acl_redis: RedisServer, admin: redis.Redis,
                                                             connect: Any) -> None:
    job = {"queue_id": "q1", "job_id": "j1", "payload": 1, "interval": 0}
    client = connect(user_url(acl_redis, "noscripts"))
    with pytest.raises(redis.exceptions.NoPermissionError, match="no permissions to run the 'evalsha' command"):
        client.enqueue(**job)
    # A user of another prefix may not touch this one's keys.
    client = connect(user_url(acl_redis, "otherprefix"))
    with pytest.raises(redis.exceptions.NoPermissionError, match="no permissions to access one of the keys"):
        client.enqueue(**job)
    with pytest.raises(redis.exceptions.NoPermissionError, match="keys"):
        client.metrics("default")
    assert admin.keys("*") == []


def test_user_without_the_wake_channel_enqueues_but_cannot_wait(acl_redis: RedisServer, admin: redis.Redis,
                                                               connect: Any) -> None:
    client = connect(user_url(acl_redis, "nochannel"))
    assert client.enqueue(queue_id="q1", job_id="j1", payload=1, interval=0) is True  # PUBLISH refused quietly
    assert client.dequeue().job_id == "j1"
    with pytest.raises(redis.exceptions.NoPermissionError, match=re.escape(f"&{PREFIX}:.wake:*")):
        client.dequeue(timeout=0.1)


def test_commands_and_server_as_the_documented_user(acl_redis: RedisServer, admin: redis.Redis,
                                                    capsys: pytest.CaptureFixture) -> None:
    url = user_url(acl_redis, "sharq")
    with Client(url, key_prefix=PREFIX) as client:
        client.enqueue(queue_type="sms", queue_id="q1", job_id="j1", payload=1, interval=0)
    assert main(["stats", "--url", url, "--key-prefix", PREFIX, "sms", "q1", "--json"]) == 0
    assert '"queue_length": 1' in capsys.readouterr().out
    assert main(["requeue", "--url", url, "--key-prefix", PREFIX]) == 0
    _serve_cycle(url)


def _serve_cycle(url: str) -> None:
    """sharq-fast serve on `url`: routes that use every kind of call, its requeuer too."""
    server = ServeProcess(url, "--key-prefix", PREFIX)
    try:
        with httpx.Client(base_url=server.url, timeout=20) as http:
            body = {"job_id": "h1", "payload": {"n": 1}, "interval": 0}
            assert http.post("/enqueue/web/q7/", json=body).status_code == 201
            assert http.get("/dequeue/web/").json()["job_id"] == "h1"
            assert http.post("/finish/web/q7/h1/").status_code == 200
            assert http.get("/batch/dequeue/web/?count=5&wait=0.2").json()["jobs"] == []  # waits: PSUBSCRIBE
            assert http.get("/metrics/").status_code == 200 and http.get("/metrics/web/q7/").status_code == 200
            assert http.get("/deepstatus/").status_code == 200
    finally:
        server.close()
    assert "NOPERM" not in server_output(server) and "Traceback" not in server_output(server)


def server_output(server: ServeProcess) -> str:
    try:
        return server.output()
    except OSError:  # the log is removed by close()
        return ""


# -- TLS ---------------------------------------------------------------------------------------


def test_everything_over_tls_as_the_documented_user(tls_redis: RedisServer, tls_admin: redis.Redis,
                                                    connect: Any, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """rediss:// with the CA verified (host name too), as the ACL user."""
    workload(connect, user_url(tls_redis, "sharq"), tls_admin, tmp_path, caplog)


def test_commands_and_server_over_tls(tls_redis: RedisServer, tls_admin: redis.Redis,
                                      capsys: pytest.CaptureFixture) -> None:
    url = user_url(tls_redis, "sharq")
    assert main(["stats", "--url", url, "--key-prefix", PREFIX, "--json"]) == 0
    assert '"key_prefix"' in capsys.readouterr().out
    _serve_cycle(url)


def test_certificate_of_another_ca_is_a_clear_error_at_once(tls_redis: RedisServer, connect: Any) -> None:
    other = make_tls_files(tempfile.mkdtemp(prefix="sharq-fast-ca-"))
    for ca in (other.ca_cert, None):  # another CA; none (the system's store)
        url = tls_redis.url + (f"?ssl_ca_certs={ca}" if ca else "")
        client = connect(url)
        started = time.monotonic()
        with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            client.enqueue(queue_id="q1", job_id="j1", payload=1, interval=0)
        assert time.monotonic() - started < 2  # not retried for retry_for (10 s)
