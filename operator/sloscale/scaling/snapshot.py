"""What the control law sees: one service's metrics and workload at one moment.

These types are the contract between the edges that observe (the Prometheus metrics source, the
fleet simulator) and the pure decision. Histograms are carried whole — per-bucket rates with the
bucket edges read from the `le` labels — so that any percentile, and the share of requests within
a target, can be computed here without another query and without hard-coded buckets.

"No data" is a value (`MetricsUnavailable`), not an exception: the decision holds on it. Zero
traffic is a valid snapshot with empty histograms and zero rates; it is never confused with an
outage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class Histogram:
    """A cumulative histogram of rates: `counts[i]` requests/s observed at or below `bounds[i]`.

    `bounds` ascend and end with +Inf, as Prometheus `le` labels do. Built from
    `sum by (le) (rate(x_bucket[w]))`, so counts are per second over the rate window.
    """

    bounds: tuple[float, ...] = ()
    counts: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if len(self.bounds) != len(self.counts):
            raise ValueError("a histogram needs one count per bucket bound")

    @property
    def total(self) -> float:
        """Observations per second (the +Inf bucket)."""
        return self.counts[-1] if self.counts else 0.0

    @property
    def empty(self) -> bool:
        return self.total <= 0.0

    def quantile(self, q: float) -> float | None:
        """The q-quantile, interpolated linearly inside its bucket like `histogram_quantile`.

        None when there were no observations. A quantile falling into the +Inf bucket returns the
        highest finite bound, as Prometheus does.
        """
        if self.empty:
            return None
        rank = q * self.total
        lower_bound, lower_count = 0.0, 0.0
        for bound, count in zip(self.bounds, self.counts, strict=True):
            if count >= rank:
                if math.isinf(bound):
                    return lower_bound
                if count == lower_count:
                    return bound
                return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                    count - lower_count
                )
            lower_bound, lower_count = bound, count
        return lower_bound

    def fraction_within(self, threshold: float) -> float | None:
        """Share of observations at or below `threshold` (linear inside a bucket); None if empty."""
        if self.empty:
            return None
        lower_bound, lower_count = 0.0, 0.0
        for bound, count in zip(self.bounds, self.counts, strict=True):
            if threshold <= bound:
                if math.isinf(bound):
                    return lower_count / self.total
                share = (
                    (threshold - lower_bound) / (bound - lower_bound)
                    if bound > lower_bound
                    else 1.0
                )
                return (lower_count + (count - lower_count) * share) / self.total
            lower_bound, lower_count = bound, count
        return 1.0

    def bucket_width_at(self, value: float) -> float:
        """Width of the bucket holding `value`: how coarse a percentile read there can be."""
        lower = 0.0
        for bound in self.bounds:
            if value <= bound:
                return math.inf if math.isinf(bound) else bound - lower
            lower = bound
        return math.inf


@dataclass(frozen=True)
class MetricsSnapshot:
    """One service's vLLM metrics, aggregated over its pods, at `taken_at` (epoch seconds).

    Rates are per second over the rate window (`window_s`). Gauges are summed over pods, except
    `kv_usage`, which is the highest pod's fraction (the pod closest to preempting).

    The optional sums are None where the pods do not export them. `itl_seconds_per_s` is the rate
    of the inter-token-latency histogram's `_sum` and `itl_tokens_per_s` of its `_count`: their
    ratio is the mean step time, and the first alone is the mean number of sequences decoding
    (each accrues one second of inter-token latency per second), both averaged over the window
    rather than read from a gauge at one instant. `finished_prompt_tokens_per_s` and
    `finished_generation_tokens_per_s` are the rates of `vllm:request_prompt_tokens_sum` and
    `vllm:request_generation_tokens_sum`, counted when a request finishes like `requests_per_s`,
    so their ratios to it are the mix of the requests that finished.
    """

    taken_at: float
    window_s: float
    pods_reporting: int
    requests_per_s: float
    prompt_tokens_per_s: float
    generation_tokens_per_s: float
    running: float
    waiting: float
    kv_usage: float
    preemptions_per_s: float
    ttft: Histogram
    itl: Histogram
    e2e: Histogram
    queue_time: Histogram
    prefill_time: Histogram = Histogram()
    decode_time: Histogram = Histogram()
    itl_seconds_per_s: float | None = None
    itl_tokens_per_s: float | None = None
    finished_prompt_tokens_per_s: float | None = None
    finished_generation_tokens_per_s: float | None = None

    @property
    def zero_traffic(self) -> bool:
        """Real idleness: pods answer scrapes, yet nothing arrives, runs or waits."""
        return self.requests_per_s <= 0.0 and self.running <= 0.0 and self.waiting <= 0.0


class Unavailability(StrEnum):
    """Why there is no usable snapshot. Each is a reason to hold, never to scale down."""

    NO_DATA = "NoData"  # the queries returned nothing for this service
    STALE = "Stale"  # the newest sample is older than allowed
    QUERY_FAILED = "QueryFailed"  # Prometheus unreachable or answered an error
    MALFORMED = "Malformed"  # the answer could not be read (NaN gauges, broken buckets …)


@dataclass(frozen=True)
class MetricsUnavailable:
    reason: Unavailability
    message: str


@dataclass(frozen=True)
class WorkloadObservation:
    """What the Kubernetes API says of the workload at the same moment.

    `replicas` is the scale subresource's spec; `ready` counts ready pods; `starting` counts pods
    created but not yet ready (coming capacity). `max_num_seqs` is the batch cap in the pod
    template (None when the template does not set it). `rollout_in_progress` is true while pods of
    an older template remain. `pod_start_durations_s` holds created→ready times of pods that
    became ready recently, from which the cold start is measured.
    """

    replicas: int
    ready: int
    starting: int
    max_num_seqs: int | None
    rollout_in_progress: bool = False
    pod_start_durations_s: tuple[float, ...] = ()


@dataclass(frozen=True)
class Observation:
    """The full input of one decision: metrics (or why there are none) and the workload."""

    metrics: MetricsSnapshot | MetricsUnavailable
    workload: WorkloadObservation
