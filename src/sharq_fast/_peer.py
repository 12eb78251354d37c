"""The peer: Plivo's sharq 1.3.0, in a virtualenv of its own.

sharq 1.3.0 pins msgpack==0.5.6 and redis-py-cluster==2.0.0 (hence redis 3.0.x), which
cannot share an environment with sharq_fast. ``ensure_peer_python`` builds (once) and
reuses a virtualenv with ``sharq==1.3.0`` from PyPI; ``run_peer`` runs the benchmark
workload there, through ``_peer_runner.py`` executed by path (it imports no sharq_fast).

On CPython 3.11, msgpack 0.5.6 has no wheel; its sdist builds, but only as the pure-Python
``msgpack.fallback`` (its C extension is not compiled, no Cython at build time): that is
what sharq 1.3.0 runs with here, and what the numbers measure.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Optional

from .exceptions import SharqException

PEER_REQUIREMENT = "sharq==1.3.0"
PEER_VERSION = "1.3.0"
#: Environment variable: where the peer virtualenv lives (default: the user cache).
PEER_VENV_ENV = "SHARQ_FAST_PEER_VENV"
RUNNER = Path(__file__).with_name("_peer_runner.py")
_OK_MARKER = ".sharq-fast-peer-ok"


class PeerUnavailable(SharqException):
    """The sharq 1.3.0 virtualenv cannot be built or used (offline, no venv module...)."""


def default_peer_venv() -> Path:
    """$SHARQ_FAST_PEER_VENV, else <user cache>/sharq-fast/peer-sharq-1.3.0."""
    explicit = os.environ.get(PEER_VENV_ENV)
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "sharq-fast" / f"peer-sharq-{PEER_VERSION}"


def _venv_python(venv: Path) -> Path:
    if os.name == "nt":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


_CHECK = (
    "import importlib.metadata as m, sharq, msgpack, redis; "
    "print(m.version('sharq'), '.'.join(map(str, msgpack.version)), redis.__version__)"
)


def peer_versions(python: str) -> Optional[str]:
    """'sharq msgpack redis' versions in that interpreter, or None if sharq is missing."""
    try:
        done = subprocess.run(
            [python, "-I", "-c", _CHECK], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0 or not done.stdout.startswith(PEER_VERSION + " "):
        return None
    return done.stdout.strip()


def _run(args: list, what: str, timeout: float) -> None:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise PeerUnavailable(f"{what} took more than {timeout:.0f}s") from None
    except OSError as exc:
        raise PeerUnavailable(f"{what} could not run: {exc}") from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if "ERROR" in line or "Error" in line]
        detail = (errors or lines or ["(no output)"])[-1].strip()
        raise PeerUnavailable(f"{what} failed: {detail}")


def ensure_peer_python(path: "Optional[os.PathLike[str] | str]" = None, *, log: Any = None) -> str:
    """The python of a virtualenv with sharq 1.3.0 installed, building it at `path`
    (default: ``default_peer_venv()``) when missing. Raises PeerUnavailable with one clear
    line when it cannot be built (offline, PyPI unreachable, no venv module)."""
    venv = Path(path).expanduser() if path else default_peer_venv()
    python = _venv_python(venv)
    if (venv / _OK_MARKER).exists() and python.exists() and peer_versions(str(python)):
        return str(python)
    if log:
        log(f"building the {PEER_REQUIREMENT} virtualenv at {venv} (once; reused afterwards)")
    building = venv.with_name(f"{venv.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    try:
        building.parent.mkdir(parents=True, exist_ok=True)
        _run([sys.executable, "-m", "venv", str(building)], f"python -m venv {building}", 300)
        _run(
            [
                str(_venv_python(building)), "-m", "pip", "install", "--disable-pip-version-check",
                "--no-input", "--quiet", PEER_REQUIREMENT,
            ],
            f"pip install {PEER_REQUIREMENT} (into {venv})",
            900,
        )
        if not peer_versions(str(_venv_python(building))):
            raise PeerUnavailable(f"{PEER_REQUIREMENT} installed into {venv} but does not import")
        (building / _OK_MARKER).write_text(PEER_REQUIREMENT + "\n")
        shutil.rmtree(venv, ignore_errors=True)
        os.replace(building, venv)
    except OSError as exc:
        raise PeerUnavailable(f"cannot build the peer virtualenv at {venv}: {exc}") from None
    finally:
        shutil.rmtree(building, ignore_errors=True)
    if not peer_versions(str(python)):
        raise PeerUnavailable(f"the peer virtualenv at {venv} does not work after building it")
    return str(python)


def write_peer_config(
    path: "os.PathLike[str] | str",
    redis_kwargs: Dict[str, Any],
    key_prefix: str,
    job_expire_interval: int = 1000,
    default_job_requeue_limit: int = -1,
) -> str:
    """Write a sharq.conf that sharq 1.3.0 reads (no inline comments: its parser keeps
    them as part of the value) for the Redis of `redis_kwargs`."""
    if redis_kwargs.get("ssl") or "SSL" in getattr(redis_kwargs.get("connection_class"), "__name__", ""):
        raise PeerUnavailable("sharq 1.3.0 cannot connect over TLS (rediss://)")
    if redis_kwargs.get("username") not in (None, "", "default"):
        raise PeerUnavailable("sharq 1.3.0 cannot log in with a Redis username (ACL user)")
    lines = [
        "[sharq]",
        f"job_expire_interval = {int(job_expire_interval)}",
        "job_requeue_interval = 1000",
        f"default_job_requeue_limit = {int(default_job_requeue_limit)}",
        "",
        "[redis]",
        f"db = {int(redis_kwargs.get('db') or 0)}",
        f"key_prefix = {key_prefix}",
    ]
    if redis_kwargs.get("path") or redis_kwargs.get("unix_socket_path"):
        lines += ["conn_type = unix_sock", f"unix_socket_path = {redis_kwargs.get('path') or redis_kwargs['unix_socket_path']}"]
    else:
        lines += [
            "conn_type = tcp_sock",
            f"host = {redis_kwargs.get('host') or '127.0.0.1'}",
            f"port = {int(redis_kwargs.get('port') or 6379)}",
        ]
    password = redis_kwargs.get("password") or ""
    if "%" in password or "\n" in password:
        raise PeerUnavailable("the Redis password cannot be written into a sharq 1.3.0 config file")
    lines += [f"password = {password}", "clustered = false", ""]
    Path(path).write_text("\n".join(lines), encoding="utf-8")
    return str(path)


def run_peer(python: str, spec: Dict[str, Any], timeout: float = 3600) -> Dict[str, Any]:
    """Run the peer workload described by `spec` (see _peer_runner.py) and return its JSON
    answer. The runner's stderr (progress bar) goes to ours."""
    try:
        done = subprocess.run(
            [python, "-I", str(RUNNER)],
            input=json.dumps(spec),
            stdout=subprocess.PIPE,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise PeerUnavailable(f"the sharq 1.3.0 runner took more than {timeout:.0f}s") from None
    if done.returncode != 0:
        raise PeerUnavailable(f"the sharq 1.3.0 runner failed (exit {done.returncode}): {done.stdout.strip()[-300:]}")
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise PeerUnavailable(f"the sharq 1.3.0 runner answered no JSON: {done.stdout.strip()[-300:]}") from None
