"""A closed-loop scenario's parts: the load to replay, the operator's answer over time, a scorecard.

`sloscale sandbox demo` and the end-to-end tests run the same story — an InferenceService under a
slice of a real trace with a burst — and judge it the same way, so the pieces live here:

- `shaped_trace` cuts a slice of a public trace, compresses its time, thins it to a chosen mean
  rate and bends its arrivals so the rate follows a per-window envelope (the burst). Request sizes
  and the trace's own second-scale burstiness are kept; only the minute-scale rate is imposed.
- `StatusSampler` polls one InferenceService and its Deployment in a background thread through
  the Kubernetes API and keeps a `Sample` per period: the levers (replicas current, ready and
  desired; batch current and desired), what the operator observed and its last decision. Status
  is what the operator promises to keep current, so this is what a user watching `kubectl get
  infsvc -w` sees.
- `window_quantiles` and `Scorecard` judge the run from the client's side (the load generator's
  per-request records): the objective's percentile per evaluation window, attainment, GPU-hours
  from the sampled replica count, and the decisions the operator's events announce.

Times in samples and windows are seconds since the sampler's or the replay's start (real time);
latencies from the load generator are model seconds (equal at speed-up 1).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from sloscale.resource import GROUP, PLURAL, VERSION
from sloscale.sandbox.loadgen import RequestRecord
from sloscale.traces import RateShape, Trace

# Event reasons that announce a lever moving (Enforce) or a new recommendation (Advisory).
DECISION_REASONS = ("ScaledUp", "ScaledDown", "BatchIncreased", "BatchDecreased", "Recommendation")


def shaped_trace(
    trace: Trace,
    rates_rps: Sequence[float],
    window_s: float,
    *,
    start_s: float = 0.0,
    compression: float = 1.0,
    seed: int = 0,
) -> Trace:
    """`len(rates_rps)` windows of `window_s` whose mean request rates follow `rates_rps`.

    The requests come from `trace` from `start_s` on, its time compressed `compression` times
    (ten trace minutes replayed in one at 10), thinned (or, above the trace's rate, replicated)
    to the envelope's mean rate, then time-warped window by window onto the envelope.
    """
    rates = np.asarray(rates_rps, dtype=np.float64)
    if not len(rates) or np.any(rates <= 0) or window_s <= 0 or compression <= 0:
        raise ValueError("need positive rates, a positive window and a positive compression")
    duration = len(rates) * window_s
    piece = trace.slice(start_s, start_s + duration * compression)
    if len(piece) < 2:
        raise ValueError(f"the trace has too few requests after {start_s:g}s")
    piece = piece.scale_rate(compression)
    piece = piece.multiply(float(rates.mean()) / piece.mean_rate, seed=seed)
    shaped = piece.modulate(RateShape(rates, window_s, "envelope"), duration)
    return shaped.with_name(f"{trace.name}[{start_s:g}s+, x{compression:g}]")


# -- the operator's answer over time ---------------------------------------------------------------


_SHOWN = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def shown_seconds(text: str | None) -> float | None:
    """Seconds in a duration as the status shows it (`850ms`, `1.8s`, `2m5s`); None otherwise."""
    if not text:
        return None
    if text == "inf":
        return math.inf
    parts = _SHOWN.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT[u] for n, u in parts)


@dataclass(frozen=True)
class Sample:
    """One look at the InferenceService and its Deployment, `t` seconds after sampling began."""

    t: float
    replicas: int | None = None  # status.replicas.current
    ready: int | None = None
    desired: int | None = None
    batch: int | None = None  # status.batch.current (--max-num-seqs)
    batch_desired: int | None = None
    observed: str | None = None  # status.observed.value as shown ("1.8s", "850 tok/s")
    queue: int | None = None
    met: bool | None = None
    attainment: str | None = None
    action: str | None = None  # status.lastDecision
    reason: str | None = None
    decided_at: str | None = None
    generation: int | None = None
    observed_generation: int | None = None
    conditions: dict[str, str] = field(default_factory=dict)  # type → status
    deployment_replicas: int | None = None  # the Deployment's spec.replicas
    pods: int | None = None  # the Deployment's status.replicas (surge included)

    @property
    def observed_s(self) -> float | None:
        return shown_seconds(self.observed)


def sample_of(t: float, isvc: dict[str, Any] | None, deployment: dict[str, Any] | None) -> Sample:
    """Read the fields a user watches from the raw objects (either may be missing)."""
    status = (isvc or {}).get("status") or {}
    replicas = status.get("replicas") or {}
    batch = status.get("batch") or {}
    observed = status.get("observed") or {}
    objective = status.get("objective") or {}
    decision = status.get("lastDecision") or {}
    dep_spec = (deployment or {}).get("spec") or {}
    dep_status = (deployment or {}).get("status") or {}
    return Sample(
        t=t,
        replicas=replicas.get("current"),
        ready=replicas.get("ready"),
        desired=replicas.get("desired"),
        batch=batch.get("current"),
        batch_desired=batch.get("desired"),
        observed=observed.get("value"),
        queue=observed.get("queue"),
        met=objective.get("met"),
        attainment=objective.get("attainment"),
        action=decision.get("action"),
        reason=decision.get("reason"),
        decided_at=decision.get("time"),
        generation=((isvc or {}).get("metadata") or {}).get("generation"),
        observed_generation=status.get("observedGeneration"),
        conditions={c["type"]: c["status"] for c in status.get("conditions") or []},
        deployment_replicas=dep_spec.get("replicas") if deployment else None,
        pods=dep_status.get("replicas", 0) if deployment else None,
    )


def isvc_path(namespace: str, name: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"


def deployment_path(namespace: str, name: str) -> str:
    return f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"


class ApiReader(Protocol):
    """What the sampler needs of a Kubernetes client (`sloscale.kube.KubeApi` fits): GET a path,
    None for 404."""

    def get(self, path: str) -> dict[str, Any] | None: ...


class StatusSampler:
    """Samples one InferenceService (and the Deployment it drives) every `period_s` in a thread.

    Use as a context manager; `samples` grows while it runs and `latest` is the newest. A failed
    read is skipped (the next one retries): a sampler must not end a demo or a test by itself.
    """

    def __init__(
        self,
        api: ApiReader,
        namespace: str,
        name: str,
        *,
        deployment: str | None = None,
        period_s: float = 1.0,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.deployment = deployment or name
        self.period_s = period_s
        self.samples: list[Sample] = []
        self.errors = 0
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sample-{name}", daemon=True)

    def __enter__(self) -> StatusSampler:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def now(self) -> float:
        return time.monotonic() - self._t0

    @property
    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    def sample(self) -> Sample:
        isvc = self.api.get(isvc_path(self.namespace, self.name))
        deployment = self.api.get(deployment_path(self.namespace, self.deployment))
        return sample_of(self.now(), isvc, deployment)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self.sample())
            except Exception:  # the API may be restarting or slow; the next period retries
                self.errors += 1
            self._stop.wait(self.period_s)


def events_of(api: ApiReader, namespace: str, name: str) -> list[dict[str, Any]]:
    """Events about the object `name` (core/v1), oldest first."""
    listing = api.get(f"/api/v1/namespaces/{namespace}/events") or {}
    mine = [
        e for e in listing.get("items", []) if (e.get("involvedObject") or {}).get("name") == name
    ]
    return sorted(mine, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")


# -- the client's side -----------------------------------------------------------------------------


def quantile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (linear interpolation) of `values`; None when empty."""
    return float(np.quantile(np.asarray(values, dtype=np.float64), q)) if len(values) else None


@dataclass(frozen=True)
class Window:
    """One evaluation window of the replay, by the time requests were sent (trace seconds)."""

    start_s: float
    requests: int
    value_s: float | None  # the percentile of the metric over the window's successful requests
    failed: int

    def met(self, target_s: float) -> bool | None:
        """Met when every request succeeded and the percentile is within target; None if empty."""
        if not self.requests:
            return None
        return self.failed == 0 and self.value_s is not None and self.value_s <= target_s


def latency_of(record: RequestRecord, metric: str) -> float | None:
    """`ttft`, `e2e` or `itl` (the request's mean inter-token gap) of one request, model seconds."""
    return {"ttft": record.ttft_s, "e2e": record.e2e_s, "itl": record.mean_itl_s}[metric]


def window_quantiles(
    records: Sequence[RequestRecord],
    window_s: float,
    q: float,
    metric: str = "ttft",
    *,
    until_s: float | None = None,
) -> list[Window]:
    """The replay cut into windows of `window_s` by scheduled send time, each with its percentile.

    Only requests that have finished count; `until_s` ends the last window (default: the last
    request's arrival)."""
    done = [r for r in records if r.ok or r.error is not None]
    if not done and until_s is None:
        return []
    end = until_s if until_s is not None else max(r.scheduled_s for r in done)
    windows = []
    for i in range(int(end // window_s) + 1):
        lo, hi = i * window_s, (i + 1) * window_s
        inside = [r for r in done if lo <= r.scheduled_s < hi]
        values = [v for r in inside if r.ok and (v := latency_of(r, metric)) is not None]
        windows.append(Window(lo, len(inside), quantile(values, q), sum(not r.ok for r in inside)))
    return windows


def replica_seconds(samples: Sequence[Sample], until_s: float | None = None) -> float:
    """Pod-seconds the Deployment ran (its status.replicas, surge pods included), integrated as a
    step function over the samples: what the GPUs would have cost."""
    total = 0.0
    for here, after in zip(samples, samples[1:], strict=False):
        end = after.t if until_s is None else min(after.t, until_s)
        if end > here.t:
            total += (here.pods or 0) * (end - here.t)
    return total


@dataclass(frozen=True)
class Scorecard:
    """How the run went, from the client's side and the operator's record."""

    target_s: float
    percentile: float
    windows: int  # evaluation windows that carried requests
    windows_met: int
    requests: int
    failed: int
    p50_s: float | None
    p99_s: float | None
    gpu_hours: float
    static_peak_gpu_hours: float  # the same span at the peak replica count, for comparison
    peak_replicas: int  # the most replicas the operator asked for (surge pods not counted)
    decisions: dict[str, int]  # event reason → count
    operator_attainment: str | None  # what the operator itself reports

    @property
    def met_fraction(self) -> float | None:
        return self.windows_met / self.windows if self.windows else None


def scorecard(
    records: Sequence[RequestRecord],
    samples: Sequence[Sample],
    events: Sequence[dict[str, Any]],
    *,
    target_s: float,
    percentile: float,
    window_s: float,
    metric: str = "ttft",
    speedup: float = 1.0,
) -> Scorecard:
    """Judge a run: client-side windows against the target, GPU-hours, decisions announced."""
    windows = [w for w in window_quantiles(records, window_s, percentile, metric) if w.requests]
    ok = [v for r in records if r.ok and (v := latency_of(r, metric)) is not None]
    span = samples[-1].t - samples[0].t if len(samples) > 1 else 0.0
    peak = max((s.replicas or 0 for s in samples), default=0)
    decisions: dict[str, int] = {}
    for event in events:
        reason = str(event.get("reason"))
        if reason in DECISION_REASONS:
            decisions[reason] = decisions.get(reason, 0) + int(event.get("count") or 1)
    # Pods and the clock run in real time; a GPU-hour is an hour of model time.
    hours = speedup / 3600.0
    return Scorecard(
        target_s=target_s,
        percentile=percentile,
        windows=len(windows),
        windows_met=sum(bool(w.met(target_s)) for w in windows),
        requests=len(records),
        failed=sum(not r.ok for r in records),
        p50_s=quantile(ok, 0.5),
        p99_s=quantile(ok, 0.99),
        gpu_hours=replica_seconds(samples) * hours,
        static_peak_gpu_hours=peak * span * hours,
        peak_replicas=peak,
        decisions=decisions,
        operator_attainment=next((s.attainment for s in reversed(samples) if s.attainment), None),
    )
