"""Properties that hold over any sequence of observations (hypothesis).

Each example walks a random timeline: demand, latencies, queue, pods starting, rollouts and
metrics outages change at every tick, and the workload follows the decisions as in Enforce mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scaling_situations import latency_policy, outage, snapshot, throughput_policy

from sloscale.scaling import (
    Batching,
    ControlState,
    Decision,
    LatencyMetric,
    LatencyTarget,
    Observation,
    Policy,
    RateLimit,
    WorkloadObservation,
    decide,
)


@dataclass(frozen=True)
class Tick:
    dt: float
    rps: float
    latency: float  # p99 TTFT/ITL/E2E scale
    waiting: float
    starting: int
    rollout: bool
    outage: bool


ticks = st.builds(
    Tick,
    dt=st.sampled_from([2.0, 5.0, 15.0, 30.0, 61.0]),
    rps=st.one_of(st.just(0.0), st.floats(0.01, 400.0)),
    latency=st.floats(0.2, 20.0),
    waiting=st.one_of(st.just(0.0), st.floats(0.0, 500.0)),
    starting=st.integers(0, 3),
    rollout=st.booleans(),
    outage=st.booleans(),
)

TARGETS = {LatencyMetric.TTFT: 1.0, LatencyMetric.ITL: 0.05, LatencyMetric.E2E: 30.0}


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    metric = draw(st.sampled_from(list(LatencyMetric)))
    lo = draw(st.integers(0, 4))
    hi = lo + draw(st.integers(0, 12))
    if draw(st.booleans()):
        policy = latency_policy(metric, TARGETS[metric], min_replicas=lo, max_replicas=hi)
    else:
        bound = LatencyTarget(metric, 0.99, TARGETS[metric])
        policy = throughput_policy(
            draw(st.sampled_from([None, 5000.0])), bound, min_replicas=lo, max_replicas=hi
        )
    rates = st.sampled_from([10, 50, 100])
    return replace(
        policy,
        scale_up=RateLimit(
            draw(st.sampled_from([0.0, 30.0])),
            draw(st.integers(1, 4)),
            draw(rates),
            draw(st.sampled_from([15.0, 60.0])),
        ),
        scale_down=RateLimit(
            draw(st.sampled_from([0.0, 120.0, 300.0])),
            draw(st.integers(1, 3)),
            draw(rates),
            draw(st.sampled_from([30.0, 60.0])),
        ),
        batching=Batching(
            enabled=draw(st.booleans()),
            min_seqs=8,
            initial_seqs=64,
            max_seqs=256,
            cooldown_s=draw(st.sampled_from([0.0, 120.0, 900.0])),
        ),
    )


def observe(
    tick: Tick, now: float, replicas: int, batch: int | None, metric: LatencyMetric
) -> Observation:
    starting = min(tick.starting, replicas)
    work = WorkloadObservation(
        replicas=replicas,
        ready=replicas - starting,
        starting=starting,
        max_num_seqs=batch,
        rollout_in_progress=tick.rollout,
        pod_start_durations_s=(90.0,) if tick.starting else (),
    )
    if tick.outage:
        return Observation(outage(), work)
    base = {"TimeToFirstToken": 0.2, "InterTokenLatency": 0.01, "EndToEndLatency": 3.0}[metric]
    p99 = base * tick.latency
    snap = snapshot(
        now,
        rps=tick.rps,
        ttft=(p99 / 3, p99) if metric is LatencyMetric.TTFT else (0.05, 0.2),
        itl=(p99 / 2, p99) if metric is LatencyMetric.ITL else (0.012, 0.02),
        e2e=(p99 / 3, p99) if metric is LatencyMetric.E2E else None,
        waiting=tick.waiting if tick.rps > 0 else 0.0,
        running=None if tick.rps > 0 else 0.0,
        pods=max(replicas - starting, 1),
    )
    return Observation(snap, work)


@dataclass
class Run:
    times: list[float]
    before: list[int]  # replicas each decision started from
    decisions: list[Decision]
    observations: list[Observation]


def walk(
    policy: Policy,
    replicas: int,
    batch: int | None,
    timeline: list[Tick],
    restored_change: float | None,
) -> Run:
    now = 1_000.0
    state = ControlState.initial(now, replicas, batch, last_batch_change_time=restored_change)
    run = Run([], [], [], [])
    for tick in timeline:
        now += tick.dt
        obs = observe(tick, now, replicas, batch, policy.objective.latency.metric)
        decision, state = decide(obs, policy, state, now)
        run.times.append(now)
        run.before.append(replicas)
        run.decisions.append(decision)
        run.observations.append(obs)
        replicas, batch = decision.replicas, decision.max_num_seqs
    return run


settings_ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings_
@given(
    policy=policies(), start=st.integers(0, 20), timeline=st.lists(ticks, min_size=1, max_size=30)
)
def test_bounds_always_hold_on_fresh_metrics(
    policy: Policy, start: int, timeline: list[Tick]
) -> None:
    run = walk(policy, start, 64, timeline, None)
    for obs, d in zip(run.observations, run.decisions, strict=True):
        if d.metrics_available:
            assert policy.min_replicas <= d.replicas <= policy.max_replicas
        if d.max_num_seqs is not None and d.max_num_seqs != obs.workload.max_num_seqs:
            assert policy.batching.min_seqs <= d.max_num_seqs <= policy.batching.max_seqs


@settings_
@given(
    policy=policies(), start=st.integers(0, 20), timeline=st.lists(ticks, min_size=1, max_size=30)
)
def test_missing_data_holds_both_levers_exactly(
    policy: Policy, start: int, timeline: list[Tick]
) -> None:
    run = walk(policy, start, 64, timeline, None)
    for obs, d in zip(run.observations, run.decisions, strict=True):
        if not d.metrics_available:
            assert d.replicas == obs.workload.replicas
            assert d.max_num_seqs == obs.workload.max_num_seqs
            assert d.reason == "MetricsUnavailable"


def replicas_at(run: Run, initial: int, t: float) -> int:
    """Replicas in effect after every decision made at or before `t`."""
    current = initial
    for time, d in zip(run.times, run.decisions, strict=True):
        if time > t:
            break
        current = d.replicas
    return current


@settings_
@given(
    policy=policies(), start=st.integers(1, 20), timeline=st.lists(ticks, min_size=1, max_size=30)
)
def test_rate_limits_hold_over_any_sequence(
    policy: Policy, start: int, timeline: list[Tick]
) -> None:
    start = min(max(start, policy.min_replicas), policy.max_replicas)
    run = walk(policy, start, 64, timeline, None)
    for t, before, d in zip(run.times, run.before, run.decisions, strict=True):
        if d.replicas > before:
            rule = policy.scale_up
            base = replicas_at(run, start, t - rule.period_s)
            allowed = max(
                base + rule.max_replicas_per_period,
                math.ceil(base * (1 + rule.max_percent_per_period / 100)),
            )
            assert d.replicas <= max(allowed, before, policy.min_replicas)
        elif d.replicas < before:
            rule = policy.scale_down
            base = replicas_at(run, start, t - rule.period_s)
            allowed = min(
                base - rule.max_replicas_per_period,
                int(base * (1 - rule.max_percent_per_period / 100)),
            )
            assert d.replicas >= min(allowed, before, policy.max_replicas)


@settings_
@given(
    policy=policies(),
    start=st.integers(1, 10),
    timeline=st.lists(ticks, min_size=1, max_size=30),
    restored=st.one_of(st.none(), st.floats(0.0, 1_000.0)),
)
def test_batch_never_changes_during_a_rollout_or_within_the_cooldown(
    policy: Policy, start: int, timeline: list[Tick], restored: float | None
) -> None:
    run = walk(policy, start, 64, timeline, restored)
    last_change = restored
    for t, obs, d in zip(run.times, run.observations, run.decisions, strict=True):
        if d.max_num_seqs != obs.workload.max_num_seqs:
            assert policy.batching.enabled
            assert not obs.workload.rollout_in_progress
            assert d.metrics_available
            assert last_change is None or t - last_change >= policy.batching.cooldown_s
            last_change = t


@st.composite
def batch_bounds(draw: st.DrawFn) -> Batching:
    """Any bounds the CRD admits; vLLM's default (1024 on H100) mostly outside them."""
    lo = draw(st.integers(1, 128))
    hi = draw(st.one_of(st.integers(lo, 512), st.integers(lo, 2048)))
    return Batching(
        enabled=draw(st.booleans()),
        min_seqs=lo,
        initial_seqs=draw(st.integers(lo, hi)),
        max_seqs=hi,
        cooldown_s=draw(st.sampled_from([0.0, 120.0, 900.0])),
    )


@settings_
@given(
    policy=policies(),
    bounds=batch_bounds(),
    start=st.integers(1, 10),
    batch=st.one_of(st.none(), st.integers(1, 4096)),
    timeline=st.lists(ticks, min_size=1, max_size=30),
    restored=st.one_of(st.none(), st.floats(0.0, 1_000.0)),
)
def test_the_decided_batch_stays_within_its_bounds_and_never_moves_when_batching_is_off(
    policy: Policy,
    bounds: Batching,
    start: int,
    batch: int | None,
    timeline: list[Tick],
    restored: float | None,
) -> None:
    """Whatever the template holds — unset (vLLM's default), inside or outside the bounds."""
    policy = replace(policy, batching=bounds)
    run = walk(policy, start, batch, timeline, restored)
    last_change = restored

    def within(b: int | None) -> bool:
        return b is not None and bounds.min_seqs <= b <= bounds.max_seqs

    for t, obs, d in zip(run.times, run.observations, run.decisions, strict=True):
        seen = obs.workload.max_num_seqs
        in_force = seen if seen is not None else policy.profile.default_max_num_seqs
        if not bounds.enabled or not d.metrics_available:
            assert d.max_num_seqs == seen
            continue
        if obs.workload.rollout_in_progress and not within(in_force):
            assert d.max_num_seqs == seen  # a rollout holds even an out-of-bounds batch
            continue
        assert within(d.max_num_seqs), (seen, d.max_num_seqs, d.message)
        if d.max_num_seqs != in_force:
            # Only a batch outside the bounds may move within the cooldown.
            if within(in_force):
                assert last_change is None or t - last_change >= bounds.cooldown_s
            last_change = t


@settings_
@given(
    policy=policies(), start=st.integers(1, 10), timeline=st.lists(ticks, min_size=1, max_size=30)
)
def test_no_scale_down_before_a_full_window_since_start(
    policy: Policy, start: int, timeline: list[Tick]
) -> None:
    run = walk(policy, start, 64, timeline, None)
    window = policy.objective.latency.window_s
    for t, before, d in zip(run.times, run.before, run.decisions, strict=True):
        if t - 1_000.0 < window and before <= policy.max_replicas:
            assert d.replicas >= before or before < policy.min_replicas
