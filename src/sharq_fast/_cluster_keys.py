"""The cluster layout's key names, partitions and per-client state (docs/cluster-layout.md).

A queue type T is split into N partitions; partition p of T has the hash tag ``{P:T:p}``,
so its keys live in one slot, and queue Q lives whole in partition ``crc32(Q) % N``. N is
fixed when T is first used and stored in the registry hash ``{P}:.types``. Each client
keeps a view of every partition's head (its earliest ready time), refreshed from the
replies of its own calls and by reading all heads now and then (``_ops_cluster``).
"""

import itertools
import os
import time
import uuid
import zlib
from collections import deque
from typing import Any, Deque, Dict, Iterator, List, Optional, Sequence, Tuple

from redis.crc import key_slot

from . import _core
from ._rounds import MAX_ACKS

#: Partitions of a new queue type: 64 tags spread over a few dozen shards (each shard
#: then serves a couple of partitions), while a read of every head stays one small
#: pipeline per node.
DEFAULT_PARTITIONS = 64
MAX_PARTITIONS = 1024
#: The fixed keys of a partition, after its reply cache (lua/cluster/_partition.lua).
PARTITION_KEYS = ("ready", "jobs", "payload", "requeues", "interval", "time", "active", "seq", "forget")
#: Seconds after which a client reads every partition head of a queue type again (the most
#: a ready queue in a partition this client's replies did not show can wait for it).
HEADS_REFRESH = 0.05
INF = float("inf")


def partition_of(queue_id: str, partitions: int) -> int:
    """The partition of a queue: a hash of its id that every client computes alike."""
    return zlib.crc32(queue_id.encode()) % partitions


def check_prefix(key_prefix: str) -> str:
    """A key prefix usable in hash tags (no braces)."""
    if "{" in key_prefix or "}" in key_prefix:
        from .exceptions import BadArgumentException

        raise BadArgumentException(
            "`key_prefix` must not contain '{' or '}' on Redis Cluster (they delimit hash tags).",
            field="key_prefix",
        )
    return key_prefix


class Partitions:
    """The partitions of one queue type: keys, slots and the view of their heads."""

    __slots__ = ("queue_type", "count", "tags", "keys", "slots", "heads", "refreshed")

    def __init__(self, key_prefix: str, queue_type: str, count: int) -> None:
        self.queue_type = queue_type
        self.count = count
        self.tags = [f"{{{key_prefix}:{queue_type}:{p}}}" for p in range(count)]
        self.keys = [tuple(f"{tag}:{name}" for name in PARTITION_KEYS) for tag in self.tags]
        self.slots = [int(key_slot(tag.encode())) for tag in self.tags]
        #: Earliest ready time of each partition as last seen (INF: no ready queue).
        self.heads: List[float] = [0.0] * count  # unknown: worth a look
        self.refreshed = -INF

    def counters(self, p: int, now: int) -> str:
        """The counters hash of partition p for the minute of `now`."""
        return f"{self.tags[p]}:counters:{now // 60000 * 60000}"

    def seen(self, p: int, head: Any) -> None:
        """Record a partition head from a script reply (-1: none ready)."""
        head = int(head)
        self.heads[p] = INF if head < 0 else head

    def ready(self, now: int) -> List[int]:
        """Partitions whose known head is due at `now`, earliest first."""
        heads = self.heads
        return sorted((p for p in range(self.count) if heads[p] <= now), key=heads.__getitem__)

    def stale(self) -> bool:
        """True when the heads were last read longer than HEADS_REFRESH ago."""
        return time.monotonic() - self.refreshed > HEADS_REFRESH


class TagTokens:
    """Reply-cache tokens for the cluster layout: one reply cache per partition and client
    (``{P:T:p}:.replies:<client>``, in the partition's slot), so acknowledgements are kept
    per cache. A forked child gets caches of its own."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self.client = uuid.uuid4().hex
        self._count: Iterator[int] = itertools.count(1)
        self._acks: Dict[str, Deque[int]] = {}

    def key(self, tag: str) -> str:
        """The reply cache of this client in the partition with hash tag `tag`."""
        if os.getpid() != self._pid:
            self._reset()
        return f"{tag}:.replies:{self.client}"

    def tail(self, key: str) -> Tuple[int, bytes, int]:
        """A new token and the RESP of the ARGV values that end a call to cache `key`."""
        token = next(self._count)
        acks: List[int] = []
        pending = self._acks.get(key)
        while pending and len(acks) < MAX_ACKS:
            acks.append(pending.popleft())
        acks.append(len(acks))
        acks.append(token)
        return token, _core.core.pack_args(acks), len(acks)

    def read(self, tokens: Sequence[Tuple[str, int]]) -> None:
        """These (cache key, token) replies were read: later calls let Redis forget them."""
        for key, token in tokens:
            pending = self._acks.get(key)
            if pending is None:
                pending = self._acks[key] = deque()
            pending.append(token)


class ClusterState:
    """What the cluster operations of one client know: the key prefix, the partitions of
    the queue types seen so far, and the reply-cache tokens."""

    def __init__(self, key_prefix: str, default_partitions: int = DEFAULT_PARTITIONS) -> None:
        self.key_prefix = check_prefix(key_prefix)
        self.default_partitions = default_partitions
        self.registry = f"{{{key_prefix}}}:.types"
        self.registry_slot = int(key_slot(self.registry.encode()))
        self.types: Dict[str, Partitions] = {}
        self.tokens = TagTokens()

    def known(self, queue_type: str, count: Optional[int]) -> Optional[Partitions]:
        """The Partitions of a queue type whose stored count is `count` (None: unknown)."""
        parts = self.types.get(queue_type)
        if parts is None and count:
            parts = self.types[queue_type] = Partitions(self.key_prefix, queue_type, int(count))
        return parts

    def partition_keys(self, parts: Partitions, p: int, now: int) -> Tuple[str, ...]:
        """The eleven keys every partition script takes (lua/cluster/_partition.lua)."""
        return (self.tokens.key(parts.tags[p]), *parts.keys[p], parts.counters(p, now))

    def slot(self, key: str) -> int:
        """The hash slot of a key."""
        return int(key_slot(key.encode()))
