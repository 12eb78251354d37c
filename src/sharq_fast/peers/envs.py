"""Each peer's environment, built once and cached.

Python peers: a virtualenv with the peer's pinned requirements from PyPI. BullMQ: a Node
project with ``bullmq`` and ``ioredis`` from the npm registry, run by the machine's
``node``. Both live in ``~/.cache/sharq-fast/peers/<peer>-<version>-<hash>/`` (the hash is
of the requirements, so changing them builds a new one); $SHARQ_FAST_PEERS_CACHE moves the
folder. sharq 1.3.0 uses ``sharq-fast compare``'s virtualenv (see _peer.py); sharq_fast
runs in this interpreter.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

from .._peer import PeerUnavailable, _run, _venv_python, ensure_peer_python
from .registry import Peer

CACHE_ENV = "SHARQ_FAST_PEERS_CACHE"
_OK = ".sharq-fast-peer-ok"


@dataclass
class PeerEnv:
    """How to run a peer's driver: ``argv + [driver, spec]`` with ``env`` added."""

    argv: List[str]
    env: Dict[str, str] = field(default_factory=dict)
    where: str = ""


def cache_root() -> Path:
    """$SHARQ_FAST_PEERS_CACHE, else <user cache>/sharq-fast/peers."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "sharq-fast" / "peers"


def env_dir(peer: Peer) -> Path:
    """The peer's cache folder: <peer>-<version>-<hash of its requirements>."""
    digest = hashlib.sha256("\n".join(peer.requirements).encode()).hexdigest()[:8]
    return cache_root() / f"{peer.name}-{peer.version_spec}-{digest}"


def _marker_ok(folder: Path, peer: Peer) -> bool:
    try:
        return json.loads((folder / _OK).read_text()) == list(peer.requirements)
    except (OSError, ValueError):
        return False


def _imports(python: Path, module: str) -> bool:
    try:
        done = subprocess.run([str(python), "-I", "-c", f"import {module}"], capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _build(peer: Peer, folder: Path, make: Callable[[Path], None]) -> None:
    """Build in place (a virtualenv's scripts name its path, so it cannot be moved after
    building); the marker, written last, is what makes the folder count as built."""
    shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        make(folder)
        (folder / _OK).write_text(json.dumps(list(peer.requirements)))
    except OSError as exc:
        raise PeerUnavailable(f"cannot build {folder}: {exc}") from None
    except PeerUnavailable:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _python_env(peer: Peer, log: Optional[Callable[[str], None]]) -> PeerEnv:
    folder = env_dir(peer)
    python = _venv_python(folder)
    if not (_marker_ok(folder, peer) and python.exists() and _imports(python, peer.module)):
        if log:
            log(f"building the {peer.name} virtualenv ({' '.join(peer.requirements)}) at {folder} (once)")

        def make(building: Path) -> None:
            _run([sys.executable, "-m", "venv", str(building)], f"python -m venv {building}", 300)
            _run([str(_venv_python(building)), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                  "--quiet", *peer.requirements], f"pip install {' '.join(peer.requirements)}", 900)
            if not _imports(_venv_python(building), peer.module):
                raise PeerUnavailable(f"{peer.requirements[0]} installed but `import {peer.module}` fails")

        _build(peer, folder, make)
    return PeerEnv([str(python)], where=str(folder))


def _node_env(peer: Peer, log: Optional[Callable[[str], None]]) -> PeerEnv:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise PeerUnavailable("BullMQ needs Node.js: no `node`/`npm` on PATH")
    folder = env_dir(peer)
    modules = folder / "node_modules"
    if not (_marker_ok(folder, peer) and (modules / "bullmq" / "package.json").exists()):
        if log:
            log(f"building the {peer.name} Node project ({' '.join(peer.requirements)}) at {folder} (once)")

        def make(building: Path) -> None:
            building.mkdir(parents=True, exist_ok=True)
            (building / "package.json").write_text(json.dumps({"name": "sharq-fast-peer", "private": True}))
            _run([npm, "install", "--prefix", str(building), "--no-audit", "--no-fund", "--save-exact", "--loglevel", "error",
                  *peer.requirements], f"npm install {' '.join(peer.requirements)}", 900)

        _build(peer, folder, make)
    return PeerEnv([node], env={"NODE_PATH": str(modules)}, where=str(folder))


def ensure_env(peer: Peer, log: Optional[Callable[[str], None]] = None) -> PeerEnv:
    """The peer's environment, built when missing. Raises PeerUnavailable with one line
    saying why it cannot be built (offline, a failing install, no node...)."""
    if peer.kind == "self":
        return PeerEnv([sys.executable], where=sys.prefix)
    if peer.kind == "sharq":
        python = ensure_peer_python(log=log)
        return PeerEnv([python], where=str(Path(python).parent.parent))
    if peer.kind == "python":
        return _python_env(peer, log)
    if peer.kind == "node":
        return _node_env(peer, log)
    raise ValueError(f"unknown peer kind {peer.kind!r}")
