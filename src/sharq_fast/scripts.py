"""The Lua scripts: loaded from the ``sharq_fast.lua`` package, run by EVALSHA."""

import hashlib
from importlib import resources
from typing import Dict

import msgspec

SCRIPT_NAMES = ("enqueue", "dequeue", "finish", "requeue", "interval", "clear_queue", "purge_jobs")


class Script(msgspec.Struct, frozen=True):
    """One Lua script: its name, its source and the SHA1 that EVALSHA runs it by."""

    name: str
    source: bytes
    sha: bytes


def load_scripts() -> Dict[str, Script]:
    """Every script of sharq_fast, by name."""
    folder = resources.files("sharq_fast.lua")
    scripts = {}
    for name in SCRIPT_NAMES:
        source = folder.joinpath(f"{name}.lua").read_bytes()
        scripts[name] = Script(name, source, hashlib.sha1(source).hexdigest().encode())
    return scripts
