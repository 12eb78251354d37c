"""The real-process test infrastructure works: RedisServer options, TLS, ACL, the cluster
(keys spread, reshard, failover), the sentinel set (failover, killed master) and the fault
proxy."""

import os
import socket
import threading
import time
from typing import Callable, Iterator, List, TypeVar

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from fault_proxy import FaultProxy, RespCounter
from sharq_fast._processes import free_port
from sharq_fast._redis_cluster import RedisCluster
from sharq_fast._redis_sentinel import RedisSentinelSet
from sharq_fast._redis_server import RedisServer

T = TypeVar("T")


@pytest.fixture
def core() -> None:
    """Overrides conftest's autouse `core`: these tests do not depend on the core, so
    they run once."""
    return None


def no_retry(url: str, **kwargs: object) -> redis.Redis:
    """A client that reports the first connection error instead of retrying."""
    return redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **kwargs)


def after_failover(command: Callable[[], T]) -> T:
    """Run `command` on a sentinel-managed client after a failover: redis-py 8's retries
    reconnect to the stale address (redis/redis-py#3874), so the first command on a
    connection to the old master fails once; the next one asks the sentinels again."""
    try:
        return command()
    except redis.ConnectionError:
        return command()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# -- RedisServer ---------------------------------------------------------------------


def test_debug_server_can_be_stalled(debug_redis: RedisServer) -> None:
    with socket.create_connection(("127.0.0.1", debug_redis.port), timeout=5) as sleeper:
        sleeper.sendall(b"*3\r\n$5\r\nDEBUG\r\n$5\r\nSLEEP\r\n$1\r\n1\r\n")
        conn = debug_redis.client(socket_timeout=0.2, retry=Retry(NoBackoff(), 0))
        stalled = False
        deadline = time.monotonic() + 1
        while not stalled and time.monotonic() < deadline:  # until the sleep has begun
            try:
                conn.ping()
            except redis.TimeoutError:
                stalled = True
        assert stalled
        assert sleeper.recv(10) == b"+OK\r\n"
    assert conn.ping()
    conn.close()


def test_extra_args_and_pid() -> None:
    with RedisServer(args=["--maxmemory", "10mb"]) as server:
        assert server.client().config_get("maxmemory") == {"maxmemory": str(10 * 2**20)}
        pid = server.pid
        assert pid is not None and server.process is not None and pid == server.process.pid
    assert server.pid is None and gone(pid) and not os.path.exists(server.dir)


@pytest.mark.parametrize("kill", [False, True])
def test_restart_with_appendonly_keeps_data_on_the_same_port(kill: bool) -> None:
    with RedisServer(appendonly=True) as server:
        server.client().set("k", "v")
        pid, port = server.pid, server.port
        assert pid is not None
        server.restart(kill=kill)
        assert server.pid != pid and gone(pid) and server.port == port
        assert server.client().get("k") == b"v"


def test_restart_without_appendonly_loses_data() -> None:
    with RedisServer() as server:
        server.client().set("k", "v")
        server.restart(kill=True)
        assert server.client().get("k") is None


def test_password() -> None:
    with RedisServer(password="s3cret") as server:
        with pytest.raises(redis.AuthenticationError):
            no_retry(server.url).ping()
        assert no_retry(server.url, password="s3cret").ping()
        assert server.client().ping()


def test_acl_user_limited_to_a_prefix() -> None:
    with RedisServer(users=["app on >apppw ~app:* +@all -@dangerous"]) as server:
        server.acl_setuser("reader on >rpw ~app:* +get")
        app = no_retry(server.url, username="app", password="apppw")
        assert app.set("app:x", 1)
        with pytest.raises(redis.exceptions.NoPermissionError):
            app.set("other:x", 1)
        with pytest.raises(redis.exceptions.NoPermissionError):
            app.flushall()
        reader = no_retry(server.url, username="reader", password="rpw")
        assert reader.get("app:x") == b"1"
        with pytest.raises(redis.exceptions.NoPermissionError):
            reader.set("app:y", 1)
        server.restart()  # users from the constructor come back, runtime ones do not
        assert no_retry(server.url, username="app", password="apppw").ping()
        with pytest.raises(redis.AuthenticationError):
            no_retry(server.url, username="reader", password="rpw").ping()


def test_taken_port_fails_cleanly() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(RuntimeError, match="(?s)exited while starting.*Address already in use"):
            RedisServer(port=busy.getsockname()[1])


# -- TLS -----------------------------------------------------------------------------


def test_tls_verifies_with_the_ca(tls_redis: RedisServer) -> None:
    assert tls_redis.url.startswith("rediss://127.0.0.1:")
    conn = no_retry(tls_redis.url, ssl_ca_certs=tls_redis.ca_path)
    assert conn.set("tls", 1) and conn.get("tls") == b"1"
    conn.close()


def test_tls_without_the_ca_fails(tls_redis: RedisServer) -> None:
    with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        no_retry(tls_redis.url, socket_timeout=5).ping()
    with pytest.raises(redis.ConnectionError):  # plain text on the TLS port
        no_retry(f"redis://127.0.0.1:{tls_redis.port}/0", socket_timeout=2).ping()


# -- cluster -------------------------------------------------------------------------


def test_cluster_spreads_keys_over_three_masters(redis_cluster: RedisCluster) -> None:
    masters = redis_cluster.masters()
    assert len(masters) == 3 and [n.role for n in redis_cluster.nodes] == ["master"] * 3
    assert redis_cluster.url == "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in redis_cluster.startup_nodes)
    assert sorted(p for _h, p in redis_cluster.startup_nodes) == sorted(masters)
    client = redis_cluster.client()
    try:
        for i in range(300):
            client.set(f"spread:{i}", i)
        counts = [redis_cluster.node_client(p).dbsize() for p in masters]
        assert all(c > 0 for c in counts) and sum(counts) == 300
    finally:
        client.close()
        redis_cluster.flushall()


def test_cluster_reshard_while_a_client_writes(redis_cluster: RedisCluster) -> None:
    slot = RedisCluster.key_slot("{moving}")
    source = redis_cluster.slot_owner(slot)
    target = next(p for p in redis_cluster.masters() if p != source)
    client = redis_cluster.client()
    written: List[int] = []
    errors: List[BaseException] = []
    stop = threading.Event()

    def writer() -> None:
        try:
            while not stop.is_set():
                client.set(f"{{moving}}:{len(written)}", 1)
                written.append(1)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.2)
        assert redis_cluster.reshard(source, target, [slot]) == [slot]
        time.sleep(0.2)
    finally:
        stop.set()
        thread.join()
    try:
        assert not errors and len(written) > 10
        assert redis_cluster.slot_owner(slot) == target
        assert redis_cluster.node_client(target).execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == len(written)
        assert client.get("{moving}:0") == b"1"
        moved = redis_cluster.reshard(target, source, 3)  # a count: target's lowest slots
        assert len(moved) == 3 and all(redis_cluster.slot_owner(s) == source for s in moved)
    finally:
        client.close()
        redis_cluster.flushall()


def test_cluster_kill_master_promotes_its_replica(redis_cluster_replicas: RedisCluster) -> None:
    cluster = redis_cluster_replicas
    roles = sorted(n.role for n in cluster.nodes)
    assert roles == ["master"] * 3 + ["replica"] * 3
    client = cluster.client()
    try:
        for i in range(100):
            client.set(f"k{i}", i)
        for port in cluster.masters():
            assert cluster.node_client(port).wait(1, 5000) == 1
        victim = cluster.masters()[0]
        replica = next(n.port for n in cluster.nodes if n.master_port == victim)
        pid = next(n.pid for n in cluster.nodes if n.port == victim)
        assert pid is not None
        assert cluster.kill_master(0) == replica
        assert gone(pid) and victim not in cluster.masters() and replica in cluster.masters()
        assert len(cluster.nodes) == 5 and victim not in [p for _h, p in cluster.startup_nodes]
        fresh = cluster.client()
        assert [fresh.get(f"k{i}") for i in range(100)] == [str(i).encode() for i in range(100)]
        fresh.close()
    finally:
        client.close()


# -- sentinel ------------------------------------------------------------------------


def test_sentinel_failover_is_followed_by_redis_py(redis_sentinel: RedisSentinelSet) -> None:
    ports = [p for _h, p in redis_sentinel.sentinel_addresses]
    assert len(ports) == 3
    assert redis_sentinel.url == "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in ports) + "/mymaster/0"
    old = redis_sentinel.master_address()
    master = redis_sentinel.sentinel(socket_timeout=2).master_for("mymaster")
    master.set("before", 1)
    new = redis_sentinel.failover()
    assert new != old and redis_sentinel.master_address() == new
    after_failover(lambda: master.set("after", 1))  # redis-py asks the sentinels again
    assert master.connection_pool.get_master_address() == new
    assert redis_sentinel.server(new[1]).client().get("after") == b"1"
    old_info = redis_sentinel.server(old[1]).client().info("replication")
    assert old_info["role"] == "slave" and old_info["master_port"] == new[1]
    master.close()


def test_sentinel_kill_master_then_revive(redis_sentinel: RedisSentinelSet) -> None:
    old = redis_sentinel.master_address()
    master = redis_sentinel.sentinel(socket_timeout=2).master_for("mymaster")
    master.set("k", 1)
    assert redis_sentinel.server(old[1]).client().wait(1, 5000) == 1
    pid = redis_sentinel.server(old[1]).pid
    new = redis_sentinel.kill_master()
    assert new != old and pid is not None and gone(pid)
    assert after_failover(lambda: master.get("k")) == b"1"
    assert master.connection_pool.get_master_address() == new
    assert redis_sentinel.revive() == new
    info = redis_sentinel.server(old[1]).client().info("replication")
    assert info["role"] == "slave" and info["master_port"] == new[1] and info["master_link_status"] == "up"
    master.close()


def test_sentinel_with_passwords_and_clean_stop() -> None:
    with RedisSentinelSet(password="datapw", sentinel_password="sentpw") as sentinel_set:
        assert sentinel_set.url.startswith("redis+sentinel://:datapw@127.0.0.1:")
        host, port = sentinel_set.master_address()
        with pytest.raises(redis.AuthenticationError):
            no_retry(f"redis://{host}:{port}/0").ping()
        h, p = sentinel_set.sentinel_addresses[0]
        with pytest.raises(redis.AuthenticationError):
            no_retry(f"redis://{h}:{p}/0").execute_command("SENTINEL", "MASTERS")
        master = sentinel_set.sentinel(socket_timeout=2).master_for("mymaster")
        assert master.set("k", 1) and master.get("k") == b"1"
        master.close()
        pids = [s.pid for s in sentinel_set.servers + sentinel_set.sentinels]
        dirs = [s.dir for s in sentinel_set.servers + sentinel_set.sentinels]
    assert all(pid is not None and gone(pid) for pid in pids)
    assert not any(os.path.exists(d) for d in dirs)


# -- fault proxy ---------------------------------------------------------------------


@pytest.fixture
def proxied(fault_proxy: FaultProxy) -> Iterator[redis.Redis]:
    """A no-retry client through the proxy, already connected (its handshake done)."""
    conn = no_retry(fault_proxy.url, socket_timeout=2)
    conn.ping()
    yield conn
    conn.close()


def test_cut_next_reply_loses_the_reply_of_a_command_that_ran(
    fault_proxy: FaultProxy, proxied: redis.Redis, debug_redis: RedisServer
) -> None:
    fault_proxy.cut_next_reply()
    with pytest.raises(redis.ConnectionError):
        proxied.incr("counter")
    assert debug_redis.client().get("counter") == b"1"
    assert fault_proxy.cuts == 1
    assert proxied.incr("counter") == 2  # a new connection works


def test_pipelines_pass_through_and_are_counted(fault_proxy: FaultProxy, proxied: redis.Redis) -> None:
    requests = fault_proxy.requests
    pipe = proxied.pipeline(transaction=False)
    for i in range(3000):
        pipe.set(f"k{i}", "x" * (i % 700))
    pipe.get("k699")
    assert pipe.execute()[-1] == b"x" * 699
    assert fault_proxy.requests - requests == 3001
    assert fault_proxy.replies == fault_proxy.requests and fault_proxy.cuts == 0


def test_cut_after_requests_cuts_inside_a_pipeline(
    fault_proxy: FaultProxy, proxied: redis.Redis, debug_redis: RedisServer
) -> None:
    fault_proxy.cut_after_requests(3)
    pipe = proxied.pipeline(transaction=False)
    for _ in range(5):
        pipe.incr("n")
    with pytest.raises(redis.ConnectionError):
        pipe.execute()
    assert debug_redis.client().get("n") == b"5"  # all five ran
    assert fault_proxy.cuts == 1


def test_cut_after_requests_delivers_the_replies_before_the_cut(fault_proxy: FaultProxy) -> None:
    with socket.create_connection(("127.0.0.1", fault_proxy.port), timeout=2) as sock:
        sock.sendall(b"PING\r\n")  # counted too (an inline command)
        assert sock.recv(100) == b"+PONG\r\n"
        fault_proxy.cut_after_requests(3)
        sock.sendall(b"*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n" * 5)  # five pipelined INCRs
        received = b""
        while True:
            chunk = sock.recv(100)
            if not chunk:
                break
            received += chunk
    assert received == b":1\r\n:2\r\n"
    assert fault_proxy.requests == 6 and fault_proxy.replies == 3 and fault_proxy.cuts == 1


def test_drop_connections_ends_a_blocked_command(
    fault_proxy: FaultProxy, proxied: redis.Redis, debug_redis: RedisServer
) -> None:
    errors: List[BaseException] = []

    def blocked() -> None:
        try:
            proxied.blpop(["never"], timeout=5)
        except BaseException as exc:  # noqa: BLE001 - checked below
            errors.append(exc)

    thread = threading.Thread(target=blocked)
    thread.start()
    direct = debug_redis.client()
    deadline = time.monotonic() + 5
    while direct.info("clients")["blocked_clients"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    fault_proxy.drop_connections()
    thread.join(3)
    assert not thread.is_alive() and isinstance(errors[0], redis.ConnectionError)


def test_refuse_accepts_then_closes(fault_proxy: FaultProxy) -> None:
    fault_proxy.refuse(True)
    with socket.create_connection(("127.0.0.1", fault_proxy.port), timeout=2) as sock:
        try:  # connected, but closed without a reply (a reset if the PING came first)
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            assert sock.recv(10) == b""
        except ConnectionResetError:
            pass
    with pytest.raises(redis.ConnectionError):
        no_retry(fault_proxy.url, socket_timeout=2).ping()
    fault_proxy.refuse(False)
    assert no_retry(fault_proxy.url, socket_timeout=2).ping()
    assert fault_proxy.refused == 2


def test_blackhole_hangs_until_lifted(fault_proxy: FaultProxy, debug_redis: RedisServer) -> None:
    connected = no_retry(fault_proxy.url, socket_timeout=0.3)
    connected.ping()
    fault_proxy.blackhole(True)
    with pytest.raises(redis.TimeoutError):
        connected.set("held", 1)
    with pytest.raises(redis.TimeoutError):  # a new connection hangs too
        no_retry(fault_proxy.url, socket_timeout=0.3).ping()
    assert debug_redis.client().get("held") is None
    fault_proxy.blackhole(False)
    assert no_retry(fault_proxy.url, socket_timeout=2).ping()
    connected.close()


def test_close_leaves_no_threads_or_sockets(debug_redis: RedisServer) -> None:
    fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    proxy = FaultProxy("127.0.0.1", debug_redis.port)
    clients = [no_retry(proxy.url) for _ in range(5)]
    for conn in clients:
        conn.ping()
    proxy.blackhole(True)
    proxy.close()
    for conn in clients:
        conn.close()
    assert not [t for t in threading.enumerate() if t.name.startswith(f"fault-proxy-{proxy.port}")]
    if fds is not None:
        assert len(os.listdir("/proc/self/fd")) == fds
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()


def test_proxy_to_a_dead_target_closes_the_client() -> None:
    with FaultProxy("127.0.0.1", free_port()) as proxy:
        with pytest.raises(redis.ConnectionError):
            no_retry(proxy.url, socket_timeout=2).ping()
        assert proxy.open_connections == 0


def test_resp_counter_finds_value_ends_across_any_chunking() -> None:
    stream = (
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n"  # a request
        b"PING\r\n"  # an inline command
        b"+OK\r\n-ERR x\r\n:5\r\n$-1\r\n*-1\r\n*0\r\n"
        b"*2\r\n*1\r\n:1\r\n$2\r\nab\r\n"  # nested
        b"%1\r\n+a\r\n~2\r\n_\r\n,1.5\r\n"  # RESP3 map with a set
        b"|1\r\n+key\r\n+val\r\n#t\r\n"  # an attribute, then its value
        b">2\r\n+message\r\n=7\r\ntxt:abc\r\n"
    )
    whole = RespCounter().feed(stream)
    assert len(whole) == 12 and whole[-1] == len(stream)
    for size in (1, 2, 3, 7):
        counter = RespCounter()
        ends: List[int] = []
        for start in range(0, len(stream), size):
            ends += [start + e for e in counter.feed(stream[start:start + size])]
        assert ends == whole and counter.count == 12
