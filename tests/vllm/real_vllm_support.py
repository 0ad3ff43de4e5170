"""Helpers of the real-engine tier: the shared engine, an emulated twin, scrapes and a gauge probe."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from sloscale.sandbox.processes import free_port, stop_process
from sloscale.sandbox.real_vllm import RealVllmServer, VllmFailed

T = TypeVar("T")


@dataclass
class Engine:
    """At most one running vLLM server; `ensure` restarts it when the batch cap must change,
    as a rolling update replaces a pod whose template changed."""

    model_dir: Path
    log_dir: Path
    python: Path
    server: RealVllmServer | None = None
    starts: list[tuple[int, float, int]] = field(default_factory=list)  # (seqs, s, bytes)
    failure: VllmFailed | None = None

    def ensure(self, max_num_seqs: int) -> RealVllmServer:
        current = self.server
        if current is not None and current.running and current.max_num_seqs == max_num_seqs:
            return current
        self.stop()
        if self.failure is not None:
            # A failed start costs minutes: later tests fail with the same reason at once.
            raise self.failure
        server = RealVllmServer(
            self.model_dir,
            max_num_seqs=max_num_seqs,
            python=self.python,
            log_path=self.log_dir / f"vllm-{len(self.starts)}-seqs{max_num_seqs}.log",
        )
        try:
            server.start()
        except VllmFailed as failed:
            self.failure = failed
            raise
        assert server.started_in_s is not None
        self.starts.append((max_num_seqs, server.started_in_s, server.memory_bytes()))
        self.server = server
        return server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@dataclass
class EmulatedPod:
    proc: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        stop_process(self.proc)


def start_emulated_pod(server: RealVllmServer, timeout_s: float = 30.0) -> EmulatedPod:
    """An emulated pod started with `server`'s own vLLM arguments, on another port; healthy."""
    port = free_port()
    vllm_args = server.command(Path(sys.executable), port)[3:]  # drop `python -m module`
    proc = subprocess.Popen(
        [sys.executable, "-m", "sloscale.sandbox.vllm_emulator", *vllm_args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pod = EmulatedPod(proc, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the emulated pod exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"{pod.url}/health", timeout=1.0) as response:
                    if response.status == 200:
                        return pod
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the emulated pod was not healthy after {timeout_s:g}s")
    except BaseException:
        pod.stop()
        raise


def scrape(url: str, accept: str = "text/plain") -> str:
    """The `/metrics` body of the server at `url`, in the format `accept` negotiates."""
    request = urllib.request.Request(f"{url}/metrics", headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=10) as response:
        body: bytes = response.read()
    return body.decode()


def sample_sum(text: str, sample_name: str) -> float:
    """The sum of every sample called `sample_name` in a scrape (over label sets)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == sample_name
    )


@dataclass
class GaugeProbe:
    """(running, waiting) as the engine's `/metrics` reported them, scraped back to back;
    `times` holds when each reading came back (monotonic seconds)."""

    url: str
    readings: list[tuple[float, float]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    async def run(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        while not stop.is_set():
            async with session.get(f"{self.url}/metrics") as response:
                text = await response.text()
            self.readings.append(
                (
                    sample_sum(text, "vllm:num_requests_running"),
                    sample_sum(text, "vllm:num_requests_waiting"),
                )
            )
            self.times.append(time.monotonic())
            await asyncio.sleep(0.01)


async def _probe_until(probe: GaugeProbe, done: threading.Event) -> None:
    stop = asyncio.Event()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        probing = asyncio.create_task(probe.run(session, stop))
        while not done.is_set():
            await asyncio.sleep(0.02)
        stop.set()
        await probing


def probe_while(url: str, work: Callable[[], T]) -> tuple[T, GaugeProbe]:
    """Run `work()` while a `GaugeProbe` reads `url`'s gauges back to back, from a thread and an
    event loop of its own, so that the work's clients never hold a reading back. The probe takes
    one reading before the work starts."""
    probe, done = GaugeProbe(url), threading.Event()
    prober = threading.Thread(target=lambda: asyncio.run(_probe_until(probe, done)), daemon=True)
    prober.start()
    try:
        deadline = time.monotonic() + 30
        while not probe.readings and prober.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        result = work()
    finally:
        done.set()
        prober.join(90)
    return result, probe


def observed_burst(
    url: str, burst: Callable[[], T], attempts: int = 3
) -> list[tuple[T, GaugeProbe]]:
    """`probe_while(url, burst)` until the probe has seen requests running.

    On two shared cores the engine's API server can leave `/metrics` unanswered for as long as a
    burst streams; a probe that only read the idle engine before and after measured nothing. Such a
    burst is repeated, at most `attempts` times in all; every attempt is returned, so that a test
    checks the cap over every reading taken.
    """
    runs: list[tuple[T, GaugeProbe]] = []
    for _ in range(attempts):
        result, probe = probe_while(url, burst)
        runs.append((result, probe))
        if any(running > 0 for running, _ in probe.readings):
            break
    return runs


def timeline(probe: GaugeProbe) -> list[tuple[float, tuple[float, float]]]:
    """(seconds since the first reading, (running, waiting)) for failure messages."""
    start = probe.times[0] if probe.times else 0.0
    return [(round(t - start, 2), r) for t, r in zip(probe.times, probe.readings, strict=True)]
