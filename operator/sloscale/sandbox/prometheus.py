"""A real Prometheus for the sandbox and the tests: started on loopback, scraping what we say.

`PrometheusServer` writes a config into a directory of its own, starts the `prometheus` binary
(Debian's package: `apt-get install prometheus`) on a free loopback port with its own TSDB, waits
until it answers `/-/ready`, and always stops it on exit — terminate, then kill — even when the
body raised. Scrape targets come from a `file_sd_configs` file that `set_targets` rewrites
atomically, so emulated pods can come and go while Prometheus runs, as pods do under a PodMonitor.
Each target carries the labels a PodMonitor would attach: `namespace`, `pod` and the service label
the operator groups by.

Two behaviours of Prometheus shape the API (environment.md):
- target discovery is pushed to the scrape loop at most every 5 s, so the first sample of a new
  target arrives 5–6 s after `set_targets`; `wait_for_up` waits for that;
- prometheus_client ≥ 0.23 writes `vllm:` samples as `vllm_…` under OpenMetrics negotiation, so
  by default the scrape job renames them back (`normalize_vllm_names`). Turn it off to see what a
  cluster without the rule would store.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from sloscale.sandbox.processes import free_port, stop_process

DEFAULT_BINARY = "/usr/bin/prometheus"
BINARY_ENV = "SLOSCALE_PROMETHEUS_BINARY"
JOB_NAME = "vllm"


class PrometheusNotInstalled(RuntimeError):
    """The prometheus binary is missing."""


class PrometheusFailed(RuntimeError):
    """Prometheus exited or never became ready; the message carries the end of its log."""


@dataclass(frozen=True)
class Target:
    """One scrape target: `host:port` and the labels Prometheus attaches to all its series."""

    address: str
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def pod(
        cls,
        address: str,
        *,
        namespace: str,
        pod: str,
        service: str,
        service_label: str = "sloscale_service",
    ) -> Target:
        """A vLLM pod of an InferenceService, labelled as the operator's PodMonitor labels it."""
        return cls(address, {"namespace": namespace, "pod": pod, service_label: service})


def find_binary(binary: str | None = None) -> str:
    """The prometheus executable: `binary`, else $SLOSCALE_PROMETHEUS_BINARY, else
    /usr/bin/prometheus, else `prometheus` on PATH. A binary named explicitly must exist."""
    named = binary or os.environ.get(BINARY_ENV)
    candidates = [named] if named else [DEFAULT_BINARY, shutil.which("prometheus")]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    looked = named if named else f"{DEFAULT_BINARY} and `prometheus` on PATH"
    raise PrometheusNotInstalled(
        f"the prometheus binary was not found (looked for {looked}); install it with "
        "`apt-get install prometheus` (Debian/Ubuntu) or put a Prometheus 2.x binary on PATH"
    )



def _duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


class PrometheusServer:
    """A Prometheus process scraping the targets given to `set_targets`.

    Use as a context manager (`with`, or `async with` from async code); `start()`/`stop()` do the
    same by hand. `url` is the HTTP API base, e.g. http://127.0.0.1:40123.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        scrape_interval_s: float = 1.0,
        binary: str | None = None,
        normalize_vllm_names: bool = True,
        ready_timeout_s: float = 30.0,
    ) -> None:
        self.directory = Path(directory)
        self.scrape_interval_s = scrape_interval_s
        self.binary = binary  # resolved by start(), which says how to install it if missing
        self.normalize_vllm_names = normalize_vllm_names
        self.ready_timeout_s = ready_timeout_s
        self.config_path = self.directory / "prometheus.yml"
        self.targets_path = self.directory / "targets.json"
        self.log_path = self.directory / "prometheus.log"
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("Prometheus is not running")
        return f"http://127.0.0.1:{self.port}"

    # -- configuration ---------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """The prometheus.yml this server runs with."""
        interval = _duration(self.scrape_interval_s)
        job: dict[str, Any] = {
            "job_name": JOB_NAME,
            "scrape_interval": interval,
            # Prometheus rejects a timeout above the interval.
            "scrape_timeout": _duration(min(self.scrape_interval_s, 10.0)),
            "file_sd_configs": [{"files": [str(self.targets_path)], "refresh_interval": "30s"}],
        }
        if self.normalize_vllm_names:
            job["metric_relabel_configs"] = [
                {
                    "source_labels": ["__name__"],
                    "regex": "vllm_(.+)",
                    "target_label": "__name__",
                    "replacement": "vllm:$1",
                }
            ]
        return {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [job],
        }

    def set_targets(self, targets: Sequence[Target]) -> None:
        """Replace the scrape targets. Written atomically: Prometheus never reads half a file."""
        groups = [{"targets": [t.address], "labels": dict(t.labels)} for t in targets]
        tmp = self.targets_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups, indent=1))
        tmp.replace(self.targets_path)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> PrometheusServer:
        """Write the config and start Prometheus; returns once it is ready, or raises."""
        if self._process is not None:
            raise RuntimeError("Prometheus is already running")
        binary = find_binary(self.binary)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        if not self.targets_path.exists():
            self.set_targets([])
        # The free port may be taken between probing and binding; then Prometheus exits at once
        # and another port is tried.
        last_error: PrometheusFailed | None = None
        for _ in range(3):
            try:
                self._launch(binary, free_port())
                return self
            except PrometheusFailed as error:
                last_error = error
                self.stop()
        assert last_error is not None
        raise last_error

    def _launch(self, binary: str, port: int) -> None:
        self.port = port
        storage = self.directory / "data"
        args = [
            binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={storage}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
        ]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise PrometheusFailed(
                    f"prometheus exited with {self._process.returncode}: {self._log_tail()}"
                )
            if self._get("/-/ready", timeout_s=1.0) is not None:
                return
            time.sleep(0.05)
        raise PrometheusFailed(
            f"prometheus not ready after {self.ready_timeout_s:g}s: {self._log_tail()}"
        )

    def stop(self) -> None:
        """Stop the process: SIGTERM, then SIGKILL after 10 s. Safe to call more than once."""
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, grace_s=10, kill_wait_s=10)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> PrometheusServer:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- observing -------------------------------------------------------------------------------

    def active_targets(self) -> list[dict[str, Any]]:
        """Prometheus's view of its targets (`/api/v1/targets`, active ones)."""
        body = self._get("/api/v1/targets?state=active", timeout_s=5.0)
        if body is None:
            return []
        targets: list[dict[str, Any]] = json.loads(body)["data"]["activeTargets"]
        return targets

    def wait_for_up(self, n: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until at least `n` targets have been scraped successfully; returns the up targets.

        Raises TimeoutError with each target's health and last error when they are not.
        """
        deadline = time.monotonic() + timeout
        targets: list[dict[str, Any]] = []
        while True:
            targets = self.active_targets()
            up = [t for t in targets if t.get("health") == "up"]
            if len(up) >= n:
                return up
            if time.monotonic() >= deadline:
                seen = ", ".join(
                    f"{t.get('scrapeUrl')}: {t.get('health')} {t.get('lastError', '')}"
                    for t in targets
                )
                raise TimeoutError(
                    f"{len(up)} of {n} targets up after {timeout:g}s ({seen or 'no targets'})"
                )
            time.sleep(0.2)

    def _get(self, path: str, timeout_s: float) -> bytes | None:
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=timeout_s) as response:
                body: bytes = response.read()
                return body
        except (urllib.error.URLError, OSError):
            return None

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"
