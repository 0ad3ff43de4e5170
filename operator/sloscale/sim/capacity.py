"""A capacity test of one replica: the highest Poisson arrival rate it serves within the objective.

This is the load test an SRE runs before configuring an autoscaler (and the number a static
fleet is sized with): one warm replica at a given batch size, requests with the trace's own
length mix resampled at random, arrival rates bisected until the objective's percentile over the
test just holds. The mean in-flight requests and queue at that rate (and at 80 % of it) give
the concurrency and queue targets of the baselines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sloscale import traces
from sloscale.engine import steady_state
from sloscale.scaling.policy import EngineProfile
from sloscale.sim.fleet import Command, FleetConfig, FleetSimulation, FleetView
from sloscale.sim.objective import BenchObjective
from sloscale.traces import Lengths, Trace


@dataclass(frozen=True)
class Capacity:
    batch: int
    max_rps: float  # highest rate one replica serves within the objective
    concurrency_at_max: float  # mean in-flight requests per replica at max_rps
    concurrency_at_80: float  # ... at 80 % of max_rps
    queue_at_max: float  # mean waiting requests at max_rps


class _Fixed:
    name = "fixed"
    interval_s = 3600.0

    def tick(self, view: FleetView) -> Command:
        return Command()


def _run(
    profile: EngineProfile,
    batch: int,
    objective: BenchObjective,
    rate: float,
    lengths: Lengths,
    duration_s: float,
    seed: int,
) -> tuple[float, float, float]:
    """(objective percentile, mean in-flight, mean queue) of one replica at `rate`."""
    trace = traces.constant(rate, duration_s, lengths, seed)
    config = FleetConfig(profile, scrape_interval_s=duration_s, timeline_interval_s=1.0)
    sim = FleetSimulation(trace, _Fixed(), config, 1, batch)
    result = sim.run()
    in_flight = np.array([c for _, c in sim.concurrency]) if sim.concurrency else np.zeros(1)
    values = objective.values(result)
    values = np.where(np.isnan(values), np.inf, values)
    pct = (
        float(np.quantile(values, objective.quantile, method="inverted_cdf"))
        if len(values)
        else 0.0
    )
    return pct, float(np.mean(in_flight)), float(np.mean(result.timeline["queue"]))


def measure_capacity(
    profile: EngineProfile,
    batch: int,
    objective: BenchObjective,
    sample: Trace,
    duration_s: float = 600.0,
    iterations: int = 8,
    seed: int = 0,
) -> Capacity:
    """Bisect the arrival rate one replica at `batch` sustains within `objective`."""
    lengths = Lengths(sample_from=sample)
    mean_in = float(np.mean(sample.input_tokens))
    mean_out = float(np.mean(sample.output_tokens))
    hi = 1.5 * steady_state(profile, batch, mean_in, mean_out).requests_per_s
    lo = 0.0
    for _ in range(iterations):
        mid = (lo + hi) / 2
        pct, _, _ = _run(profile, batch, objective, mid, lengths, duration_s, seed)
        if pct <= objective.target_s:
            lo = mid
        else:
            hi = mid
    max_rps = max(lo, 1e-3)
    _, c_max, q_max = _run(profile, batch, objective, max_rps, lengths, duration_s, seed)
    _, c_80, _ = _run(profile, batch, objective, 0.8 * max_rps, lengths, duration_s, seed)
    return Capacity(batch, max_rps, c_max, c_80, q_max if math.isfinite(q_max) else 0.0)
