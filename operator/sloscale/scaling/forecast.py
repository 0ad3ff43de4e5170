"""Look-ahead: how long a new replica takes to serve, and what demand will be by then.

A replica asked for now serves only after its cold start (pod created → Ready: image pull, weight
load, CUDA-graph capture), so the law provisions for the demand expected one cold start ahead.

* Cold start is measured per service from the created→ready times of pods that became ready
  recently: the 90th percentile (nearest rank) of those seen, so one slow node does not
  dominate yet a typical slow start is covered. Until a start has been seen, `policy.cold_start_s`.
* Demand is forecast with an ordinary least-squares line over the recent arrival-rate history
  (the last cold-start horizon, at least a minute, at most five), extrapolated from its level
  now to one cold start ahead. Only a line that explains the samples well (R² ≥ 0.8) counts
  as a trend: a step up — a burst — fits a line at R² ≤ 0.75 whatever its position, so it is met
  with capacity for the demand it brought, not extrapolated as if it were a ramp. The forecast never falls below the current demand (falling load is handled by the slow
  scale-down path, not by prediction), and a rise is capped at doubling per horizon so a noisy
  slope cannot order a fleet.
* Without a trend, demand still wanders: a replica asked for after a rise arrives one cold start
  late. The surge (`surge_ratio`) is how far demand rose within one horizon in the recent
  history — for each sample, its highest later sample within the horizon over it; the upper
  quartile of those ratios, at most ×1.5 — and the forecast is at least the current demand
  times it. A lone step moves only the samples just before it, so it does not set the headroom
  for the whole history. The
  longer the cold start, the larger the rises it covers; a steady service gets little headroom,
  a bursty one more, learned from its own traffic rather than set as a fixed margin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

COLD_START_PERCENTILE = 0.9
TREND_MIN_HORIZON_S = 60.0
TREND_MAX_HORIZON_S = 300.0
TREND_MIN_SAMPLES = 4
TREND_MIN_R2 = 0.8  # a step fits a line at R² ≤ 0.75; a steady ramp with 5 % noise at ≈ 0.95
MAX_GROWTH_PER_HORIZON = 2.0
SURGE_QUANTILE = 0.75
MAX_SURGE = 1.5


def measure_cold_start(durations_s: tuple[float, ...], previous: float | None) -> float | None:
    """The high percentile of recent pod start durations; the previous measure when none."""
    valid = sorted(d for d in durations_s if d > 0.0 and math.isfinite(d))
    if not valid:
        return previous
    rank = max(1, math.ceil(COLD_START_PERCENTILE * len(valid)))
    return valid[rank - 1]


@dataclass(frozen=True)
class Trend:
    level: float  # the line's value now, req/s
    slope: float  # req/s per second
    r2: float  # share of the samples' variance the line explains


@dataclass(frozen=True)
class Forecast:
    current_rps: float
    forecast_rps: float
    slope_rps_per_s: float
    horizon_s: float
    surge: float = 1.0  # the recent rise within one horizon (`surge_ratio`), ≥ 1
    trend_rps: float | None = None  # the forecast without the surge headroom (None: forecast_rps)

    @property
    def without_surge_rps(self) -> float:
        return self.forecast_rps if self.trend_rps is None else self.trend_rps

    @property
    def rising(self) -> bool:
        return self.forecast_rps > self.current_rps


def trend_line(
    history: tuple[tuple[float, float], ...], now: float, window_s: float
) -> Trend | None:
    """Least-squares line through the samples within `window_s` before `now`; None with too few
    samples or no spread in time."""
    n = 0
    sx = sy = sxx = sxy = syy = 0.0
    for t, v in history:
        if now - t <= window_s:
            x = t - now
            n += 1
            sx += x
            sy += v
            sxx += x * x
            sxy += x * v
            syy += v * v
    if n < TREND_MIN_SAMPLES:
        return None
    var_x = n * sxx - sx * sx
    if var_x <= 0.0:
        return None
    cov = n * sxy - sx * sy
    var_y = n * syy - sy * sy
    slope = cov / var_x
    r2 = cov * cov / (var_x * var_y) if var_y > 0.0 else 0.0
    return Trend(level=(sy - slope * sx) / n, slope=slope, r2=r2)


def surge_ratio(history: tuple[tuple[float, float], ...], horizon_s: float) -> float:
    """How far demand rose within `horizon_s` in `history`: for each sample the highest later
    sample within the horizon over it, the `SURGE_QUANTILE` of those ratios; 1 with too few
    samples, at most `MAX_SURGE`."""
    samples = [(t, v) for t, v in history if v > 0.0]
    ratios = []
    for i, (t, v) in enumerate(samples):
        later = [w for s, w in samples[i + 1 :] if s - t <= horizon_s]
        if later:
            ratios.append(max(later) / v)
    if len(ratios) < TREND_MIN_SAMPLES:
        return 1.0
    ratios.sort()
    rise = ratios[min(len(ratios) - 1, int(SURGE_QUANTILE * len(ratios)))]
    return min(max(1.0, rise), MAX_SURGE)


def forecast_demand(
    history: tuple[tuple[float, float], ...], current_rps: float, now: float, horizon_s: float
) -> Forecast:
    """Demand one `horizon_s` (the cold start) ahead; never below `current_rps` × the surge."""
    window = min(max(horizon_s, TREND_MIN_HORIZON_S), TREND_MAX_HORIZON_S)
    line = trend_line(history, now, window)
    surge = surge_ratio(history, horizon_s)
    floor = current_rps * surge
    if line is None or line.slope <= 0.0 or line.r2 < TREND_MIN_R2:
        slope = 0.0 if line is None else line.slope
        return Forecast(current_rps, floor, slope, horizon_s, surge, current_rps)
    projected = min(line.level + line.slope * horizon_s, current_rps * MAX_GROWTH_PER_HORIZON)
    trend = max(current_rps, projected)
    return Forecast(current_rps, max(floor, trend), line.slope, horizon_s, surge, trend)
