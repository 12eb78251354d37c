"""What operations ask of a transport, and the tokens that make their calls safe to resend.

An operation (``_ops``) is a generator: it yields requests, and the transport that drives
it sends each one back with its answer. Operations never touch a socket; transports never
know what a command means. The same operation runs on the sync, asyncio and cluster
transports.
"""

import itertools
import os
import uuid
from collections import deque
from typing import Any, Deque, Generator, Iterator, List, Optional, Sequence, Tuple, TypeVar

from . import _core

T = TypeVar("T")
#: An operation that returns a T.
Op = Generator[Any, Any, T]

#: Most acknowledgements one call carries (each deletes a read reply from the cache).
MAX_ACKS = 64


class Round:
    """Write `commands` (packed RESP) in one round trip; answer: their replies, a Redis
    error reply as its exception object (not raised). `writes` is false for read-only
    rounds (a lost one is simply read again). `replicas` > 0: the last command is a
    ``WAIT replicas ...`` that confirms the writes before it (see ``_retry``: a transport
    that sends some of them again sends it after them too, on the same connection, and
    sends the round again while WAIT counts fewer replicas; on a cluster, to each node
    that ran some of them, keeping the lowest count). `slots` (cluster layout only): the
    hash slot of each command, by which a cluster transport sends it to the node that
    serves it."""

    __slots__ = ("commands", "writes", "replicas", "slots")

    def __init__(
        self, commands: Sequence[bytes], writes: bool = True, replicas: int = 0, slots: Optional[Sequence[int]] = None
    ) -> None:
        self.commands = commands
        self.writes = writes
        self.replicas = replicas
        self.slots = slots


class Send:
    """Write a round without waiting; answer: a handle for Collect. Lets an operation pack
    its next round while Redis runs this one."""

    __slots__ = ("round",)

    def __init__(self, round: Round) -> None:
        self.round = round


class Collect:
    """Answer: the replies of a round sent with Send."""

    __slots__ = ("handle",)

    def __init__(self, handle: Any) -> None:
        self.handle = handle


class Draw:
    """Answer: a list of up to `count` items from `source`, an iterator or, on the asyncio
    transport, an async iterator."""

    __slots__ = ("source", "count")

    def __init__(self, source: Any, count: int) -> None:
        self.source = source
        self.count = count


class Watch:
    """Start listening to a wake-up channel (if not yet); answer: how many wake-ups it has
    had so far. Read before the dequeue that may find nothing, so none is missed."""

    __slots__ = ("channel",)

    def __init__(self, channel: str) -> None:
        self.channel = channel


class Wait:
    """Wait until the channel has had more than `seen` wake-ups, or `seconds` pass;
    answer: its wake-up count then."""

    __slots__ = ("channel", "seen", "seconds")

    def __init__(self, channel: str, seen: int, seconds: float) -> None:
        self.channel = channel
        self.seen = seen
        self.seconds = seconds


class ReplyTokens:
    """The tokens of one client's reply cache (``lua/_replies.lua``).

    Each call of a state-changing script carries a new token; Redis keeps its reply under
    the key base + token, so a call resent after its reply was lost gets that reply instead
    of running again. Calls also carry the tokens of replies already read, which Redis then
    forgets. A forked child gets a cache of its own (tokens are counted per process)."""

    def __init__(self, key_prefix: str) -> None:
        self._key_prefix = key_prefix
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        #: A call's reply key is this base and its token.
        self.base = f"{self._key_prefix}:.replies:{uuid.uuid4().hex}:"
        self._count: Iterator[int] = itertools.count(1)
        self._acks: Deque[int] = deque()

    def tail(self) -> Tuple[int, bytes, int]:
        """A new token and the RESP of the ARGV values that end a call: (token, bytes,
        how many values). The call's reply key is ``base + str(token)``."""
        if os.getpid() != self._pid:
            self._reset()
        token = next(self._count)
        acks: List[int] = []
        pop = self._acks.popleft
        try:
            while len(acks) < MAX_ACKS:
                acks.append(pop())
        except IndexError:
            pass
        acks.append(len(acks))
        acks.append(token)
        return token, _core.core.pack_args(acks), len(acks)

    def read(self, tokens: Sequence[int]) -> None:
        """The replies of these tokens were read: the next calls let Redis forget them."""
        self._acks.extend(tokens)
