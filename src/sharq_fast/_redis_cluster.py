"""A private Redis Cluster for tests and benchmarks: `masters` cluster-enabled
redis-servers (plus `replicas` per master) on free ports of 127.0.0.1, joined with
``redis-cli --cluster create``; it can lose a master (its replica takes over) and move slots
between masters while clients run.

Never touches a Redis it did not start; stop() ends every process by PID and removes the
folders.
"""

from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Tuple, Union

import redis
import redis.cluster
from redis.crc import key_slot

from ._processes import find_redis_cli, run_tool, wait_until
from ._redis_server import RedisServer, _require_redis_server

__all__ = ["ClusterNode", "RedisCluster", "SLOTS"]

SLOTS = 16384


class ClusterNode(NamedTuple):
    """One live node as it sees itself: address, process, role ("master" or "replica"),
    cluster node id, the port of its master (replicas) and how many slots it serves."""

    host: str
    port: int
    pid: Optional[int]
    role: str
    node_id: str
    master_port: Optional[int]
    slots: int


def _slot_map(conn: redis.Redis) -> Tuple[Tuple[int, int, int], ...]:
    """(first slot, last slot, master port) ranges from CLUSTER SLOTS, sorted."""
    # Split command names: redis-py parses "CLUSTER SLOTS" replies into other shapes.
    ranges = conn.execute_command("CLUSTER", "SLOTS")
    return tuple(sorted((int(r[0]), int(r[1]), int(r[2][1])) for r in ranges))


def _cluster_info(conn: redis.Redis) -> Dict[str, str]:
    """CLUSTER INFO as a dict of strings."""
    text = conn.execute_command("CLUSTER", "INFO").decode()
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


class RedisCluster:
    """`masters` masters (>= 3) with `replicas` replicas each, on 127.0.0.1.

    `node_timeout_ms` is short so that a killed master is replaced within a few seconds;
    `startup_timeout` bounds every wait (generous: the machine may be loaded). Extra
    keyword arguments (`debug`, `args`, ...) go to every node's RedisServer.
    """

    def __init__(
        self,
        masters: int = 3,
        replicas: int = 0,
        *,
        binary: Optional[str] = None,
        node_timeout_ms: int = 2000,
        startup_timeout: float = 60.0,
        **server_options: Any,
    ) -> None:
        if masters < 3:
            raise ValueError("a Redis Cluster needs at least 3 masters")
        self.binary = _require_redis_server(binary)
        redis_cli = find_redis_cli(self.binary)
        if not redis_cli:
            raise RuntimeError("no redis-cli found (needed to create the cluster): set SHARQ_FAST_REDIS_CLI")
        self.redis_cli: str = redis_cli
        self.replicas = replicas
        self.timeout = startup_timeout
        self.servers: List[RedisServer] = []
        self._conns: Dict[int, redis.Redis] = {}
        try:
            for _ in range(masters * (1 + replicas)):
                self.servers.append(
                    RedisServer(self.binary, cluster=True, cluster_node_timeout_ms=node_timeout_ms,
                                startup_timeout=startup_timeout, **server_options)
                )
            self._create()
        except BaseException:
            self.stop()
            raise

    # -- addresses -------------------------------------------------------------------

    @property
    def startup_nodes(self) -> List[Tuple[str, int]]:
        """(host, port) of every live node (for a cluster client's startup nodes)."""
        return [("127.0.0.1", s.port) for s in self.servers if s.pid is not None]

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...`` over the live nodes."""
        return "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in self.startup_nodes)

    def node_client(self, port: int) -> redis.Redis:
        """A plain (non-cluster) client on one node, owned by the cluster (do not close)."""
        conn = self._conns.get(port)
        if conn is None:
            conn = self._conns[port] = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
        return conn

    def client(self, **kwargs: Any) -> redis.cluster.RedisCluster:
        """A redis-py cluster client on the live nodes; close it after use."""
        nodes = [redis.cluster.ClusterNode(h, p) for h, p in self.startup_nodes]
        return redis.cluster.RedisCluster(startup_nodes=nodes, **kwargs)

    # -- topology --------------------------------------------------------------------

    def _server(self, port: int) -> RedisServer:
        for server in self.servers:
            if server.port == port:
                return server
        raise KeyError(f"no node of this cluster on port {port}")

    def _live_ports(self) -> List[int]:
        return [s.port for s in self.servers if s.pid is not None]

    @property
    def nodes(self) -> List[ClusterNode]:
        """Every live node, as it describes itself in CLUSTER NODES."""
        found: List[ClusterNode] = []
        for port in self._live_ports():
            text = self.node_client(port).execute_command("CLUSTER", "NODES").decode()
            ports = {f[0]: int(f[1].split("@")[0].rsplit(":", 1)[1]) for f in (ln.split() for ln in text.splitlines())}
            for fields in (ln.split() for ln in text.splitlines()):
                if "myself" not in fields[2].split(","):
                    continue
                role = "master" if "master" in fields[2] else "replica"
                slots = sum(
                    (int(r.split("-")[1]) - int(r.split("-")[0]) + 1) if "-" in r else 1
                    for r in fields[8:] if not r.startswith("[")
                )
                master_port = ports.get(fields[3]) if fields[3] != "-" else None
                found.append(ClusterNode("127.0.0.1", port, self._server(port).pid, role, fields[0], master_port, slots))
        return found

    def masters(self) -> List[int]:
        """Ports of the masters that serve slots, ordered by their lowest slot."""
        first: Dict[int, int] = {}
        for start, _end, port in _slot_map(self.node_client(self._live_ports()[0])):
            first[port] = min(start, first.get(port, SLOTS))
        return sorted(first, key=first.__getitem__)

    def slot_owner(self, slot: int) -> int:
        """Port of the master that serves `slot`."""
        for start, end, port in _slot_map(self.node_client(self._live_ports()[0])):
            if start <= slot <= end:
                return port
        raise LookupError(f"slot {slot} is not served")

    @staticmethod
    def key_slot(key: Union[str, bytes]) -> int:
        """The hash slot of `key` (hash tags honoured)."""
        return int(key_slot(key.encode() if isinstance(key, str) else key))

    def node_id(self, port: int) -> str:
        """The cluster node id of the node on `port`."""
        return str(self.node_client(port).execute_command("CLUSTER", "MYID").decode())

    # -- waiting ---------------------------------------------------------------------

    def _create(self) -> None:
        ports = [s.port for s in self.servers]
        run_tool(
            [self.redis_cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            timeout=self.timeout,
        )
        self.wait_settled()

    def _settled(self) -> bool:
        live = self._live_ports()
        maps = set()
        for port in live:
            conn = self.node_client(port)
            info = _cluster_info(conn)
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(SLOTS):
                return False
            maps.add(_slot_map(conn))
            if self.replicas:
                replication = conn.info("replication")
                if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                    return False
        if len(maps) != 1:
            return False
        (slot_map,) = maps
        covered = sum(end - start + 1 for start, end, _port in slot_map)
        return covered == SLOTS and all(port in live for _s, _e, port in slot_map)

    def wait_settled(self, timeout: Optional[float] = None) -> None:
        """Wait until every live node says cluster_state:ok with all slots served, every
        node reports the same slot map (only live masters in it) and, with replicas,
        every replica's link to its master is up."""
        wait_until(self._settled, "the cluster to settle", timeout or self.timeout, 0.1)

    # -- faults and changes -----------------------------------------------------------

    def kill_master(self, which: int = 0) -> int:
        """SIGKILL a master — `which` is a port, or an index into masters() — and wait
        until one of its replicas has taken over its slots and the cluster is settled.
        Returns the port of the new master."""
        masters = self.masters()
        port = masters[which] if which < len(masters) else which
        if port not in masters:
            raise ValueError(f"{port} is not a master of this cluster")
        replicas = [n.port for n in self.nodes if n.master_port == port]
        if not replicas:
            raise RuntimeError(f"master {port} has no replica to take over")
        slot = next(start for start, _end, p in _slot_map(self.node_client(port)) if p == port)
        self._server(port).kill()
        conn = self._conns.pop(port, None)
        if conn is not None:
            conn.close()

        def promoted() -> Optional[int]:
            owner = self.slot_owner(slot)
            return owner if owner in replicas and self._settled() else None

        return wait_until(promoted, f"a replica of {port} to take over", self.timeout, 0.1)

    def reshard(self, from_port: int, to_port: int, slots: Union[int, Iterable[int]]) -> List[int]:
        """Move slots (a count: the lowest ones `from_port` serves; or the slot numbers)
        with their keys from master `from_port` to master `to_port`, the way
        ``redis-cli --cluster reshard`` does (SETSLOT IMPORTING/MIGRATING, MIGRATE, SETSLOT
        NODE), so clients that run meanwhile are redirected (ASK/MOVED). Waits until every
        node agrees; returns the moved slots."""
        owned = [s for start, end, p in _slot_map(self.node_client(from_port)) if p == from_port
                 for s in range(start, end + 1)]
        chosen = owned[:slots] if isinstance(slots, int) else sorted(set(slots))
        missing = set(chosen) - set(owned)
        if missing:
            raise ValueError(f"{from_port} does not serve slots {sorted(missing)[:10]}")
        source, target = self.node_client(from_port), self.node_client(to_port)
        source_id, target_id = self.node_id(from_port), self.node_id(to_port)
        for slot in chosen:
            target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
            source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
            while True:
                keys = source.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 200)
                if not keys:
                    break
                source.execute_command("MIGRATE", "127.0.0.1", to_port, "", 0, 10000, "KEYS", *keys)
            target.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
            source.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
            for port in self.masters():
                if port not in (from_port, to_port):
                    self.node_client(port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        self.wait_settled()
        return chosen

    def flushall(self) -> None:
        """Remove every key from every master."""
        for port in self.masters():
            self.node_client(port).flushall()

    def stop(self) -> None:
        """Kill every node by PID and remove the folders."""
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
        for server in self.servers:
            server.stop()

    def __enter__(self) -> "RedisCluster":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

