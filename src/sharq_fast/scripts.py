"""The Lua scripts: loaded from the ``sharq_fast.lua`` package, run by EVALSHA.

Scripts that change state in a way a second run would change again start with the reply
cache (``_replies.lua``): the client gives each call a token, and a call sent again after
its reply was lost gets its first reply back instead of running twice. The others are
safe to run twice as they are (they say why in their header).
"""

import hashlib
from importlib import resources
from typing import Dict, Tuple

import msgspec

#: Scripts that take a token and run behind the reply cache.
REPLIED_SCRIPTS = (
    "enqueue", "dequeue", "finish", "requeue", "interval", "clear_queue", "extend", "release", "fail",
)
#: Scripts that are safe to resend as they are.
PLAIN_SCRIPTS = ("purge_jobs", "forget_intervals", "lock")
SCRIPT_NAMES = REPLIED_SCRIPTS + PLAIN_SCRIPTS


class Script(msgspec.Struct, frozen=True):
    """One Lua script: its name, its source and the SHA1 that EVALSHA runs it by."""

    name: str
    source: bytes
    sha: bytes


def load_scripts() -> Dict[str, Script]:
    """Every script of sharq_fast, by name."""
    folder = resources.files("sharq_fast.lua")
    prelude = folder.joinpath("_replies.lua").read_bytes()
    scripts = {}
    for name in SCRIPT_NAMES:
        source = folder.joinpath(f"{name}.lua").read_bytes()
        if name in REPLIED_SCRIPTS:
            source = prelude + b"\n" + source
        scripts[name] = Script(name, source, hashlib.sha1(source).hexdigest().encode())
    return scripts


#: The cluster layout's scripts (lua/cluster/, docs/cluster-layout.md): each works on the
#: eleven keys of one partition (cluster/_partition.lua, put in front of each).
CLUSTER_REPLIED_SCRIPTS = (
    "enqueue", "dequeue", "finish", "requeue", "interval", "clear_queue", "extend", "release", "fail",
)
#: (None: the requeue script forgets the intervals of gone queues in its last step.)
CLUSTER_PLAIN_SCRIPTS: Tuple[str, ...] = ()


def load_cluster_scripts() -> Dict[str, Script]:
    """Every script of the cluster layout by name, and the single-key ``lock``."""
    folder = resources.files("sharq_fast.lua")
    first = folder.joinpath("cluster", "_first.lua").read_bytes()
    replies = folder.joinpath("cluster", "_replies.lua").read_bytes()
    partition = folder.joinpath("cluster", "_partition.lua").read_bytes()
    scripts = {}
    for name in CLUSTER_REPLIED_SCRIPTS + CLUSTER_PLAIN_SCRIPTS:
        body = folder.joinpath("cluster", f"{name}.lua").read_bytes()
        parts = [first, replies, partition, body] if name in CLUSTER_REPLIED_SCRIPTS else [partition, body]
        source = b"\n".join(parts)
        scripts[name] = Script(name, source, hashlib.sha1(source).hexdigest().encode())
    lock = folder.joinpath("lock.lua").read_bytes()
    scripts["lock"] = Script("lock", lock, hashlib.sha1(lock).hexdigest().encode())
    return scripts
