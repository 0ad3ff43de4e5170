"""`sloscale bench`: our control law against the peers and the oracle, on one trace, in one run.

A run, step by step:

1. Resolve the GPU profile and the objective; build the fleet configuration (cold start,
   scrape interval, rate window, replica bounds).
2. Capacity-test one replica at the baselines' batch size (the engine's default `max_num_seqs`)
   with the trace's length mix: the numbers an SRE would configure the peers with.
3. Plan the oracle (`sim.oracle`): per-window minimum replicas for each candidate batch, the
   cheapest schedule given cold starts.
4. Replay the trace once per policy, each starting warm with what the first window needs at its
   own batch size, except static provisioning, which starts and stays at its peak size. The
   oracle's run is the last replay of its repair rounds.
5. Score each run on ground truth (`sim.objective`) and report cost, attainment and the rest.

Everything is deterministic for a seed: the trace multiplier's jitter, the capacity test's
arrivals, and the simulation itself (no randomness, ties broken by creation order).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from sloscale.engine import resolve_profile
from sloscale.scaling.policy import Batching, EngineProfile, ObjectiveKind, Policy
from sloscale.sim.baselines import HpaConcurrency, KedaQueue, KnativeKpa, LlmdSloAware, StaticPeak
from sloscale.sim.capacity import Capacity, measure_capacity
from sloscale.sim.fleet import Autoscaler, FleetConfig, FleetSimulation, RunResult
from sloscale.sim.objective import BenchObjective, window_scores
from sloscale.sim.oracle import OraclePlan, plan, repair, window_requirement
from sloscale.traces import Trace

ALL_POLICIES = (
    "sloscale",
    "static-peak",
    "hpa-concurrency",
    "keda-queue",
    "knative-kpa",
    "llm-d-slo",
    "oracle",
)


@dataclass(frozen=True)
class Scenario:
    trace_name: str
    objective: str
    gpu: str = "h100"
    cold_start_s: float = 120.0
    rate_scale: float = 1.0
    seed: int = 0
    policies: tuple[str, ...] = ALL_POLICIES
    min_replicas: int = 1
    max_replicas: int = 64
    scrape_interval_s: float = 15.0
    rate_window_s: float = 60.0
    tick_s: float = 15.0
    oracle_batches: tuple[int, ...] = ()  # empty: the baselines' batch and 64, 256
    batching: bool = True
    capacity_test_s: float = 600.0  # length of each capacity-test run


@dataclass
class BenchResult:
    scenario: dict[str, Any]
    policies: dict[str, dict[str, Any]]
    runs: dict[str, RunResult] = field(default_factory=dict)
    plan: OraclePlan | None = None
    capacity: Capacity | None = None

    def to_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "policies": self.policies}


Progress = Callable[[str, float, float], None]  # (stage, done, total)


def _peak_rate(trace: Trace, window_s: float = 60.0) -> float:
    rates = trace.rate_per_window(window_s)
    return float(rates.max()) if len(rates) else 0.0


def build_policy(
    scenario: Scenario, objective: BenchObjective, profile: EngineProfile, baseline_batch: int
) -> Policy:
    """The Policy the operator would resolve from an InferenceService with this objective."""
    batching = Batching(enabled=scenario.batching, max_seqs=max(256, baseline_batch))
    return Policy(
        objective=objective.to_policy_objective(),
        min_replicas=scenario.min_replicas,
        max_replicas=scenario.max_replicas,
        batching=batching,
        cold_start_s=scenario.cold_start_s,
        profile=profile,
    )


def score(
    name: str, result: RunResult, objective: BenchObjective, oracle_gpu_hours: float | None
) -> dict[str, Any]:
    values = objective.values(result)
    done = np.where(np.isnan(values), np.inf, values)
    windows = window_scores(objective, result.arrival_s, values, result.horizon_s)
    gpu_hours = result.gpu_seconds / 3600.0
    within = float(np.mean(done <= objective.target_s)) if len(done) else 1.0
    p50, p99 = (
        np.quantile(done, [0.5, 0.99], method="inverted_cdf").tolist() if len(done) else (0.0, 0.0)
    )
    timeline = result.timeline
    mean_replicas = float(np.mean(timeline["pods"])) if len(timeline["pods"]) else 0.0
    return {
        "attainment_windows": windows.attainment,
        "attainment_requests": within,
        "gpu_hours": gpu_hours,
        "p50_s": _finite(p50),
        "p99_s": _finite(p99),
        "scale_events": result.scale_events,
        "batch_changes": result.batch_changes,
        "tokens_per_gpu_second": result.generated_tokens / result.gpu_seconds
        if result.gpu_seconds
        else 0.0,
        "max_queue": result.max_queue,
        "cost_vs_oracle": gpu_hours / oracle_gpu_hours if oracle_gpu_hours else None,
        "mean_replicas": mean_replicas,
        "windows_counted": int(windows.counted.sum()),
        "preemptions": result.preemptions,
        "unfinished_requests": int(np.isnan(result.e2e_s).sum()),
        "wall_s": result.wall_s,
        **result.details,
    }


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def run_bench(trace: Trace, scenario: Scenario, progress: Progress | None = None) -> BenchResult:
    """Run every policy of `scenario` on `trace` (already rescaled) and score them."""
    unknown = set(scenario.policies) - set(ALL_POLICIES)
    if unknown:
        raise ValueError(f"unknown policies {sorted(unknown)}; known: {', '.join(ALL_POLICIES)}")
    if not len(trace):
        raise ValueError("the trace has no requests")
    started = time.perf_counter()
    report: Progress = progress or (lambda stage, done, total: None)
    objective = BenchObjective.parse(scenario.objective)
    profile = resolve_profile(scenario.gpu)
    baseline_batch = profile.default_max_num_seqs
    config = FleetConfig(
        profile,
        cold_start_s=scenario.cold_start_s,
        scrape_interval_s=scenario.scrape_interval_s,
        rate_window_s=scenario.rate_window_s,
        min_replicas=scenario.min_replicas,
        max_replicas=scenario.max_replicas,
    )
    horizon = math.ceil(trace.duration_s / objective.window_s) * objective.window_s

    report("capacity test", 0, 1)
    capacity = measure_capacity(
        profile,
        baseline_batch,
        objective,
        trace,
        duration_s=scenario.capacity_test_s,
        seed=scenario.seed,
    )
    report("capacity test", 1, 1)

    batches = scenario.oracle_batches or tuple(sorted({256, baseline_batch}))
    oracle_plan = plan(
        trace, objective, config, batches, horizon, lambda d, t: report("oracle plan", d, t)
    )
    plan_required = oracle_plan.required.copy()
    report("oracle replay", 0, horizon)
    oracle_plan, oracle_run = repair(
        oracle_plan,
        trace,
        objective,
        config,
        horizon,
        progress=lambda t: report("oracle replay", t, horizon),
    )
    report("oracle replay", horizon, horizon)
    static_replicas = max(1, math.ceil(_peak_rate(trace) / capacity.max_rps))

    policy = build_policy(scenario, objective, profile, baseline_batch)
    ours_batch = policy.batching.initial_seqs if policy.batching.enabled else baseline_batch
    # Every policy starts warm with what the first window needs at its own batch size.
    initial = {
        b: window_requirement(trace, objective, config, b)
        for b in sorted({ours_batch, baseline_batch})
    }
    makers: dict[str, Callable[[], tuple[Autoscaler, int, int]]] = {
        "sloscale": lambda: (
            _ours(policy, initial[ours_batch], ours_batch, scenario.tick_s),
            initial[ours_batch],
            ours_batch,
        ),
        "static-peak": lambda: (StaticPeak(static_replicas), static_replicas, baseline_batch),
        "hpa-concurrency": lambda: (
            HpaConcurrency(capacity),
            initial[baseline_batch],
            baseline_batch,
        ),
        "keda-queue": lambda: (
            KedaQueue(capacity, objective.target_s),
            initial[baseline_batch],
            baseline_batch,
        ),
        "knative-kpa": lambda: (KnativeKpa(capacity), initial[baseline_batch], baseline_batch),
        "llm-d-slo": lambda: (
            LlmdSloAware(objective.target_s),
            initial[baseline_batch],
            baseline_batch,
        ),
    }
    runs: dict[str, RunResult] = {}
    for name in scenario.policies:
        if name == "oracle":
            oracle_run.policy = "oracle"
            runs[name] = oracle_run
            continue
        autoscaler, replicas, batch = makers[name]()
        sim = FleetSimulation(trace, autoscaler, config, replicas, batch, horizon_s=horizon)
        t0 = time.perf_counter()

        def tick_progress(t: float, name: str = name) -> None:
            report(name, t, horizon)

        result = sim.run(tick_progress)
        result.wall_s = time.perf_counter() - t0
        result.policy = name
        reasons = getattr(autoscaler, "reasons", None)
        if reasons:
            # How often each reason decided a tick: where our law's replicas went.
            result.details["decision_reasons"] = {str(k): v for k, v in sorted(reasons.items())}
        result.decisions = getattr(autoscaler, "log", [])
        panics = getattr(autoscaler, "panic_entries", None)
        if panics is not None:
            result.details["panic_entries"] = panics
        runs[name] = result
        report(name, horizon, horizon)

    oracle_hours = runs["oracle"].gpu_seconds / 3600 if "oracle" in runs else None
    policies = {name: score(name, r, objective, oracle_hours) for name, r in runs.items()}
    wall = time.perf_counter() - started
    scenario_json = {
        **asdict(scenario),
        "objective": objective.label,
        "objective_spec": scenario.objective,
        "objective_kind": objective.kind.value,
        "requests": len(trace),
        "duration_s": trace.duration_s,
        "horizon_s": horizon,
        "mean_rate_rps": trace.mean_rate,
        "peak_minute_rate_rps": _peak_rate(trace),
        "profile": asdict(profile),
        "baseline_max_num_seqs": baseline_batch,
        "capacity": asdict(capacity),
        "static_replicas": static_replicas,
        "initial_replicas": {str(b): n for b, n in initial.items()},
        "oracle": {
            "max_num_seqs": oracle_plan.batch,
            "required_replicas": oracle_plan.required.tolist(),
            "schedule": oracle_plan.schedule.tolist(),
            "planned_gpu_hours": oracle_plan.planned_gpu_seconds / 3600,
            "repaired_windows": int((oracle_plan.required != plan_required).sum()),
            "window_simulations": oracle_plan.evaluations,
        },
        "wall_s": wall,
    }
    if objective.kind is ObjectiveKind.THROUGHPUT:
        scenario_json["saturation_tokens_per_s"] = saturation_tokens_per_s(
            profile, trace, sorted({256, 512, baseline_batch, policy.batching.max_seqs})
        )
    return BenchResult(scenario_json, policies, runs, oracle_plan, capacity)


def saturation_tokens_per_s(profile: EngineProfile, trace: Trace, batches: Sequence[int]) -> float:
    """One replica's best output tokens/s over `batches`, each batch always full of requests of
    the trace's mean size: the throughput a throughput objective is measured against."""
    from sloscale.engine import closed_loop

    mean_in = max(1, round(float(np.mean(trace.input_tokens))))
    mean_out = max(1, round(float(np.mean(trace.output_tokens))))
    return max(
        closed_loop(profile, b, mean_in, mean_out, requests=max(4 * b, 200)).tokens_per_s
        for b in batches
    )


def _ours(policy: Policy, initial: int, batch: int, tick_s: float) -> Autoscaler:
    from sloscale.sim.ours import SloScaleLaw

    return SloScaleLaw(policy, initial, batch, interval_s=tick_s)


def prepare_trace(
    trace: Trace,
    rate_scale: float = 1.0,
    time_compression: float = 1.0,
    seed: int = 0,
    start_s: float = 0.0,
    duration_s: float | None = None,
) -> Trace:
    """Slice, compress and multiply a loaded trace as the bench's options ask."""
    if start_s > 0 or duration_s is not None:
        trace = trace.slice(
            start_s, None if duration_s is None else start_s + duration_s * time_compression
        )
    if time_compression != 1.0:
        trace = trace.scale_rate(time_compression)
    if rate_scale != 1.0:
        trace = trace.multiply(rate_scale, seed=seed)
    return trace


def policies_from(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    if spec is None:
        return ALL_POLICIES
    names = [p.strip() for p in (spec.split(",") if isinstance(spec, str) else spec) if p.strip()]
    unknown = [n for n in names if n not in ALL_POLICIES]
    if unknown:
        raise ValueError(f"unknown policies {unknown}; known: {', '.join(ALL_POLICIES)}")
    # The oracle is always run: every cost is reported relative to it.
    if "oracle" not in names:
        names.append("oracle")
    return tuple(names)
