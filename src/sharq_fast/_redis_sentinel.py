"""A private Redis Sentinel deployment for tests and benchmarks: a master, `replicas`
replicas and `sentinels` ``redis-server --sentinel`` processes (each with its own writable
config file), on free ports of 127.0.0.1; it can fail over on request or after the master
is killed.

Never touches a Redis it did not start; stop() ends every process by PID and removes the
folders.
"""

import os
import shutil
import subprocess
import tempfile
from typing import Any, Dict, List, Optional, Tuple

import redis
import redis.sentinel

from ._processes import free_port, log_tail, spawn, stop_process, wait_until
from ._redis_server import RedisServer, _require_redis_server

__all__ = ["RedisSentinelSet", "SentinelProcess"]

Address = Tuple[str, int]
_PROBE_KEY = "__sharq_fast_write_probe__"


def _as_dict(reply: Any) -> Dict[str, str]:
    """A flat [key, value, ...] reply (or a map) as a dict of strings."""
    if isinstance(reply, dict):
        items = list(reply.items())
    else:
        items = list(zip(reply[::2], reply[1::2]))
    return {_text(k): _text(v) for k, v in items}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SentinelProcess:
    """One ``redis-server <config> --sentinel`` on a free port, with its own folder and
    config file (Sentinel rewrites it). `config` holds the lines after ``port``/``dir``."""

    def __init__(self, binary: str, config: List[str], password: Optional[str], startup_timeout: float) -> None:
        self.binary = binary
        self.password = password
        self.dir = tempfile.mkdtemp(prefix="sharq-fast-sentinel-")
        self.config_path = os.path.join(self.dir, "sentinel.conf")
        self.log_path = os.path.join(self.dir, "sentinel.log")
        self.process: Optional["subprocess.Popen[bytes]"] = None
        self._conn: Optional[redis.Redis] = None
        try:
            for attempt in range(5):  # another process may take the port before we bind it
                self.port = free_port()
                with open(self.config_path, "w") as f:
                    f.write("\n".join([f"port {self.port}", "bind 127.0.0.1", "daemonize no", f'dir "{self.dir}"',
                                       f'logfile "{self.log_path}"', *config]) + "\n")
                self.process = spawn([binary, self.config_path, "--sentinel"], self.log_path)
                try:
                    wait_until(lambda: self.conn().ping(), f"sentinel on port {self.port}", startup_timeout, 0.02,
                               self._check_alive)
                    return
                except (RuntimeError, TimeoutError):
                    stop_process(self.process, kill=True)
                    if attempt == 4:
                        raise
        except BaseException:
            self.stop()
            raise

    def _check_alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"sentinel exited while starting on port {self.port}:\n{log_tail(self.log_path)}")

    @property
    def pid(self) -> Optional[int]:
        """PID of the running sentinel, None when it is not running."""
        if self.process is None or self.process.poll() is not None:
            return None
        return self.process.pid

    def conn(self) -> redis.Redis:
        """A client on this sentinel, owned by it (do not close)."""
        if self._conn is None:
            self._conn = redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=10)
        return self._conn

    def stop(self) -> None:
        """Stop the sentinel and remove its folder."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self.process is not None:
            stop_process(self.process)
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisSentinelSet:
    """A master with `replicas` replicas, watched by `sentinels` sentinels under
    `master_name`.

    `password`: requirepass/masterauth on the data nodes, ``sentinel auth-pass`` on the
    sentinels; `sentinel_password`: requirepass on the sentinels (and ``sentinel
    sentinel-pass`` between them). `down_after_ms`/`failover_timeout_ms` are short, so a
    killed master is replaced within a few seconds; `startup_timeout` bounds every wait.
    Extra keyword arguments (`debug`, `args`, ...) go to every data node's RedisServer.
    """

    def __init__(
        self,
        replicas: int = 1,
        sentinels: int = 3,
        password: Optional[str] = None,
        master_name: str = "mymaster",
        *,
        sentinel_password: Optional[str] = None,
        binary: Optional[str] = None,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        startup_timeout: float = 60.0,
        **server_options: Any,
    ) -> None:
        if replicas < 1 or sentinels < 1:
            raise ValueError("a sentinel set needs at least one replica and one sentinel")
        self.binary = _require_redis_server(binary)
        self.password = password
        self.sentinel_password = sentinel_password
        self.master_name = master_name
        self.timeout = startup_timeout
        self.servers: List[RedisServer] = []
        self.sentinels: List[SentinelProcess] = []
        try:
            options = dict(server_options, password=password, startup_timeout=startup_timeout)
            master = RedisServer(self.binary, **options)
            self.servers.append(master)
            replica_args = ["--replicaof", "127.0.0.1", str(master.port), *server_options.pop("args", ())]
            for _ in range(replicas):
                self.servers.append(RedisServer(self.binary, **dict(options, args=replica_args)))
            wait_until(lambda: self._replicas_synced(master.port), "the replicas to sync", self.timeout, 0.05)
            config = [
                f"sentinel monitor {master_name} 127.0.0.1 {master.port} {sentinels // 2 + 1}",
                f"sentinel down-after-milliseconds {master_name} {down_after_ms}",
                f"sentinel failover-timeout {master_name} {failover_timeout_ms}",
                f"sentinel parallel-syncs {master_name} 1",
            ]
            if password is not None:
                config.append(f"sentinel auth-pass {master_name} {password}")
            if sentinel_password is not None:
                config += [f"requirepass {sentinel_password}", f"sentinel sentinel-pass {sentinel_password}"]
            for _ in range(sentinels):
                self.sentinels.append(SentinelProcess(self.binary, config, sentinel_password, startup_timeout))
            self.wait_settled()
        except BaseException:
            self.stop()
            raise

    # -- addresses -------------------------------------------------------------------

    @property
    def sentinel_addresses(self) -> List[Address]:
        """(host, port) of every live sentinel."""
        return [("127.0.0.1", s.port) for s in self.sentinels if s.pid is not None]

    @property
    def url(self) -> str:
        """``redis+sentinel://[:password@]127.0.0.1:p1,...,127.0.0.1:pN/<master_name>/0``."""
        auth = f":{self.password}@" if self.password is not None else ""
        hosts = ",".join(f"{h}:{p}" for h, p in self.sentinel_addresses)
        return f"redis+sentinel://{auth}{hosts}/{self.master_name}/0"

    def sentinel(self, **kwargs: Any) -> redis.sentinel.Sentinel:
        """A redis-py Sentinel on the live sentinels (passwords filled in; `kwargs` are
        options of the data connections, e.g. socket_timeout)."""
        options: Dict[str, Any] = {"password": self.password}
        options.update(kwargs)
        return redis.sentinel.Sentinel(
            self.sentinel_addresses, sentinel_kwargs={"password": self.sentinel_password}, **options
        )

    def master_address(self) -> Address:
        """The master's (host, port) according to the first sentinel that answers."""
        error: Optional[Exception] = None
        for sentinel in self._live_sentinels():
            try:
                host, port = sentinel.conn().execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
                return _text(host), int(port)
            except redis.RedisError as exc:
                error = exc
        raise RuntimeError(f"no sentinel answered: {error!r}")

    def server(self, port: int) -> RedisServer:
        """The data node (master or replica) on `port`."""
        for server in self.servers:
            if server.port == port:
                return server
        raise KeyError(f"no data node of this set on port {port}")

    def _live_sentinels(self) -> List[SentinelProcess]:
        return [s for s in self.sentinels if s.pid is not None]

    # -- waiting ---------------------------------------------------------------------

    def _node(self, port: int) -> redis.Redis:
        return self.server(port).client(socket_timeout=10)

    def _replicas_synced(self, master_port: int) -> bool:
        for server in self.servers:
            if server.port == master_port or server.pid is None:
                continue
            conn = self._node(server.port)
            try:
                info = conn.info("replication")
            finally:
                conn.close()
            if info.get("role") != "slave" or int(info.get("master_port", 0)) != master_port:
                return False
            if info.get("master_link_status") != "up":
                return False
        return True

    def _settled(self, not_port: Optional[int] = None) -> bool:
        sentinels = self._live_sentinels()
        addresses = {self._sentinel_view(s) for s in sentinels}
        if len(addresses) != 1:
            return False
        ((_host, master_port),) = addresses
        if master_port == not_port or self.server(master_port).pid is None:
            return False
        conn = self._node(master_port)
        try:
            if conn.info("replication").get("role") != "master":
                return False
            conn.set(_PROBE_KEY, 1)  # it accepts writes
            conn.delete(_PROBE_KEY)
        finally:
            conn.close()
        if not self._replicas_synced(master_port):
            return False
        live_replicas = {s.port for s in self.servers if s.pid is not None and s.port != master_port}
        for sentinel in sentinels:
            conn = sentinel.conn()
            master = _as_dict(conn.execute_command("SENTINEL", "MASTER", self.master_name))
            if master["flags"] != "master" or int(master["num-other-sentinels"]) != len(sentinels) - 1:
                return False
            seen = set()
            for raw in conn.execute_command("SENTINEL", "REPLICAS", self.master_name):
                replica = _as_dict(raw)
                if replica["flags"] == "slave" and replica["master-link-status"] == "ok":
                    seen.add(int(replica["port"]))
            if not live_replicas <= seen:
                return False
        return True

    def _sentinel_view(self, sentinel: SentinelProcess) -> Address:
        host, port = sentinel.conn().execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
        return _text(host), int(port)

    def wait_settled(self, not_port: Optional[int] = None, timeout: Optional[float] = None) -> Address:
        """Wait until every live sentinel names the same master (not `not_port`), which
        accepts writes, every live data node replicates it with its link up, and every
        sentinel knows the others and sees those replicas in sync. Returns the master."""
        wait_until(lambda: self._settled(not_port), "the sentinels to settle", timeout or self.timeout, 0.1)
        return self.master_address()

    # -- faults ----------------------------------------------------------------------

    def failover(self) -> Address:
        """SENTINEL FAILOVER, then wait until the sentinels name a new master that accepts
        writes; the old master is made a replica of it right away (Sentinel would do so
        itself after about 8 s) and everything settles. Returns the new master."""
        old_host, old_port = self.wait_settled()

        def started() -> bool:
            self._live_sentinels()[0].conn().execute_command("SENTINEL", "FAILOVER", self.master_name)
            return True

        wait_until(started, "SENTINEL FAILOVER to be accepted", self.timeout, 0.2)
        wait_until(lambda: self.master_address()[1] != old_port, "the sentinels to name a new master",
                   self.timeout, 0.05)
        new_host, new_port = self.master_address()
        old = self._node(old_port)
        try:
            wait_until(lambda: old.execute_command("REPLICAOF", new_host, new_port), "the old master to follow",
                       self.timeout, 0.1)
        finally:
            old.close()
        return self.wait_settled(not_port=old_port)

    def kill_master(self) -> Address:
        """SIGKILL the current master and wait until the sentinels have promoted a replica
        that accepts writes and the other live replicas follow it. Returns the new master."""
        _host, port = self.wait_settled()
        self.server(port).kill()
        return self.wait_settled(not_port=port)

    def revive(self) -> Address:
        """Start every killed data node again as a replica of the current master and wait
        until it is in sync and known to the sentinels. Returns the master."""
        host, port = self.master_address()
        for server in self.servers:
            if server.pid is None:
                server.start()
                conn = self._node(server.port)
                try:
                    conn.execute_command("REPLICAOF", host, port)
                finally:
                    conn.close()
        return self.wait_settled()

    def stop(self) -> None:
        """Stop every sentinel and data node by PID and remove the folders."""
        for sentinel in self.sentinels:
            sentinel.stop()
        for server in self.servers:
            server.stop()

    def __enter__(self) -> "RedisSentinelSet":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
