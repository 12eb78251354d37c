"""Which queue type a consumer fetches from next, by weight (no I/O)."""

from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

from .. import _core
from .._constants import RESERVED_QUEUE_TYPES
from ..exceptions import BadArgumentException


def queue_weights(queue_type: Union[str, Sequence[str], Mapping[str, int]]) -> Dict[str, int]:
    """The queue types to serve and their weights (1 each unless a mapping gives them)."""
    if isinstance(queue_type, str):
        weights = {queue_type: 1}
    elif isinstance(queue_type, Mapping):
        weights = dict(queue_type)
    else:
        try:
            weights = {name: 1 for name in queue_type}
        except TypeError:
            raise BadArgumentException(
                "`queue_type` must be a queue type, a list of them, or a mapping of them to weights",
                field="queue_type",
            ) from None
    if not weights:
        raise BadArgumentException("`queue_type`: give at least one queue type", field="queue_type")
    for name, weight in weights.items():
        if not isinstance(name, str) or not name:
            raise BadArgumentException(f"`queue_type`: {name!r} is not a queue type name", field="queue_type")
        _core.core.check_identifier(name, "queue_type")  # the rule enqueue applies (A-Z a-z 0-9 _ -)
        if name in RESERVED_QUEUE_TYPES:
            raise BadArgumentException(f"`queue_type`: {name!r} is reserved (its keys are SharQ's own keys)",
                                       field="queue_type")
        if type(weight) is not int or weight < 1:
            raise BadArgumentException(f"`queue_type`: the weight of {name!r} must be an int >= 1", field="queue_type")
    return weights


class Rotation:
    """Which queue type to fetch from next: of the types not known to be empty, the one
    that got the fewest jobs for its weight (so jobs, not fetches, follow the weights);
    when all are empty, a waiting dequeue on each in turn (each waits wait_timeout /
    number of types, so a job of another type waits no longer than wait_timeout)."""

    #: How long a type that gave nothing is skipped (s) while others have jobs.
    EMPTY_FOR = 0.05

    def __init__(self, weights: Dict[str, int], wait_timeout: float) -> None:
        self.weights = weights
        self.served = {name: 0.0 for name in weights}  # jobs fetched / weight
        self.empty: Dict[str, float] = {}
        self.turn = 0
        self.single = next(iter(weights)) if len(weights) == 1 else None
        self.wait_timeout = wait_timeout if self.single else wait_timeout / len(weights)

    def next(self, now: float) -> Tuple[str, Optional[float], float]:
        """The queue type to fetch from, the dequeue's timeout (None: do not wait), and
        the share of the free capacity to fetch (its weight's share of the types with jobs)."""
        if self.single is not None:
            return self.single, self.wait_timeout, 1.0
        empty = self.empty
        for name, since in list(empty.items()):
            if now - since > self.EMPTY_FOR:
                del empty[name]
        names = [name for name in self.weights if name not in empty]
        if not names:  # all empty: wait on each in turn
            empty.clear()
            self.turn = (self.turn + 1) % len(self.weights)
            return list(self.weights)[self.turn], self.wait_timeout, 1.0
        name = min(names, key=self.served.__getitem__)
        return name, None, self.weights[name] / sum(self.weights[other] for other in names)

    def fetched(self, name: str, got: int, now: float) -> None:
        """Note what a dequeue of `name` gave (how many jobs)."""
        if got:
            self.empty.pop(name, None)
            self.served[name] += got / self.weights[name]
        else:
            self.empty[name] = now
            # An idle type does not bank a claim on the next jobs: it starts level.
            others = [served for other, served in self.served.items() if other != name and other not in self.empty]
            if others:
                self.served[name] = max(self.served[name], min(others))
