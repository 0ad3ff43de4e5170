"""Local processes and ports: the few helpers every sandbox part and test harness needs.

Prometheus, the real engine, emulated pods and the operator all run as child processes on
loopback. Each needs a free port before it starts, a bounded stop that cannot hang (SIGTERM, then
SIGKILL), and callers wait for them to become ready by polling. One copy of each lives here so
that the timeouts and the order of signals are the same everywhere.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it; a race is possible but rare)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def stop_process(
    process: subprocess.Popen[Any], grace_s: float = 10.0, kill_wait_s: float = 5.0
) -> None:
    """SIGTERM, then SIGKILL after `grace_s`; returns once the process is gone. A process that
    has already exited is left as it is, so calling this twice is safe."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=kill_wait_s)


def wait_for(
    check: Callable[[], T | None],
    timeout_s: float,
    what: str,
    *,
    interval_s: float = 0.1,
    detail: Callable[[], str] | None = None,
) -> T:
    """Poll `check` until it returns something truthy and return that; on timeout raise
    AssertionError naming `what`, followed by `detail()` (a log tail, say) when given."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            extra = f"\n{detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}{extra}")
        time.sleep(interval_s)
