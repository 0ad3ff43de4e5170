"""Readings of a snapshot's histograms that several stages share."""

from __future__ import annotations

from sloscale.scaling.policy import LatencyMetric
from sloscale.scaling.snapshot import Histogram, MetricsSnapshot


def objective_histogram(snapshot: MetricsSnapshot, metric: LatencyMetric) -> Histogram:
    if metric is LatencyMetric.TTFT:
        return snapshot.ttft
    if metric is LatencyMetric.ITL:
        return snapshot.itl
    return snapshot.e2e


def quantile_floor(histogram: Histogram, q: float) -> float | None:
    """The lower edge of the bucket holding the q-quantile: what the histogram proves at least.

    Queue-time buckets start at 0.1 s or 0.3 s, so an interpolated p99 of a queue that is really
    empty reads as ~0.1 s; the bucket's lower edge (0 there) does not invent queueing.
    """
    if histogram.empty:
        return None
    rank = q * histogram.total
    lower = 0.0
    for bound, count in zip(histogram.bounds, histogram.counts, strict=True):
        if count >= rank:
            return lower
        lower = bound
    return lower
