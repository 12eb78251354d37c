"""Replicated writes (opt-in): a WAIT after a write round, and what an unconfirmed write
means.

Redis replicates asynchronously: a write the master has acknowledged is lost if the
master dies before a replica got it and that replica is promoted (or, in a Sentinel
failover of a live master, if it ran on the old master after the new one was chosen).
With ``replicas=N`` (the client's setting, or per call on enqueue_many / finish_many), a
write round ends with ``WAIT N <replica_timeout>``, in the same round trip; its reply
counts the replicas that have everything the connection wrote so far.

A round that WAIT did not confirm is sent again by the transport, as it is, for up to
``retry_for`` (``_retry.unconfirmed``): where its calls ran, the reply cache answers them
(and the new WAIT covers them); where they were lost (the new master, after a failover
that lost them) they run. So a write is confirmed exactly once, or the operation raises
ReplicationError (enqueue, enqueue_many, finish, finish_many, dequeue) with what it knows.
"""

from typing import Any, List, Optional, Sequence, Tuple

from . import _core
from ._rounds import Round
from ._settings import Settings, replicas_arg
from .exceptions import ReplicationError


def replicas_for(s: Settings, override: Any) -> int:
    """The replicas a call asks for: its own `replicas=`, or the client's."""
    return s.replicas if override is None else replicas_arg(override)


def write_round(s: Settings, commands: Sequence[bytes], replicas: int) -> Round:
    """A round of writes; with replicas, ending in a WAIT that confirms them."""
    if not replicas:
        return Round(commands)
    timeout_ms = max(1, int(s.replica_timeout * 1000))
    return Round([*commands, _core.core.pack_command((b"WAIT", replicas, timeout_ms))], replicas=replicas)


def split(replies: List[Any], replicas: int) -> Tuple[List[Any], Optional[int]]:
    """(the replies of the writes, how many replicas WAIT counted: None without WAIT). A
    WAIT that failed (the node is a replica now) confirms nothing."""
    if not replicas:
        return replies, None
    reached = replies[-1]
    return replies[:-1], reached if isinstance(reached, int) else 0


def confirmed(reached: Optional[int], replicas: int) -> bool:
    """True when there was no WAIT, or it counted enough replicas."""
    return reached is None or reached >= replicas


def error(s: Settings, what: str, unconfirmed: List[int], result: Any, replicas: int, reached: Optional[int],
          advice: str) -> ReplicationError:
    """The ReplicationError of an operation whose writes WAIT did not confirm."""
    return ReplicationError(
        f"{what}: {len(unconfirmed)} jobs (positions in .unconfirmed) were written on the master but WAIT "
        f"counted {reached or 0} of {replicas} replicas, for {s.retry_for:g} s (retry_for) of tries of "
        f"{s.replica_timeout:g} s (replica_timeout): a failover now could lose them; {advice}",
        unconfirmed=unconfirmed,
        result=result,
        replicas=replicas,
        reached=reached or 0,
    )
