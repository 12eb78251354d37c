"""Helpers of the HTTP tests: ``sharq-fast serve`` in a real uvicorn process on a free port."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

import httpx

from sharq_fast._redis_server import free_port


class ServeProcess:
    """``python -m sharq_fast serve ARGS`` on a free port of 127.0.0.1 (stopped by pid)."""

    def __init__(self, redis_url: str, *args: str, env: Optional[dict] = None, port: Optional[int] = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="sharq-fast-serve-", suffix=".log", delete=False)
        command: List[str] = [sys.executable, "-m", "sharq_fast", "serve", "--port", str(self.port)]
        if not any(a.startswith("--config") for a in args):
            command += ["--url", redis_url]
        command += list(args)
        environment = dict(os.environ, **(env or {}))
        environment.pop("SHARQ_FAST_DEBUG", None)
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=environment)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                httpx.get(self.url + "/", timeout=1)  # any answer (401 included) means it serves
                return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sharq-fast serve did not start:\n{self.output()}")
            time.sleep(0.05)

    def output(self) -> str:
        """What the server printed so far."""
        with open(self.log.name, errors="replace") as handle:
            return handle.read()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal the server and wait for it; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def close(self) -> None:
        """Stop it and remove its log."""
        self.stop()
        self.log.close()
        os.unlink(self.log.name)
