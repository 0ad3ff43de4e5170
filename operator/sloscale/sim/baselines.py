"""The autoscalers SREs use today for vLLM, as faithful as their documentation allows.

Each one sees only what it would see live (Prometheus metrics through `FleetView.metrics()`, or for
Knative the queue-proxy concurrency samples) and acts only through replicas: none of them moves
the batch size, which stays at the engine's default. Their targets come from a capacity test of
one replica (`sim.capacity.Capacity`), the way an SRE configures them from a load test; the
derivation of each target is in its docstring. Sources: `prior-art.md` and the projects' docs.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from sloscale.scaling.snapshot import MetricsUnavailable
from sloscale.sim.capacity import Capacity
from sloscale.sim.fleet import Command, FleetView


class StaticPeak:
    """Static provisioning at peak: a fixed replica count sized for the trace's busiest
    minute — `ceil(peak 1-minute arrival rate / capacity per replica)` — never changed. What an
    SRE without an autoscaler runs; it knows the historical peak, not the future."""

    name = "static-peak"
    interval_s = 60.0

    def __init__(self, replicas: int) -> None:
        self.replicas = max(1, replicas)

    def tick(self, view: FleetView) -> Command:
        return Command(replicas=self.replicas)


@dataclass(frozen=True)
class HpaBehavior:
    """`autoscaling/v2` behavior with the documented defaults (kubernetes.io, HPA walkthrough):
    scale up by max(4 pods, 100 %) per 15 s with no stabilisation; scale down by up to 100 % per
    15 s after a 300 s stabilisation window (the highest recommendation in the window wins)."""

    tolerance: float = 0.10
    sync_period_s: float = 15.0
    up_pods: int = 4
    up_percent: float = 100.0
    down_stabilization_s: float = 300.0


class _HpaCore:
    """The HPA replica calculation for an AverageValue target (pkg/controller/podautoscaler):

    1. usage ratio = (metric total / current replicas) / target; inside the tolerance, hold;
    2. recommendation = ceil(metric total / target) — pods still starting report nothing and
       count as zero, which is what the calculator does for missing pods on a scale-up;
    3. scale-down stabilisation: the highest recommendation of the last window (seeded with the
       current replicas at the first sync, as after an HPA that had been running);
    4. scale-up rate limit: at most max(current + up_pods, current * (1 + up_percent/100)).
    """

    def __init__(self, behavior: HpaBehavior) -> None:
        self.behavior = behavior
        self._recommendations: deque[tuple[float, int]] = deque()

    def desired(self, now: float, current: int, total: float, target: float) -> int:
        b = self.behavior
        if not self._recommendations:
            # As if it had been running at the current size: no scale-down for a full window.
            self._recommendations.append((now, current))
        ratio = total / (current * target) if current > 0 and target > 0 else 0.0
        if abs(ratio - 1.0) <= b.tolerance:
            recommendation = current
        else:
            recommendation = max(1, math.ceil(total / target))
        self._recommendations.append((now, recommendation))
        while self._recommendations and now - self._recommendations[0][0] > b.down_stabilization_s:
            self._recommendations.popleft()
        if recommendation < current:
            recommendation = min(current, max(r for _, r in self._recommendations))
        up_limit = max(current + b.up_pods, math.ceil(current * (1 + b.up_percent / 100)))
        return min(recommendation, up_limit)


class HpaConcurrency:
    """Kubernetes HPA v2 on per-pod concurrency: a Pods metric `vllm:num_requests_running +
    vllm:num_requests_waiting` through prometheus-adapter, AverageValue target, 10 % tolerance,
    300 s scale-down stabilisation, 15 s sync. Target: the mean in-flight requests per replica at
    80 % of the replica's capacity at the objective (a common headroom for HPA targets). Holds
    when the metrics are unavailable, as the HPA does."""

    name = "hpa-concurrency"

    def __init__(self, capacity: Capacity, behavior: HpaBehavior | None = None) -> None:
        self.behavior = behavior or HpaBehavior()
        self.interval_s = self.behavior.sync_period_s
        self.target = max(1.0, capacity.concurrency_at_80)
        self._core = _HpaCore(self.behavior)

    def tick(self, view: FleetView) -> Command:
        metrics = view.metrics()
        if isinstance(metrics, MetricsUnavailable):
            return Command()
        total = metrics.running + metrics.waiting
        return Command(
            replicas=self._core.desired(view.now, view.desired_replicas, total, self.target)
        )


class KedaQueue:
    """KEDA ScaledObject with the Prometheus scaler on queue length: `sum(vllm:num_requests_waiting)`,
    metricType AverageValue, polling every 30 s, driving an HPA with the default behavior (the
    vLLM production-stack's generated ScaledObject). Threshold: the waiting requests one replica
    clears in half the latency target at its capacity (`capacity rps x target / 2`, at least 1).
    An empty queue asks for the minimum, so after the stabilisation window it scales down even
    under load — the documented weakness of a queue signal."""

    name = "keda-queue"
    polling_interval_s = 30.0

    def __init__(
        self, capacity: Capacity, target_s: float, behavior: HpaBehavior | None = None
    ) -> None:
        self.behavior = behavior or HpaBehavior()
        self.interval_s = self.behavior.sync_period_s
        self.threshold = max(1.0, capacity.max_rps * target_s / 2)
        self._core = _HpaCore(self.behavior)
        self._cached: float | None = None
        self._polled_at = -math.inf

    def tick(self, view: FleetView) -> Command:
        if view.now - self._polled_at >= self.polling_interval_s:
            metrics = view.metrics()
            self._cached = None if isinstance(metrics, MetricsUnavailable) else metrics.waiting
            self._polled_at = view.now
        if self._cached is None:
            return Command()
        return Command(
            replicas=self._core.desired(
                view.now, view.desired_replicas, self._cached, self.threshold
            )
        )


class KnativeKpa:
    """Knative Pod Autoscaler (serving `pkg/autoscaler/scaling/autoscaler.go`), concurrency mode:

    - observed concurrency: in-flight requests per second sample, averaged over the stable
      window (60 s) and the panic window (6 s, 10 % of stable);
    - desired = ceil(observed / (target x 70 % target utilisation)) for each window;
    - panic when the panic window's (unrounded) desired count reaches 200 % of the ready pods; while
      panicking it never scales down; panic ends after a full stable window without the
      condition;
    - scale-up rate 1000x, scale-down rate 2x (at most halving) per 2 s tick; scale to zero off;
    - no scale-down before a full stable window of data has been seen since it started.

    Target concurrency per pod: the mean in-flight requests of one replica at its capacity.
    """

    name = "knative-kpa"
    interval_s = 2.0

    def __init__(
        self,
        capacity: Capacity,
        stable_window_s: float = 60.0,
        panic_window_percent: float = 10.0,
        panic_threshold: float = 2.0,
        target_utilization: float = 0.7,
    ) -> None:
        self.target = max(1.0, capacity.concurrency_at_max)
        self.stable_window_s = stable_window_s
        self.panic_window_s = stable_window_s * panic_window_percent / 100
        self.panic_threshold = panic_threshold
        self.utilization = target_utilization
        self.panic_since: float | None = None
        self._last_panic_condition = -math.inf
        self._max_panic_pods = 0
        self._started: float | None = None
        self.panic_entries = 0

    def tick(self, view: FleetView) -> Command:
        stable = view.mean_concurrency(self.stable_window_s)
        panic = view.mean_concurrency(self.panic_window_s)
        if stable is None or panic is None:
            return Command()
        if self._started is None:
            self._started = view.now
        spec = self.target * self.utilization
        desired_stable = math.ceil(stable / spec)
        desired_panic = math.ceil(panic / spec)
        ready = max(1, view.workload().ready)
        if panic / spec / ready >= self.panic_threshold:
            self._last_panic_condition = view.now
            if self.panic_since is None:
                self.panic_since = view.now
                self.panic_entries += 1
        elif (
            self.panic_since is not None
            and view.now - self._last_panic_condition >= self.stable_window_s
        ):
            self.panic_since = None
            self._max_panic_pods = 0
        if self.panic_since is not None:
            # Never scale down while panicking.
            self._max_panic_pods = max(self._max_panic_pods, desired_panic, view.desired_replicas)
            desired = self._max_panic_pods
        else:
            desired = desired_stable
            if view.now - self._started < self.stable_window_s:
                # Like Knative after a restart: no scale-down before a full stable window of data.
                desired = max(desired, view.desired_replicas)
        desired = min(desired, math.ceil(1000 * ready))
        desired = max(desired, math.ceil(ready / 2))
        return Command(replicas=max(1, desired))

    @property
    def panicking(self) -> bool:
        return self.panic_since is not None


class LlmdSloAware:
    """The llm-d SLO-aware KEDA guide: signal = max(P90 TTFT / TTFT SLO, P90 TPOT / TPOT SLO)
    from Prometheus, clamped to [0, 2] and smoothed (EWMA, weight 0.5 per 15 s poll); hysteresis
    band 0.40–0.55 (read here as an HPA Value target of 0.475 with the band as its tolerance);
    warm-up credit: pods still starting count as capacity. Outside the band, desired = ceil((ready + starting) x signal / 0.475); scale-down goes
    through the HPA's 300 s stabilisation. The TTFT SLO is the objective's target; the TPOT SLO
    is a parameter (100 ms by default), inactive for a TTFT-only objective in practice."""

    name = "llm-d-slo"

    def __init__(
        self,
        ttft_slo_s: float,
        tpot_slo_s: float = 0.1,
        band: tuple[float, float] = (0.40, 0.55),
        smoothing: float = 0.5,
        behavior: HpaBehavior | None = None,
    ) -> None:
        self.behavior = behavior or HpaBehavior()
        self.interval_s = self.behavior.sync_period_s
        self.ttft_slo_s = ttft_slo_s
        self.tpot_slo_s = tpot_slo_s
        self.low, self.high = band
        self.smoothing = smoothing
        self.signal: float | None = None
        self._recommendations: deque[tuple[float, int]] = deque()

    def tick(self, view: FleetView) -> Command:
        metrics = view.metrics()
        if isinstance(metrics, MetricsUnavailable):
            return Command()
        p90_ttft = metrics.ttft.quantile(0.9) or 0.0
        p90_tpot = metrics.itl.quantile(0.9) or 0.0
        raw = min(2.0, max(p90_ttft / self.ttft_slo_s, p90_tpot / self.tpot_slo_s))
        self.signal = (
            raw
            if self.signal is None
            else self.smoothing * raw + (1 - self.smoothing) * self.signal
        )
        workload = view.workload()
        current = view.desired_replicas
        if self.low <= self.signal <= self.high:
            recommendation = current
        else:
            credited = max(1, workload.ready + workload.starting)
            recommendation = max(
                1, math.ceil(credited * self.signal / ((self.low + self.high) / 2))
            )
        now = view.now
        if not self._recommendations:
            self._recommendations.append((now, current))
        self._recommendations.append((now, recommendation))
        while (
            self._recommendations
            and now - self._recommendations[0][0] > self.behavior.down_stabilization_s
        ):
            self._recommendations.popleft()
        if recommendation < current:
            recommendation = min(current, max(r for _, r in self._recommendations))
        return Command(replicas=recommendation)
