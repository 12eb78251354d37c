"""What is stored, asked the same way of either layout (conftest's `store` fixture), so that
behaviour tests that check stored state run on one node and on the cluster alike.

Single node: SharQ's keys (SHARQ_PROTOCOL.md). Cluster: the partitions of
docs/cluster-layout.md on every master, placeholders ('~') and reply caches left out.
"""

import zlib
from typing import Any, Dict, List, Set

import redis

from redis_state import data_keys, raw_snapshot

P = "sharq_server"


class SingleNodeStore:
    """The single-node layout, through `r`."""

    def __init__(self, r: redis.Redis, prefix: str = P) -> None:
        self.r = r
        self.prefix = prefix
        #: A redis-py client for single-key commands on keys outside the layout (locks).
        self.keys = r

    def data_keys(self) -> List[bytes]:
        """Every key but reply caches."""
        return data_keys(self.r, "*")

    def snapshot(self) -> Any:
        """Every key but reply caches, with its value (compare before and after a call)."""
        return raw_snapshot(self.r)

    def payloads(self) -> Set[str]:
        """Fields T:Q:J of the stored payloads."""
        return {f.decode() for f in self.r.hkeys(f"{self.prefix}:payload")}

    def queued(self, queue_type: str, queue_id: str) -> List[str]:
        """Job ids of a queue, in order."""
        return [j.decode() for j in self.r.lrange(f"{self.prefix}:{queue_type}:{queue_id}", 0, -1)]

    def active(self, queue_type: str) -> Dict[str, float]:
        """Active jobs Q:J of a queue type -> lease expiry."""
        return {m.decode(): s for m, s in self.r.zrange(f"{self.prefix}:{queue_type}:active", 0, -1, withscores=True)}

    def requeues(self, queue_type: str, queue_id: str) -> Dict[str, str]:
        """Job id -> requeues remaining, of a queue."""
        raw = self.r.hgetall(f"{self.prefix}:{queue_type}:{queue_id}:requeues_remaining")
        return {k.decode(): v.decode() for k, v in raw.items()}

    def intervals(self) -> Dict[str, str]:
        """T:Q -> interval."""
        return {k.decode(): v.decode() for k, v in self.r.hgetall(f"{self.prefix}:interval").items()}

    def payload(self, queue_type: str, queue_id: str, job_id: str) -> Any:
        """The stored bytes of a job's payload (None: none)."""
        return self.r.hget(f"{self.prefix}:payload", f"{queue_type}:{queue_id}:{job_id}")

    def set_payload(self, queue_type: str, queue_id: str, job_id: str, data: bytes) -> None:
        """Overwrite a job's stored payload (as another writer might)."""
        self.r.hset(f"{self.prefix}:payload", f"{queue_type}:{queue_id}:{job_id}", data)

    def delete_payload(self, queue_type: str, queue_id: str, job_id: str) -> None:
        """Delete a job's payload (an orphan: a purge race, an old client's duplicate)."""
        self.r.hdel(f"{self.prefix}:payload", f"{queue_type}:{queue_id}:{job_id}")

    def script_flush(self) -> None:
        """Forget every script (as a restart or SCRIPT FLUSH does)."""
        self.r.script_flush()

    def kill_clients(self) -> None:
        """Cut every client connection but the store's own."""
        self.r.client_kill_filter(_type="normal", skipme=True)


class ClusterStore:
    """The cluster layout, through every master of the test cluster."""

    def __init__(self, cluster: Any, prefix: str = P) -> None:
        self.cluster = cluster
        self.prefix = prefix
        #: A redis-py cluster client for single-key commands on keys outside the layout.
        self.keys = cluster.client()

    def close(self) -> None:
        self.keys.close()

    def _nodes(self) -> List[redis.Redis]:
        return [self.cluster.node_client(port) for port in self.cluster.masters()]

    def _keys(self, suffix: str) -> List[Any]:
        """(node, key) of every partition key ending in `suffix`."""
        found = []
        for node in self._nodes():
            found += [(node, key) for key in node.scan_iter(match=f"{{{self.prefix}:*}}:{suffix}", count=1000)]
        return found

    def data_keys(self) -> List[bytes]:
        """Every key but reply caches and partitions that hold only placeholders."""
        keys = []
        for node in self._nodes():
            for key in node.scan_iter(count=1000):
                if b":.replies:" in key:
                    continue
                kind = node.type(key)
                if kind == b"zset" and node.zrange(key, 0, -1) == [b"~"]:
                    continue
                if kind == b"hash" and node.hkeys(key) == [b"~"]:
                    continue
                if kind == b"string" and key.endswith(b":seq"):
                    continue
                keys.append(key)
        return sorted(keys)

    def snapshot(self) -> Any:
        found = {}
        for node in self._nodes():
            for key in node.scan_iter(count=1000):
                if b":.replies:" in key:
                    continue
                kind = node.type(key)
                if kind == b"zset":
                    value: Any = node.zrange(key, 0, -1, withscores=True)
                elif kind == b"hash":
                    value = node.hgetall(key)
                elif kind == b"list":
                    value = node.lrange(key, 0, -1)
                elif kind == b"set":
                    value = node.smembers(key)
                else:
                    value = node.get(key)
                found[key] = (kind, value, node.pttl(key) > 0)
        return found

    def _type_of(self, key: bytes) -> str:
        return key.decode().split("}", 1)[0][1:].rsplit(":", 2)[1]

    def payloads(self) -> Set[str]:
        found = set()
        for node, key in self._keys("payload"):
            queue_type = self._type_of(key)
            found.update(f"{queue_type}:{f.decode()}" for f in node.hkeys(key) if f != b"~")
        return found

    def _partition(self, queue_type: str, queue_id: str) -> Any:
        count = int(self.keys.hget(f"{{{self.prefix}}}:.types", queue_type) or 64)
        p = zlib.crc32(queue_id.encode()) % count
        tag = f"{{{self.prefix}:{queue_type}:{p}}}"
        return self.cluster.node_client(self.cluster.slot_owner(self.cluster.key_slot(tag))), tag

    def queued(self, queue_type: str, queue_id: str) -> List[str]:
        node, tag = self._partition(queue_type, queue_id)
        members = node.zrangebylex(f"{tag}:jobs", f"[{queue_id}:", f"({queue_id};")
        return [m.decode().split(":", 2)[2] for m in members]

    def active(self, queue_type: str) -> Dict[str, float]:
        found = {}
        for node, key in self._keys("active"):
            if self._type_of(key) == queue_type:
                found.update({m.decode(): s for m, s in node.zrange(key, 0, -1, withscores=True) if m != b"~"})
        return found

    def requeues(self, queue_type: str, queue_id: str) -> Dict[str, str]:
        node, tag = self._partition(queue_type, queue_id)
        raw = node.hgetall(f"{tag}:requeues")
        return {k.decode().split(":", 1)[1]: v.decode() for k, v in raw.items() if k.decode().startswith(f"{queue_id}:")}

    def intervals(self) -> Dict[str, str]:
        found = {}
        for node, key in self._keys("interval"):
            queue_type = self._type_of(key)
            found.update({f"{queue_type}:{k.decode()}": v.decode() for k, v in node.hgetall(key).items() if k != b"~"})
        return found

    def payload(self, queue_type: str, queue_id: str, job_id: str) -> Any:
        node, tag = self._partition(queue_type, queue_id)
        return node.hget(f"{tag}:payload", f"{queue_id}:{job_id}")

    def set_payload(self, queue_type: str, queue_id: str, job_id: str, data: bytes) -> None:
        node, tag = self._partition(queue_type, queue_id)
        node.hset(f"{tag}:payload", f"{queue_id}:{job_id}", data)

    def delete_payload(self, queue_type: str, queue_id: str, job_id: str) -> None:
        node, tag = self._partition(queue_type, queue_id)
        node.hdel(f"{tag}:payload", f"{queue_id}:{job_id}")

    def script_flush(self) -> None:
        for node in self._nodes():
            node.script_flush()

    def kill_clients(self) -> None:
        for node in self._nodes():
            node.client_kill_filter(_type="normal", skipme=True)
