"""Emulated vLLM pods as real processes for the sandbox tests, always stopped afterwards."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from sloscale.sandbox.processes import stop_process

READY = re.compile(r"serving \S+ on (http://\S+)")


@dataclass
class Pod:
    proc: subprocess.Popen[str]
    url: str

    def stop(self) -> None:
        stop_process(self.proc)


def launch(*args: str, timeout_s: float = 15.0) -> Pod:
    """Start `python -m sloscale.sandbox.vllm_emulator ARGS --port 0` and wait for its address."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sloscale.sandbox.vllm_emulator", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the emulator exited with {proc.wait()} before serving")
            match = READY.search(line)
            if match:
                return Pod(proc, match.group(1))
        raise RuntimeError("the emulator did not start in time")
    except BaseException:
        proc.kill()
        proc.wait()
        raise


@pytest.fixture
def emulator() -> Iterator[Callable[..., Pod]]:
    """A factory of emulated pods; every pod it started is stopped when the test ends."""
    pods: list[Pod] = []

    def start(*args: str) -> Pod:
        pod = launch(*args)
        pods.append(pod)
        return pod

    try:
        yield start
    finally:
        for pod in pods:
            pod.stop()


@pytest.fixture(scope="module")
def short_context_pod() -> Iterator[Pod]:
    """One pod with `--max-model-len 64`, shared by tests that leave it as they found it."""
    pod = launch("--model", "m", "--max-model-len", "64")
    try:
        yield pod
    finally:
        pod.stop()
