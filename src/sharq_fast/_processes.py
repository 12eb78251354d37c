"""Child processes of the private Redis deployments (server, cluster, sentinel): start one
with its output in a log file, wait for a condition, stop it by PID and reap it, and pick
free TCP ports.

Every process started here is remembered until it is stopped; anything still running when
the interpreter exits is killed then (a last resort: the owners stop theirs explicitly).
"""

import atexit
import os
import shutil
import signal
import socket
import subprocess
import time
from typing import Callable, List, Optional, Sequence, Set, TypeVar

T = TypeVar("T")

_LIVE: Set["subprocess.Popen[bytes]"] = set()

# redis-cli: SHARQ_FAST_REDIS_CLI, else next to the redis-server in use, else PATH.
REDIS_CLI_ENV = "SHARQ_FAST_REDIS_CLI"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port_pair(offset: int = 10000) -> int:
    """A free port P of 127.0.0.1 such that P + `offset` is free too (a cluster node
    listens on its port and on port + 10000, the cluster bus)."""
    for _ in range(200):
        port = free_port()
        if port + offset <= 65535 and _bindable(port + offset):
            return port
    raise RuntimeError(f"found no free port P with P+{offset} free as well")


def spawn(argv: Sequence[str], log_path: str) -> "subprocess.Popen[bytes]":
    """Start `argv` with stdout and stderr appended to `log_path`; remembered until
    stop_process() ends it."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    _LIVE.add(proc)
    return proc


def stop_process(proc: "subprocess.Popen[bytes]", kill: bool = False, timeout: float = 10.0) -> None:
    """End `proc` (SIGTERM, or SIGKILL when `kill`; SIGKILL after `timeout` s anyway) and
    reap it."""
    try:
        if proc.poll() is None:
            if kill:
                proc.kill()
            else:
                proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    finally:
        _LIVE.discard(proc)


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        try:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            pass
    _LIVE.clear()


def log_tail(path: str, lines: int = 15) -> str:
    """The last `lines` lines of a log file ('' if there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_until(
    predicate: Callable[[], Optional[T]],
    what: str,
    timeout: float = 30.0,
    interval: float = 0.05,
    check: Optional[Callable[[], None]] = None,
) -> T:
    """Call `predicate` until it returns a true value (returned); exceptions it raises
    count as "not yet". `check` runs before every attempt and may raise to give up early
    (e.g. the process died). TimeoutError after `timeout` s names `what` and the last
    exception."""
    deadline = time.monotonic() + timeout
    last_error: Optional[BaseException] = None
    while True:
        if check is not None:
            check()
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last_error = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}{detail}")
        time.sleep(interval)


def find_redis_cli(redis_server: Optional[str] = None) -> Optional[str]:
    """Path of a redis-cli binary: $SHARQ_FAST_REDIS_CLI, the one next to `redis_server`,
    or the one on PATH; None if there is none."""
    explicit = os.environ.get(REDIS_CLI_ENV)
    if explicit:
        return explicit
    if redis_server:
        sibling = os.path.join(os.path.dirname(os.path.abspath(redis_server)), "redis-cli")
        if os.access(sibling, os.X_OK):
            return sibling
    return shutil.which("redis-cli")


def run_tool(argv: List[str], timeout: float = 120.0) -> str:
    """Run a command to completion and return its output (stdout and stderr); RuntimeError
    with that output if it fails."""
    try:
        done = subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{argv[0]} did not finish in {timeout:g} s: {exc.output!r}") from None
    out = done.stdout.decode("utf-8", "replace")
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{out[-3000:]}")
    return out
