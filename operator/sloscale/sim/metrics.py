"""What a policy sees of the simulated fleet: vLLM's metric families, scraped and rated as live.

Each simulated pod keeps the counters and histograms a vLLM pod exports, with vLLM's own bucket
edges (taken from `sloscale.sandbox.vllm_metrics`, so simulated, emulated and real histograms have
the same resolution). A scraper samples every pod at a fixed interval into bounded per-pod series;
a query at time `t` sees only samples scraped at or before `t - lag_s` and computes, per pod,
`rate = (last - first) / (t_last - t_first)` over the samples in the rate window — Prometheus's
`rate()` with full extrapolation — then sums over pods, as `sum by (le) (rate(...))` does. Gauges
come from each pod's newest visible sample. The result is the operator's own `MetricsSnapshot`.

A pod appears in queries once it is ready (vLLM serves `/metrics` only after loading) and
disappears when it terminates; a series needs two samples in the window to produce a rate, so a
new pod contributes after its second scrape, as in Prometheus.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sloscale.engine import DecodeRun, Request, StepResult
from sloscale.sandbox.vllm_metrics import ITL_BUCKETS, REQUEST_LATENCY_BUCKETS, TTFT_BUCKETS
from sloscale.scaling.snapshot import Histogram, MetricsSnapshot, MetricsUnavailable, Unavailability

# Layout of one pod's cumulative vector: seven counters (the ITL histogram's `_sum` and the
# finished requests' prompt and generation token sums among them), then six histograms' bucket
# counts (one slot per finite edge plus the +Inf bucket), non-cumulative in le order.
_FAMILIES: tuple[tuple[str, tuple[float, ...]], ...] = (
    ("ttft", TTFT_BUCKETS),
    ("itl", ITL_BUCKETS),
    ("e2e", REQUEST_LATENCY_BUCKETS),
    ("queue_time", REQUEST_LATENCY_BUCKETS),
    ("prefill_time", REQUEST_LATENCY_BUCKETS),
    ("decode_time", REQUEST_LATENCY_BUCKETS),
)
REQUESTS, PROMPT, GENERATION, PREEMPTIONS, ITL_SUM, FINISHED_PROMPT, FINISHED_GENERATION = range(7)
_OFFSETS: dict[str, int] = {}
_offset = 7
for _name, _edges in _FAMILIES:
    _OFFSETS[_name] = _offset
    _offset += len(_edges) + 1
VECTOR_LEN = _offset
_BOUNDS: dict[str, tuple[float, ...]] = {name: (*edges, math.inf) for name, edges in _FAMILIES}

TTFT_OFF = _OFFSETS["ttft"]
ITL_OFF = _OFFSETS["itl"]
E2E_OFF = _OFFSETS["e2e"]
QUEUE_OFF = _OFFSETS["queue_time"]
PREFILL_OFF = _OFFSETS["prefill_time"]
DECODE_OFF = _OFFSETS["decode_time"]


class PodMetrics:
    """One pod's vLLM counters and histograms (cumulative since the pod started)."""

    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values = [0.0] * VECTOR_LEN

    def observe_step(self, result: StepResult) -> None:
        """Record one engine step: per-token ITL, first tokens, finished requests."""
        v = self.values
        if result.num_decoded:
            v[ITL_OFF + bisect_left(ITL_BUCKETS, result.duration_s)] += result.num_decoded
            v[ITL_SUM] += result.duration_s * result.num_decoded
        for gap in result.itl_gaps_s:
            v[ITL_OFF + bisect_left(ITL_BUCKETS, gap)] += 1
            v[ITL_SUM] += gap
        end = result.end_s
        for req in result.first_tokens:
            if req.generated == 1:  # a first token, not the next token after a recompute
                v[TTFT_OFF + bisect_left(TTFT_BUCKETS, end - req.arrival_s)] += 1
                v[PROMPT] += req.prompt_tokens
        v[GENERATION] += result.num_decoded + len(result.first_tokens)
        v[PREEMPTIONS] += len(result.preempted)
        for req in result.finished:
            self._observe_finished(req)

    def observe_run(self, run: DecodeRun) -> None:
        """Record a run of pure decode steps (`EngineModel.run_decodes`)."""
        v = self.values
        first = bisect_left(ITL_BUCKETS, run.first_step_s)
        if first == bisect_left(ITL_BUCKETS, run.last_step_s):
            v[ITL_OFF + first] += run.steps * run.num_decoded
        else:  # the run crosses a bucket edge: place each step
            for j in range(run.steps):
                v[ITL_OFF + bisect_left(ITL_BUCKETS, run.step_duration(j))] += run.num_decoded
        v[GENERATION] += run.steps * run.num_decoded
        # Step durations grow linearly over the run: their sum is the mean of the ends × steps.
        v[ITL_SUM] += run.steps * (run.first_step_s + run.last_step_s) / 2 * run.num_decoded
        for req in run.finished:
            self._observe_finished(req)

    def _observe_finished(self, req: Request) -> None:
        v = self.values
        edges = REQUEST_LATENCY_BUCKETS
        end = req.finished_s
        scheduled = req.scheduled_s
        first = req.first_token_s
        assert end is not None and scheduled is not None and first is not None
        v[REQUESTS] += 1
        v[FINISHED_PROMPT] += req.prompt_tokens
        v[FINISHED_GENERATION] += req.output_tokens
        v[E2E_OFF + bisect_left(edges, end - req.arrival_s)] += 1
        v[QUEUE_OFF + bisect_left(edges, scheduled - req.arrival_s)] += 1
        v[PREFILL_OFF + bisect_left(edges, first - scheduled)] += 1
        v[DECODE_OFF + bisect_left(edges, end - first)] += 1


@dataclass(frozen=True)
class Sample:
    t: float
    values: npt.NDArray[np.float64]  # cumulative counters and bucket counts
    running: int
    waiting: int
    kv_usage: float


class Scrapes:
    """Per-pod scraped series, pruned to the longest look-back any query needs."""

    def __init__(self, rate_window_s: float, lag_s: float = 0.0) -> None:
        self.rate_window_s = rate_window_s
        self.lag_s = lag_s
        self._series: dict[int, deque[Sample]] = {}
        self._keep_s = rate_window_s + lag_s + 1.0

    def record(self, pod_id: int, sample: Sample) -> None:
        series = self._series.setdefault(pod_id, deque())
        series.append(sample)
        while series and sample.t - series[0].t > self._keep_s:
            series.popleft()

    def forget(self, pod_id: int) -> None:
        """A terminated pod's series go stale: queries stop seeing them at once."""
        self._series.pop(pod_id, None)

    def snapshot(self, now: float) -> MetricsSnapshot | MetricsUnavailable:
        """The fleet's metrics as a query at `now` returns them."""
        visible_until = now - self.lag_s
        start = visible_until - self.rate_window_s
        total = np.zeros(VECTOR_LEN)
        pods = 0
        running = waiting = 0
        kv = 0.0
        newest = -math.inf
        for series in self._series.values():
            in_window = [s for s in series if start < s.t <= visible_until]
            if not in_window:
                continue
            pods += 1
            last = in_window[-1]
            newest = max(newest, last.t)
            running += last.running
            waiting += last.waiting
            kv = max(kv, last.kv_usage)
            if len(in_window) >= 2 and last.t > in_window[0].t:
                total += (last.values - in_window[0].values) / (last.t - in_window[0].t)
        if pods == 0:
            return MetricsUnavailable(
                Unavailability.NO_DATA, "no pod has been scraped in the rate window"
            )
        hist = {name: _histogram(total, name) for name, _ in _FAMILIES}
        return MetricsSnapshot(
            taken_at=newest,
            window_s=self.rate_window_s,
            pods_reporting=pods,
            requests_per_s=float(total[REQUESTS]),
            prompt_tokens_per_s=float(total[PROMPT]),
            generation_tokens_per_s=float(total[GENERATION]),
            running=float(running),
            waiting=float(waiting),
            kv_usage=kv,
            preemptions_per_s=float(total[PREEMPTIONS]),
            ttft=hist["ttft"],
            itl=hist["itl"],
            e2e=hist["e2e"],
            queue_time=hist["queue_time"],
            prefill_time=hist["prefill_time"],
            decode_time=hist["decode_time"],
            itl_seconds_per_s=float(total[ITL_SUM]),
            itl_tokens_per_s=hist["itl"].total,
            finished_prompt_tokens_per_s=float(total[FINISHED_PROMPT]),
            finished_generation_tokens_per_s=float(total[FINISHED_GENERATION]),
        )


def _histogram(total: npt.NDArray[np.float64], name: str) -> Histogram:
    bounds = _BOUNDS[name]
    off = _OFFSETS[name]
    counts = np.cumsum(total[off : off + len(bounds)])
    return Histogram(bounds, tuple(float(c) for c in counts))
