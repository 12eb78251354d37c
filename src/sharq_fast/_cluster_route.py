"""Routing one round over a Redis Cluster, written once (no I/O) for the sync and the
asyncio cluster transports.

``route(round, router, attempts)`` is a generator: it groups the round's commands by the
node that serves each one's slot and yields an ``Exchange`` (write each node's commands in
one go, all nodes before reading any, then read), and then acts on the replies:

- MOVED: the slot moved for good; the cached slot map is patched (``Moved``) and the
  command sent to the new owner; ASK: the slot is migrating; the command is sent to the
  target once, after ASKING, on the same connection.
- TRYAGAIN (a multi-key call while its slot is half migrated), CLUSTERDOWN, LOADING,
  READONLY (a master that became a replica), MASTERDOWN: not run; sent again after a pause
  (``_retry``'s backoff), with a topology refresh for the last ones.
- NOSCRIPT: the node lacks the scripts (a new master, a restart): ``LoadScripts`` on it,
  then sent again.
- a node's connection failed: the topology is refreshed (a failed-over master's replica
  takes its slots) and its commands are sent again for up to ``retry_for`` seconds, as
  ``_retry`` says for one node. Resending is safe: state-changing scripts answer a resend
  from their reply cache, which lives in the call's own slot, so it moves and fails over
  with the data.
"""

from typing import Any, Dict, Generator, List, Optional

from redis.exceptions import AskError, ClusterDownError, MovedError, NoScriptError, ReadOnlyError

from ._retry import Attempts, needs_resend
from ._rounds import Round

#: RESP of ASKING (sent before a command redirected by ASK).
ASKING = b"*1\r\n$6\r\nASKING\r\n"
#: Redirections followed without a pause before the backoff applies.
FREE_REDIRECTS = 5


class Exchange:
    """Write `batches[node]` (RESP commands) to each node, then read as many replies from
    each; answer: node -> list of replies (error replies as exception objects), or a
    NodeLost for a node whose connection failed."""

    __slots__ = ("batches",)

    def __init__(self, batches: Dict[str, List[bytes]]) -> None:
        self.batches = batches


class NodeLost(Exception):
    """A node's connection failed; `reached`: its commands may have been written."""

    def __init__(self, cause: BaseException, reached: bool) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.reached = reached


class Pause:
    """Sleep `seconds`."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


class Refresh:
    """Read the cluster's slot map again."""


class Moved:
    """Patch the slot map after a MOVED reply."""

    __slots__ = ("error",)

    def __init__(self, error: MovedError) -> None:
        self.error = error


class LoadScripts:
    """Load the layout's scripts on `node`."""

    __slots__ = ("node",)

    def __init__(self, node: str) -> None:
        self.node = node


class Router:
    """What routing needs of a cluster client: the node of a slot, the masters."""

    def node(self, slot: int) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def masters(self) -> List[str]:  # pragma: no cover - interface
        raise NotImplementedError


def route(round: Round, router: Router, attempts: Attempts) -> Generator[Any, Any, List[Any]]:
    """Run `round` on the cluster (see the module's docstring); return its replies. A round
    without slots is sent to every master (SCRIPT LOAD): each command's reply is then a
    master's error if any had one."""
    count = len(round.commands)
    replies: List[Any] = [None] * count
    asking: Dict[int, str] = {}
    todo = list(range(count))
    redirects = 0
    while True:
        plan: Dict[str, List[Optional[int]]] = {}
        batches: Dict[str, List[bytes]] = {}
        for i in todo:
            if round.slots is None:
                nodes = router.masters()
            else:
                nodes = [asking.get(i) or router.node(round.slots[i])]
            for node in nodes:
                if i in asking:
                    plan.setdefault(node, []).append(None)
                    batches.setdefault(node, []).append(ASKING)
                plan.setdefault(node, []).append(i)
                batches.setdefault(node, []).append(round.commands[i])
        results = yield Exchange(batches)
        again: List[int] = []
        lost: Optional[NodeLost] = None
        pause = refresh = False
        loads = set()
        moves: List[MovedError] = []
        for node, indexes in plan.items():
            result = results[node]
            if isinstance(result, NodeLost):
                lost, pause, refresh = result, True, True
                attempts.reached = attempts.reached or result.reached
                again.extend(i for i in indexes if i is not None and i not in again)
                continue
            for i, reply in zip(indexes, result):
                if i is None:
                    continue  # ASKING's +OK
                if isinstance(reply, MovedError):
                    moves.append(reply)
                    asking.pop(i, None)
                    redirects += 1
                elif isinstance(reply, AskError):
                    asking[i] = f"{reply.host}:{reply.port}"
                    redirects += 1
                elif isinstance(reply, NoScriptError):
                    loads.add(node)
                elif needs_resend(reply):
                    pause = True
                    refresh = refresh or isinstance(reply, (ReadOnlyError, ClusterDownError))
                else:
                    if round.slots is None and replies[i] is not None and not isinstance(reply, Exception):
                        continue  # broadcast: keep the first error
                    replies[i] = reply
                    continue
                replies[i] = reply  # kept if the retries run out
                if i not in again:
                    again.append(i)
        if not again:
            return replies
        # Decided before any other request: the transport expects an exchange after them.
        wait = 0.0
        if pause or redirects > FREE_REDIRECTS * max(count, 1):
            wait = attempts.pause()
            if wait is None:
                if lost is not None:
                    raise attempts.give_up(lost.cause, round.writes)
                return replies  # the last error replies stand
        for moved in moves:
            yield Moved(moved)
        for node in sorted(loads):
            yield LoadScripts(node)
        if refresh:
            yield Refresh()
        if wait:
            yield Pause(wait)
        todo = again
