"""The objective a bench run is judged on, and how runs are scored against it (ground truth).

Scores use exact per-request latencies, never the histograms the policies see. A window is an
interval of `window_s` by arrival time; it meets the objective when the `quantile` of its
requests' latencies is at or below the target; windows without requests are not counted.
Attainment of requests is the share of requests within the target. For an ITL objective the
per-request mean time per output token stands in for the per-token latency.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sloscale.scaling.policy import LatencyMetric, LatencyTarget, Objective, ObjectiveKind
from sloscale.sim.fleet import RunResult

FloatArray = npt.NDArray[np.float64]

_SPEC = re.compile(
    r"^(?P<throughput>throughput:)?p(?P<q>\d+(?:\.\d+)?)[-_ ]?(?P<metric>ttft|itl|tpot|e2e)"
    r"\s*(?:<=|<|=|-|:)\s*(?P<target>\d+(?:\.\d+)?)(?P<unit>ms|s)"
    r"(?:/(?P<window>\d+(?:\.\d+)?)(?P<wunit>s|m))?$"
)
_METRICS = {
    "ttft": LatencyMetric.TTFT,
    "itl": LatencyMetric.ITL,
    "tpot": LatencyMetric.ITL,
    "e2e": LatencyMetric.E2E,
}


@dataclass(frozen=True)
class BenchObjective:
    kind: ObjectiveKind
    metric: LatencyMetric
    quantile: float
    target_s: float
    window_s: float

    @classmethod
    def parse(cls, spec: str) -> BenchObjective:
        """`[throughput:]pNN-METRIC<=TARGET[/WINDOW]`, e.g. `p99-ttft<=1s/1m`,
        `throughput:p99-e2e<=30s/1m`. METRIC is ttft, itl or e2e; the window defaults to 1m."""
        m = _SPEC.match(spec.strip().lower().replace(" ", ""))
        if m is None:
            raise ValueError(
                f"objective {spec!r} not understood; write e.g. 'p99-ttft<=1s/1m' or 'throughput:p99-e2e<=30s/1m'"
            )
        quantile = float(m["q"]) / 100
        if not 0 < quantile < 1:
            raise ValueError(f"objective {spec!r}: the percentile must be between 0 and 100")
        target = float(m["target"]) / (1000 if m["unit"] == "ms" else 1)
        window = 60.0
        if m["window"]:
            window = float(m["window"]) * (60 if m["wunit"] == "m" else 1)
        if target <= 0 or window <= 0:
            raise ValueError(f"objective {spec!r}: target and window must be positive")
        kind = ObjectiveKind.THROUGHPUT if m["throughput"] else ObjectiveKind.LATENCY
        return cls(kind, _METRICS[m["metric"]], quantile, target, window)

    @property
    def label(self) -> str:
        prefix = "throughput: " if self.kind is ObjectiveKind.THROUGHPUT else ""
        return f"{prefix}p{self.quantile * 100:g} {self.metric.short} <= {self.target_s:g}s per {self.window_s:g}s"

    def to_policy_objective(self, attainment_goal: float = 0.99) -> Objective:
        target = LatencyTarget(
            self.metric, self.quantile, self.target_s, self.window_s, attainment_goal
        )
        return Objective(self.kind, target)

    def values(self, result: RunResult) -> FloatArray:
        """Each request's latency in the objective's metric (NaN if it never got there)."""
        if self.metric is LatencyMetric.TTFT:
            return result.ttft_s
        if self.metric is LatencyMetric.E2E:
            return result.e2e_s
        # One-token requests have no inter-token latency: they are always within.
        return np.where(np.isnan(result.tpot_s) & ~np.isnan(result.e2e_s), 0.0, result.tpot_s)


@dataclass(frozen=True)
class WindowScores:
    starts: FloatArray  # window start times
    percentile: FloatArray  # the objective's percentile per window (NaN: no requests)
    met: npt.NDArray[np.bool_]
    counted: npt.NDArray[np.bool_]

    @property
    def attainment(self) -> float:
        n = int(self.counted.sum())
        return float(self.met[self.counted].sum()) / n if n else 1.0


def window_scores(
    objective: BenchObjective, arrival_s: FloatArray, values: FloatArray, horizon_s: float
) -> WindowScores:
    """Per-window percentile by arrival time. A request that never reached the metric counts as
    infinitely late."""
    n_windows = max(1, math.ceil(horizon_s / objective.window_s))
    idx = np.minimum((arrival_s // objective.window_s).astype(np.int64), n_windows - 1)
    vals = np.where(np.isnan(values), np.inf, values)
    order = np.lexsort((vals, idx))
    sorted_idx = idx[order]
    sorted_vals = vals[order]
    bounds = np.searchsorted(sorted_idx, np.arange(n_windows + 1))
    pct = np.full(n_windows, np.nan)
    for w in range(n_windows):
        lo, hi = bounds[w], bounds[w + 1]
        if hi > lo:
            # The nearest-rank percentile: the smallest value with at least q of the window at or below.
            k = lo + max(0, math.ceil(objective.quantile * (hi - lo)) - 1)
            pct[w] = sorted_vals[k]
    counted = ~np.isnan(pct)
    met = counted & (pct <= objective.target_s)
    starts = np.arange(n_windows, dtype=np.float64) * objective.window_s
    return WindowScores(starts, pct, met, counted)
