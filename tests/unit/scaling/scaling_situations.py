"""Situations for the control-law tests, built the way Prometheus would report them.

Histograms are synthesised with vLLM's V1 bucket edges (vllm-metrics.md) from a log-normal
latency distribution given its median and 99th percentile, so a test reads like the situation it
describes: "p99 TTFT 1.8 s, 37 waiting". `Service` is a small fleet on a fake clock — pods that
take a cold start to become ready, a batch change that rolls them, and a true step curve that
may differ from the law's prior — for the story tests that walk a timeline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from sloscale.scaling import (
    Batching,
    ControlState,
    Decision,
    Histogram,
    LatencyMetric,
    LatencyTarget,
    MetricsSnapshot,
    MetricsUnavailable,
    Objective,
    ObjectiveKind,
    Observation,
    Policy,
    RateLimit,
    Unavailability,
    WorkloadObservation,
    decide,
)
from sloscale.scaling.capacity import StepCurve, predict
from sloscale.scaling.policy import H100, EngineProfile
from sloscale.scaling.state import Calibration, Mix

INF = math.inf
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0, INF)  # fmt: skip
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
               20.0, 40.0, 80.0, INF)  # fmt: skip
E2E_BUCKETS = (0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
               120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0, INF)  # fmt: skip
Z99 = 2.3263478740408408


def lognormal(bounds: tuple[float, ...], rate: float, p50: float, p99: float) -> Histogram:
    """`rate` observations/s whose median is `p50` and 99th percentile `p99`."""
    if rate <= 0.0:
        return Histogram(bounds, tuple(0.0 for _ in bounds))
    mu = math.log(max(p50, 1e-6))
    sigma = max(math.log(max(p99, p50 * 1.0001) / max(p50, 1e-6)) / Z99, 1e-6)
    counts = []
    for b in bounds:
        share = (
            1.0
            if math.isinf(b)
            else 0.5 * (1.0 + math.erf((math.log(b) - mu) / (sigma * math.sqrt(2.0))))
        )
        counts.append(rate * share)
    return Histogram(bounds, tuple(counts))


def snapshot(
    taken_at: float = 0.0,
    *,
    rps: float,
    ttft: tuple[float, float] = (0.05, 0.2),
    itl: tuple[float, float] = (0.012, 0.02),
    e2e: tuple[float, float] | None = None,
    queue: tuple[float, float] = (0.0005, 0.001),
    running: float | None = None,
    waiting: float = 0.0,
    pods: int = 1,
    prompt_tokens: float = 1024.0,
    output_tokens: float = 256.0,
) -> MetricsSnapshot:
    """A fresh snapshot of a service serving `rps` with the given (p50, p99) latencies."""
    if e2e is None:
        e2e = (ttft[0] + output_tokens * itl[0], ttft[1] + output_tokens * itl[0] * 1.5)
    if running is None:
        running = rps * e2e[0]
    return MetricsSnapshot(
        taken_at=taken_at,
        window_s=60.0,
        pods_reporting=pods,
        requests_per_s=rps,
        prompt_tokens_per_s=rps * prompt_tokens,
        generation_tokens_per_s=rps * output_tokens,
        running=running,
        waiting=waiting,
        kv_usage=0.3,
        preemptions_per_s=0.0,
        ttft=lognormal(TTFT_BUCKETS, rps, *ttft),
        itl=lognormal(ITL_BUCKETS, rps * output_tokens, *itl),
        e2e=lognormal(E2E_BUCKETS, rps, *e2e),
        queue_time=lognormal(E2E_BUCKETS, rps, *queue),
    )


def idle(taken_at: float = 0.0, pods: int = 1) -> MetricsSnapshot:
    """Pods answer scrapes; nothing arrives, runs or waits."""
    return snapshot(taken_at, rps=0.0, running=0.0, pods=pods)


def outage(reason: Unavailability = Unavailability.STALE) -> MetricsUnavailable:
    return MetricsUnavailable(reason, "newest sample 300s old")


def workload(
    replicas: int,
    *,
    ready: int | None = None,
    starting: int = 0,
    batch: int | None = 64,
    rollout: bool = False,
    starts: tuple[float, ...] = (),
) -> WorkloadObservation:
    return WorkloadObservation(
        replicas=replicas,
        ready=replicas - starting if ready is None else ready,
        starting=starting,
        max_num_seqs=batch,
        rollout_in_progress=rollout,
        pod_start_durations_s=starts,
    )


def latency_policy(
    metric: LatencyMetric = LatencyMetric.TTFT,
    target_s: float = 1.0,
    *,
    quantile: float = 0.99,
    window_s: float = 300.0,
    min_replicas: int = 1,
    max_replicas: int = 8,
    batching: Batching | None = None,
    scale_down: RateLimit | None = None,
    profile: EngineProfile = H100,
) -> Policy:
    objective = Objective(
        ObjectiveKind.LATENCY, LatencyTarget(metric, quantile, target_s, window_s)
    )
    policy = Policy(objective, min_replicas, max_replicas, profile=profile)
    if batching is not None:
        policy = replace(policy, batching=batching)
    if scale_down is not None:
        policy = replace(policy, scale_down=scale_down)
    return policy


def throughput_policy(
    tokens_per_s: float | None,
    bound: LatencyTarget,
    *,
    min_replicas: int = 1,
    max_replicas: int = 8,
    batching: Batching | None = None,
) -> Policy:
    objective = Objective(ObjectiveKind.THROUGHPUT, bound, tokens_per_s)
    return Policy(objective, min_replicas, max_replicas, batching=batching or Batching())


@dataclass
class Service:
    """A fleet on a fake clock whose pods follow `profile` (the truth, not the law's prior).

    Pods become ready `cold_start_s` after creation; a batch change rolls every pod (each new pod
    takes a cold start, the old ones serve meanwhile). Demand above capacity queues; the queue
    drains when capacity returns.
    """

    profile: EngineProfile
    mix: Mix
    replicas: int
    batch: int
    cold_start_s: float = 120.0
    burstiness: float = 1.3  # tail concurrency ÷ mean: how far bursts fill the batch
    ready_at: list[float] = field(default_factory=list)
    waiting: float = 0.0
    rollout_until: float = -INF
    last: float | None = None
    starts: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not self.ready_at:
            self.ready_at = [-INF] * self.replicas

    def ready(self, now: float) -> int:
        return sum(1 for t in self.ready_at if t <= now)

    def workload(self, now: float) -> WorkloadObservation:
        ready = self.ready(now)
        return WorkloadObservation(
            replicas=self.replicas,
            ready=ready,
            starting=self.replicas - ready,
            max_num_seqs=self.batch,
            rollout_in_progress=now < self.rollout_until,
            pod_start_durations_s=self.starts,
        )

    def metrics(self, now: float, demand_rps: float) -> MetricsSnapshot:
        dt = 0.0 if self.last is None else now - self.last
        self.last = now
        n = max(self.ready(now), 1)
        curve = StepCurve.prior(self.profile, self.mix)
        capacity = n * curve.capacity_rps(self.batch)
        served = (
            min(demand_rps + self.waiting / max(dt, 1.0), capacity)
            if dt > 0
            else min(demand_rps, capacity)
        )
        self.waiting = max(0.0, self.waiting + (demand_rps - served) * dt)
        if self.waiting < 1e-6:
            self.waiting = 0.0
        if demand_rps <= 0.0 and self.waiting <= 0.0:
            return idle(now, n)
        p = predict(
            curve,
            Calibration(itl_tail=self.burstiness),
            n,
            self.batch,
            min(served, capacity * 0.95),
            0.99,
        )
        backlog_s = self.waiting / capacity
        queue99 = (p.queue_s if math.isfinite(p.queue_s) else 0.0) + backlog_s
        prefill = curve.prefill_s(max(p.concurrency, 1.0))
        return snapshot(
            now,
            rps=served,
            ttft=(prefill * 0.6 + backlog_s * 0.5, prefill + queue99),
            itl=(p.step_s, p.itl_s),
            e2e=(
                prefill + self.mix.output_tokens * p.step_s + backlog_s * 0.5,
                p.e2e_s + backlog_s,
            ),
            queue=(max(backlog_s * 0.5, 1e-4), max(queue99, 2e-4)),
            # Saturated, every batch slot is busy; otherwise Little's law gives the concurrency.
            running=self.batch * n if served >= capacity * 0.95 else p.concurrency * n,
            waiting=self.waiting,
            pods=n,
            prompt_tokens=self.mix.input_tokens,
            output_tokens=self.mix.output_tokens,
        )

    def observe(self, now: float, demand_rps: float) -> Observation:
        return Observation(self.metrics(now, demand_rps), self.workload(now))

    def apply(self, decision: Decision, now: float) -> None:
        """Actuate like the operator in Enforce mode."""
        if decision.replicas > self.replicas:
            self.ready_at += [now + self.cold_start_s] * (decision.replicas - self.replicas)
        elif decision.replicas < self.replicas:
            self.ready_at = sorted(self.ready_at)[: decision.replicas]
        self.replicas = decision.replicas
        if decision.max_num_seqs is not None and decision.max_num_seqs != self.batch:
            self.batch = decision.max_num_seqs
            self.rollout_until = now + self.cold_start_s


@dataclass
class Loop:
    """The operator's tick loop over a `Service`, recording every decision."""

    service: Service
    policy: Policy
    now: float = 0.0
    tick_s: float = 15.0
    state: ControlState | None = None
    decisions: list[Decision] = field(default_factory=list)

    def tick(
        self, demand_rps: float, *, metrics: MetricsSnapshot | MetricsUnavailable | None = None
    ) -> Decision:
        if self.state is None:
            self.state = ControlState.initial(self.now, self.service.replicas, self.service.batch)
        observation = self.service.observe(self.now, demand_rps)
        if metrics is not None:
            observation = Observation(metrics, observation.workload)
        decision, self.state = decide(observation, self.policy, self.state, self.now)
        self.service.apply(decision, self.now)
        self.decisions.append(decision)
        self.now += self.tick_s
        return decision

    def run(self, demand_rps: float, seconds: float) -> list[Decision]:
        out = []
        end = self.now + seconds
        while self.now < end:
            out.append(self.tick(demand_rps))
        return out
