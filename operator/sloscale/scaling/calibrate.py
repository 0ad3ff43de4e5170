"""Feedback from what the service shows into the capacity model's latency percentiles.

The fitted step curve predicts means; an objective is a percentile. At the current operating
point (observed concurrency per pod, current batch) the observed percentile is compared with the
model's and the ratio is smoothed into `state.Calibration`:

* TTFT and E2E: only the service part is calibrated (E2E's decode steps at the burst
  concurrency, like the model's) — the observed percentile minus the queue
  time the histogram proves (`readings.quantile_floor`), against the model's prefill (and decode) time. Queueing is the capacity
  model's own job, and collapsing queue time into a latency factor would read a capacity shortage
  as slow pods.
* ITL: first explained by bursts — the concurrency whose step time equals the observed
  percentile, relative to the mean concurrency (`itl_tail`; a smaller batch caps it). What even a
  full batch does not explain becomes a multiplicative `itl` factor (slow steps, prefill stalls).

Ratios move by exponential smoothing in log space and stay within fixed bounds, so one odd
scrape cannot swing the model.
"""

from __future__ import annotations

import math

from sloscale.scaling.capacity import StepCurve
from sloscale.scaling.readings import quantile_floor
from sloscale.scaling.snapshot import MetricsSnapshot
from sloscale.scaling.state import Calibration

SMOOTHING = 0.3  # weight of the newest ratio
FACTOR_BOUNDS = (0.5, 10.0)
TAIL_BOUNDS = (1.0, 64.0)
MIN_CONCURRENCY = 0.5  # below this per pod there is too little running to learn from


def smooth(previous: float, observed: float, bounds: tuple[float, float]) -> float:
    lo, hi = bounds
    observed = min(max(observed, lo), hi)
    value = math.exp((1.0 - SMOOTHING) * math.log(previous) + SMOOTHING * math.log(observed))
    return min(max(value, lo), hi)


def calibrate(
    cal: Calibration, curve: StepCurve, snapshot: MetricsSnapshot, batch: int, quantile: float
) -> Calibration:
    """Move the calibration towards what the snapshot shows at the current operating point."""
    pods = max(snapshot.pods_reporting, 1)
    concurrency = snapshot.running / pods
    if concurrency < MIN_CONCURRENCY:
        return cal
    c = min(max(concurrency, 1.0), float(batch))
    queue_q = quantile_floor(snapshot.queue_time, quantile) or 0.0
    prefill = curve.prefill_s(c)
    ttft, itl, tail, e2e = cal.ttft, cal.itl, cal.itl_tail, cal.e2e

    ttft_q = snapshot.ttft.quantile(quantile)
    if ttft_q is not None:
        ttft = smooth(ttft, max(ttft_q - queue_q, 0.0) / prefill, FACTOR_BOUNDS)

    itl_q = snapshot.itl.quantile(quantile)
    if itl_q is not None:
        burst = curve.batch_for_step(itl_q)
        if burst <= batch:
            tail_obs = max(1.0, burst / c)
            factor_obs = itl_q / curve.step_s(min(float(batch), max(1.0, tail_obs * c)))
        else:
            tail_obs = batch / c
            factor_obs = itl_q / curve.step_s(float(batch))
        tail = smooth(tail, tail_obs, TAIL_BOUNDS)
        itl = smooth(itl, factor_obs, FACTOR_BOUNDS)

    # The p99 request ran through bursts: its decode steps are taken at the tail concurrency.
    e2e_q = snapshot.e2e.quantile(quantile)
    if e2e_q is not None:
        burst_step = curve.step_s(min(float(batch), max(1.0, tail * c)))
        service = prefill + curve.output_tokens * burst_step
        e2e = smooth(e2e, max(e2e_q - queue_q, 0.0) / service, FACTOR_BOUNDS)

    return Calibration(ttft=ttft, itl=itl, itl_tail=tail, e2e=e2e)
