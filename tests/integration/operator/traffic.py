"""A vLLM-shaped pod for the operator's tests: real metrics on real HTTP, latencies set by the test.

`ServiceTraffic` records finished requests into `VllmMetrics` at a steady rate from a background
thread, with the latencies the test dictates (slow first tokens and a queue, or fast ones), and
serves them on a loopback `/metrics` for a real Prometheus to scrape. It stands in for the vLLM
pods of one InferenceService; the operator only ever sees it through Prometheus.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from types import TracebackType

from sloscale.sandbox.prometheus import Target
from sloscale.sandbox.vllm_metrics import MetricsExporter, VllmMetrics


@dataclass(frozen=True)
class Load:
    """What the pods report: request rate and the latencies each request sees."""

    requests_per_s: float = 10.0
    ttft_s: float = 0.2
    queue_s: float = 0.01
    itl_s: float = 0.02
    prompt_tokens: int = 200
    generation_tokens: int = 50
    running: int = 8
    waiting: int = 0


FAST = Load()
SLOW_FIRST_TOKENS = Load(ttft_s=1.8, queue_s=1.6, running=64, waiting=37)


class ServiceTraffic:
    """One service's pod: a metrics exporter fed at `load` until closed."""

    def __init__(self, namespace: str, service: str, load: Load = FAST) -> None:
        self.namespace, self.service = namespace, service
        self.metrics = VllmMetrics(service)
        self.exporter = MetricsExporter(self.metrics.registry)
        self._load = load
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"traffic-{service}", daemon=True)
        self._thread.start()

    @property
    def target(self) -> Target:
        return Target.pod(
            self.exporter.address,
            namespace=self.namespace,
            pod=f"{self.service}-0",
            service=self.service,
        )

    def set(self, load: Load) -> None:
        with self._lock:
            self._load = load

    def update(self, **changes: float) -> None:
        with self._lock:
            self._load = replace(self._load, **changes)

    def _run(self) -> None:
        tick = 0.1
        owed = 0.0
        while not self._stop.wait(tick):
            with self._lock:
                load = self._load
            self.metrics.set_gauges(running=load.running, waiting=load.waiting, kv_usage=0.3)
            owed += load.requests_per_s * tick
            while owed >= 1.0:
                owed -= 1.0
                decode = load.itl_s * (load.generation_tokens - 1)
                self.metrics.record_request(
                    ttft_s=load.ttft_s,
                    e2e_s=load.ttft_s + decode,
                    queue_s=load.queue_s,
                    prompt_tokens=load.prompt_tokens,
                    generation_tokens=load.generation_tokens,
                    itl_s=load.itl_s,
                )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.exporter.close()

    def __enter__(self) -> ServiceTraffic:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
