"""A discrete-event simulation of one vLLM Deployment under an autoscaler, replaying a trace.

Every pod runs its own `EngineModel` step by step. Around them, the simulation plays the parts of
Kubernetes and the serving path, with the semantics the operator relies on live:

- **Router**: each arrival goes to the ready pod with the fewest outstanding requests (waiting +
  running; ties round-robin). With no ready pod, requests wait in the router (like Knative's
  activator) and count towards their latency.
- **Deployment controller**: a scale command creates pods (ready after the cold start; GPU cost
  counts from creation) or removes them — starting pods first, then the ready pods with the
  fewest outstanding requests, which stop receiving traffic and drain before they terminate
  (the operator's pod-deletion-cost behaviour). A batch change (`--max-num-seqs`) is a rolling
  restart with `maxUnavailable: 0` and a 25 % surge (at least one pod): old pods drain only while
  the ready count stays at or above the desired count, so capacity never dips below what was
  ready.
- **Metrics**: pods export vLLM's families (`sim.metrics`); a scraper samples them at an interval
  and policies read `MetricsSnapshot`s through Prometheus-like rate windows with lag, exactly the
  type the operator's metrics source returns.
- **Autoscaler**: any object with an `interval_s` and a `tick(view) -> Command`, called on its
  own period with a `FleetView` of what it may see.

Pods interact only through arrivals (the router reads their load) and observations (scrapes,
commands), so a pod's run of pure decode steps is planned with `EngineModel.peek_decodes` and
applied — in closed form, or only the prefix before an arrival routed to it — when something
needs to see that pod. The result equals stepping every pod one step at a time (a test holds the
two together); the cost is per request, not per step. `advance(until)` and `fork()` let the
oracle explore alternatives from a common state.

Ground truth for the bench (per-request TTFT, end-to-end latency, time per output token) is kept
beside the metrics, never read by the policies. Time is simulated (seconds from the start of the
trace); runs are deterministic: every tie is broken by creation order.
"""

from __future__ import annotations

import copy
import heapq
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

import numpy as np
import numpy.typing as npt

from sloscale.engine import EngineModel, Request
from sloscale.scaling.policy import EngineProfile
from sloscale.scaling.snapshot import MetricsSnapshot, MetricsUnavailable, WorkloadObservation
from sloscale.sim.metrics import PodMetrics, Sample, Scrapes
from sloscale.traces import Trace

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class FleetConfig:
    """How the simulated cluster and its monitoring behave. Durations in seconds."""

    profile: EngineProfile
    cold_start_s: float = 120.0
    scrape_interval_s: float = 15.0
    rate_window_s: float = 60.0
    metrics_lag_s: float = 0.0  # extra delay before a scraped sample is visible to queries
    max_surge: float = 0.25  # rolling-restart surge, a fraction of desired replicas (>= 1 pod)
    min_replicas: int = 1
    max_replicas: int = 64
    concurrency_sample_s: float = 1.0  # how often in-flight requests are sampled (Knative-style)
    timeline_interval_s: float = 10.0


@dataclass(frozen=True)
class Command:
    """An autoscaler's wish: a replica count and/or a batch size; None leaves a lever alone."""

    replicas: int | None = None
    max_num_seqs: int | None = None


class Autoscaler(Protocol):
    name: str
    interval_s: float

    def tick(self, view: FleetView) -> Command: ...


class PodState(IntEnum):
    STARTING = 0
    READY = 1
    DRAINING = 2
    GONE = 3


class Pod:
    __slots__ = (
        "pod_id", "batch", "engine", "metrics", "state", "created_s", "ready_s", "ended_s", "busy",
        "run_from", "run_last_start", "run_finishing", "version",
    )  # fmt: skip

    def __init__(
        self, pod_id: int, batch: int, engine: EngineModel, created_s: float, ready_s: float
    ) -> None:
        self.pod_id = pod_id
        self.batch = batch
        self.engine = engine
        self.metrics = PodMetrics()
        self.state = PodState.STARTING
        self.created_s = created_s
        self.ready_s = ready_s
        self.ended_s: float | None = None
        self.busy = False  # a step is in flight
        self.run_from: float | None = None  # start of a planned, not yet applied, decode run
        self.run_last_start = 0.0  # when that run's last step starts
        self.run_finishing = 0  # requests that run finishes
        self.version = 0  # bumps when a pending run is cut short, voiding its scheduled end


@dataclass
class RunResult:
    """One policy's run: ground truth per request, cost, and a timeline for the plots."""

    policy: str
    horizon_s: float
    arrival_s: FloatArray
    ttft_s: FloatArray
    e2e_s: FloatArray
    tpot_s: FloatArray
    gpu_seconds: float
    generated_tokens: int
    scale_events: int
    batch_changes: int
    max_queue: int
    preemptions: int
    timeline: dict[str, FloatArray]
    wall_s: float = 0.0
    details: dict[str, object] = field(default_factory=dict)  # policy-specific, for the JSON
    decisions: list[dict[str, object]] = field(default_factory=list)  # per tick, where kept


_READY, _SCRAPE, _TICK, _SAMPLE, _TIMELINE = range(5)


class FleetView:
    """What an autoscaler may look at during its tick: queried metrics, the workload as the
    Kubernetes API shows it, and (for Knative-style autoscalers, which get it from the
    queue-proxies, not Prometheus) recent in-flight request samples."""

    def __init__(self, sim: FleetSimulation) -> None:
        self._sim = sim
        self._metrics: MetricsSnapshot | MetricsUnavailable | None = None
        self.now = 0.0

    def metrics(self) -> MetricsSnapshot | MetricsUnavailable:
        if self._metrics is None:
            self._metrics = self._sim.scrapes.snapshot(self.now)
        return self._metrics

    def workload(self) -> WorkloadObservation:
        return self._sim.workload(self.now)

    @property
    def desired_replicas(self) -> int:
        return self._sim.desired

    @property
    def max_num_seqs(self) -> int:
        return self._sim.template_batch

    def offered_rps(self, window_s: float) -> float:
        """Ground truth no live autoscaler has: requests that arrived over the last `window_s`,
        per second (for the decision log, comparing what the policy believed)."""
        arrivals = self._sim.trace.arrival_s
        newer = np.searchsorted(arrivals, self.now, side="right")
        older = np.searchsorted(arrivals, self.now - window_s, side="right")
        span = min(window_s, self.now)  # the trace's first seconds: only the time that passed
        return float(newer - older) / span if span > 0 else 0.0

    def mean_concurrency(self, window_s: float) -> float | None:
        """Mean in-flight requests (router + pods) over the last `window_s`; None if no sample."""
        samples = self._sim.concurrency
        cutoff = self.now - window_s
        total, count = 0.0, 0
        for t, value in reversed(samples):
            if t <= cutoff:
                break
            total += value
            count += 1
        return total / count if count else None


class FleetSimulation:
    """Replays `trace` against a fleet driven by `autoscaler` (see the module docstring)."""

    def __init__(
        self,
        trace: Trace,
        autoscaler: Autoscaler,
        config: FleetConfig,
        initial_replicas: int,
        initial_batch: int,
        horizon_s: float | None = None,
        *,
        single_steps: bool = False,
    ) -> None:
        if initial_replicas < 1:
            raise ValueError("the fleet starts with at least one replica")
        self.trace = trace
        self.autoscaler = autoscaler
        self.config = config
        self.horizon_s = horizon_s if horizon_s is not None else trace.duration_s
        self.single_steps = single_steps  # never fast-forward decode runs (the reference path)
        self.scrapes = Scrapes(config.rate_window_s, config.metrics_lag_s)
        self.pods: list[Pod] = []
        self.desired = initial_replicas
        self.template_batch = initial_batch
        self.concurrency: deque[tuple[float, int]] = deque(maxlen=600)
        self._heap: list[tuple[float, int, int, Pod | None]] = []  # cluster and monitoring events
        # The next step of each busy pod: (time, seq, pod version, pod); stale versions are skipped.
        self._steps: list[tuple[float, int, int, Pod]] = []
        self._seq = 0
        self._buffer: deque[Request] = deque()
        self._rr = 0  # where the router's next scan starts
        self._start_durations: deque[tuple[float, float]] = deque(maxlen=32)
        self._scale_events = 0
        self._batch_changes = 0
        self._max_queue = 0
        self._preemptions = 0
        n = len(trace)
        self._ttft = np.full(n, np.nan)
        self._e2e = np.full(n, np.nan)
        self._tpot = np.full(n, np.nan)
        self._generated = 0
        self._arrivals: list[float] = trace.arrival_s.tolist()
        self._inputs: list[int] = trace.input_tokens.tolist()
        self._outputs: list[int] = trace.output_tokens.tolist()
        self._i = 0  # next arrival
        self._started = False
        self._timeline: dict[str, list[float]] = {
            k: [] for k in ("t", "desired", "ready", "pods", "batch", "queue")
        }
        for _ in range(initial_replicas):
            pod = self._create_pod(0.0, warm=True)
            pod.state = PodState.READY

    # -- the loop ---------------------------------------------------------------------------------

    def run(self, progress: Callable[[float], None] | None = None) -> RunResult:
        """Run to the end of the trace and until every request has finished."""
        self.advance(math.inf, progress)
        return self.result()

    def _start(self) -> None:
        cfg = self.config
        self._started = True
        self._push(cfg.scrape_interval_s, _SCRAPE, None)
        self._push(self.autoscaler.interval_s, _TICK, None)
        self._push(0.0, _SAMPLE, None)
        self._push(0.0, _TIMELINE, None)

    def advance(self, until: float, progress: Callable[[float], None] | None = None) -> None:
        """Process every event up to and including time `until`."""
        if not self._started:
            self._start()
        cfg = self.config
        arrivals = self._arrivals
        inputs = self._inputs
        outputs = self._outputs
        n = len(arrivals)
        i = self._i
        steps = self._steps
        events = self._heap
        view = FleetView(self)
        next_progress = 0.0
        ttft, e2e, tpot = self._ttft, self._e2e, self._tpot
        horizon = self.horizon_s
        inf = math.inf
        while True:
            t_arrival = arrivals[i] if i < n else inf
            t_event = events[0][0] if events else inf
            t_step = steps[0][0] if steps else inf
            t_next = min(t_arrival, t_event, t_step)
            if t_next > until or t_next == inf:
                break
            if steps and t_step <= t_arrival and t_step <= t_event:
                t, _, version, pod = heapq.heappop(steps)
                if version != pod.version:
                    continue  # superseded: the pod's pending run was cut short
                if pod.run_from is not None:
                    self._apply_run(pod, inf)
                # Pods interact only through arrivals and observations, so a run of pure
                # decode steps is planned now and applied only when something needs to see it.
                plan = None if self.single_steps else pod.engine.peek_decodes(t)
                if plan is not None:
                    pod.run_from = t
                    pod.run_last_start = plan.last_start_s
                    pod.run_finishing = plan.finishing
                    heapq.heappush(steps, (plan.end_s, self._next_seq(), pod.version, pod))
                    continue
                result = pod.engine.step(t)
                if result.num_tokens == 0:
                    pod.busy = False
                    if pod.state is PodState.DRAINING:
                        self._terminate(pod, t)
                    continue
                pod.metrics.observe_step(result)
                self._generated += result.num_decoded + len(result.first_tokens)
                self._preemptions += len(result.preempted)
                end = result.end_s
                for req in result.first_tokens:
                    if req.generated == 1:
                        ttft[req.request_id] = end - req.arrival_s
                for req in result.finished:
                    idx = req.request_id
                    e2e[idx] = end - req.arrival_s
                    if req.output_tokens > 1:
                        tpot[idx] = (end - req.first_token_s) / (req.output_tokens - 1)  # type: ignore[operator]
                heapq.heappush(steps, (end, self._next_seq(), pod.version, pod))
                continue
            if t_event > t_arrival:
                self._route(Request(i, inputs[i], outputs[i], t_arrival), t_arrival)
                i += 1
                self._i = i
                continue
            t, _, kind, pod_or_none = heapq.heappop(events)
            if kind == _READY:
                assert pod_or_none is not None
                if pod_or_none.state is PodState.STARTING:
                    pod_or_none.state = PodState.READY
                    self._start_durations.append((t, t - pod_or_none.created_s))
                    self._flush_buffer(t)
                    self._flush(t)  # a rollout may now pick an old pod to drain by its load
                    self._reconcile(t)
            elif kind == _SCRAPE:
                self._scrape(t)
                if t < horizon:
                    self._push(t + cfg.scrape_interval_s, _SCRAPE, None)
            elif kind == _TICK:
                if t < horizon:
                    view.now = t
                    view._metrics = None
                    self._apply(self.autoscaler.tick(view), t)
                    self._push(t + self.autoscaler.interval_s, _TICK, None)
            elif kind == _SAMPLE:
                self._sample(t)
                if t < horizon:
                    self._push(t + cfg.concurrency_sample_s, _SAMPLE, None)
            elif kind == _TIMELINE:
                self._record_timeline(t)
                if t < horizon:
                    self._push(t + cfg.timeline_interval_s, _TIMELINE, None)
                if progress is not None and t >= next_progress:
                    progress(min(t, horizon))
                    next_progress = t + 60.0

    def result(self) -> RunResult:
        """The run's outcome so far (complete once `advance` has run out of events)."""
        horizon = self.horizon_s
        # GPU time is counted over [0, horizon]: the drain after the last arrival is not billed.
        ttft, e2e, tpot = self._ttft, self._e2e, self._tpot
        gpu = sum(
            max(0.0, min(horizon if p.ended_s is None else p.ended_s, horizon) - p.created_s)
            for p in self.pods
        )
        return RunResult(
            policy=self.autoscaler.name,
            horizon_s=horizon,
            arrival_s=self.trace.arrival_s,
            ttft_s=ttft,
            e2e_s=e2e,
            tpot_s=tpot,
            gpu_seconds=gpu,
            generated_tokens=self._generated,
            scale_events=self._scale_events,
            batch_changes=self._batch_changes,
            max_queue=self._max_queue,
            preemptions=self._preemptions,
            timeline={k: np.array(v) for k, v in self._timeline.items()},
        )

    def _apply_run(self, pod: Pod, limit: float) -> None:
        """Apply a pod's pending decode run: the steps that start before `limit`."""
        start = pod.run_from
        assert start is not None
        pod.run_from = None
        run = pod.engine.run_decodes(start, limit)
        assert run is not None, "a planned run stays valid until the pod is touched"
        pod.metrics.observe_run(run)
        self._generated += run.steps * run.num_decoded
        for req in run.finished:
            idx = req.request_id
            self._e2e[idx] = run.end_s - req.arrival_s
            self._tpot[idx] = (run.end_s - req.first_token_s) / (req.output_tokens - 1)  # type: ignore[operator]
        if limit != math.inf:
            # Cut short: the pod's next step starts where the applied prefix ends.
            pod.version += 1
            heapq.heappush(self._steps, (run.end_s, self._next_seq(), pod.version, pod))

    def _flush(self, t: float) -> None:
        """Bring every pod's engine up to `t` (before reading counters or choosing victims)."""
        for pod in self.pods:
            if pod.run_from is not None:
                self._apply_run(pod, t)

    def _outstanding(self, pod: Pod, t: float) -> int:
        """Requests at the pod at `t`, as the per-step engine would have them, pending run or not."""
        load = pod.engine.num_outstanding
        if pod.run_from is not None and t >= pod.run_last_start:
            load -= pod.run_finishing
        return load

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _push(self, t: float, kind: int, pod: Pod | None) -> None:
        heapq.heappush(self._heap, (t, self._next_seq(), kind, pod))

    # -- serving path -----------------------------------------------------------------------------

    def _route(self, req: Request, t: float) -> None:
        # Least outstanding requests; ties go round-robin, starting after the last pod chosen.
        best: Pod | None = None
        best_load = 1 << 60
        pods = self.pods
        start = self._rr
        count = len(pods)
        for k in range(count):
            pod = pods[(start + k) % count]
            if pod.state is PodState.READY:
                load = self._outstanding(pod, t)
                if load < best_load:
                    best, best_load = pod, load
                    if load == 0:
                        break
        if best is None:
            self._buffer.append(req)
            return
        self._rr = best.pod_id + 1
        if best.run_from is not None:
            self._apply_run(best, t)
        best.engine.add(req)
        if not best.busy:
            best.busy = True
            heapq.heappush(self._steps, (t, self._next_seq(), best.version, best))

    def _flush_buffer(self, t: float) -> None:
        while self._buffer:
            self._route(self._buffer.popleft(), t)

    # -- the Deployment ---------------------------------------------------------------------------

    def _create_pod(self, t: float, warm: bool = False) -> Pod:
        engine = EngineModel(self.config.profile, self.template_batch, track_decodes=False)
        ready = t if warm else t + self.config.cold_start_s
        pod = Pod(len(self.pods), self.template_batch, engine, t, ready)
        self.pods.append(pod)
        if not warm:
            self._push(ready, _READY, pod)
        return pod

    def _remove(self, pod: Pod, t: float) -> None:
        if pod.state is PodState.STARTING:
            self._terminate(pod, t)
        elif pod.state is PodState.READY:
            pod.state = PodState.DRAINING
            if not pod.engine.has_work:
                self._terminate(pod, t)

    def _terminate(self, pod: Pod, t: float) -> None:
        pod.state = PodState.GONE
        pod.ended_s = t
        self.scrapes.forget(pod.pod_id)

    def _victims(self, pods: list[Pod], count: int) -> list[Pod]:
        """Starting pods first (newest first), then ready pods with the fewest requests."""
        starting = sorted(
            (p for p in pods if p.state is PodState.STARTING), key=lambda p: -p.pod_id
        )
        ready = sorted(
            (p for p in pods if p.state is PodState.READY),
            key=lambda p: (p.engine.num_outstanding, p.pod_id),
        )
        return (starting + ready)[:count]

    def _reconcile(self, t: float) -> None:
        live = [p for p in self.pods if p.state in (PodState.STARTING, PodState.READY)]
        new = [p for p in live if p.batch == self.template_batch]
        old = [p for p in live if p.batch != self.template_batch]
        desired = self.desired
        if not old:
            if len(new) < desired:
                for _ in range(desired - len(new)):
                    self._create_pod(t)
            elif len(new) > desired:
                for pod in self._victims(new, len(new) - desired):
                    self._remove(pod, t)
            return
        # A rolling restart (maxUnavailable 0): old pods that are not serving go at once.
        for pod in [p for p in old if p.state is PodState.STARTING]:
            self._remove(pod, t)
        old_ready = [p for p in old if p.state is PodState.READY]
        if len(new) > desired:
            for pod in self._victims(new, len(new) - desired):
                self._remove(pod, t)
            new = [p for p in new if p.state in (PodState.STARTING, PodState.READY)]
        ready_new = sum(1 for p in new if p.state is PodState.READY)
        while old_ready and ready_new + len(old_ready) - 1 >= desired:
            victim = self._victims(old_ready, 1)[0]
            old_ready.remove(victim)
            self._remove(victim, t)
        surge = max(1, math.ceil(self.config.max_surge * desired))
        while len(new) < desired and len(old_ready) + len(new) < desired + surge:
            new.append(self._create_pod(t))

    def resize_now(self, replicas: int, t: float) -> None:
        """Set the replicas at `t` with new pods ready at once — for the clairvoyant oracle, which
        started them one cold start earlier. Removed pods drain as usual."""
        self._flush(t)
        self.desired = replicas
        live = [p for p in self.pods if p.state in (PodState.STARTING, PodState.READY)]
        if len(live) < replicas:
            for _ in range(replicas - len(live)):
                pod = self._create_pod(t, warm=True)
                pod.state = PodState.READY
            self._flush_buffer(t)
        elif len(live) > replicas:
            for pod in self._victims(live, len(live) - replicas):
                self._remove(pod, t)

    def fork(self) -> FleetSimulation:
        """An independent copy of the simulation's state, sharing only the immutable trace."""
        memo: dict[int, object] = {
            id(self.trace): self.trace,
            id(self._arrivals): self._arrivals,
            id(self._inputs): self._inputs,
            id(self._outputs): self._outputs,
            id(self.config): self.config,
            id(self.autoscaler): self.autoscaler,
        }
        return copy.deepcopy(self, memo)

    def _apply(self, command: Command, t: float) -> None:
        changed = False
        if command.max_num_seqs is not None and command.max_num_seqs != self.template_batch:
            self.template_batch = max(1, int(command.max_num_seqs))
            self._batch_changes += 1
            changed = True
        if command.replicas is not None:
            replicas = min(
                self.config.max_replicas, max(self.config.min_replicas, int(command.replicas))
            )
            if replicas != self.desired:
                self.desired = replicas
                self._scale_events += 1
                changed = True
        if changed:
            self._flush(t)
            self._reconcile(t)

    def workload(self, now: float) -> WorkloadObservation:
        ready = starting = 0
        rollout = False
        for p in self.pods:
            if p.state is PodState.READY:
                ready += 1
            elif p.state is PodState.STARTING:
                starting += 1
            if p.state is not PodState.GONE and p.batch != self.template_batch:
                rollout = True
        recent = tuple(d for t, d in self._start_durations if now - t <= 1800.0)
        return WorkloadObservation(
            replicas=self.desired,
            ready=ready,
            starting=starting,
            max_num_seqs=self.template_batch,
            rollout_in_progress=rollout,
            pod_start_durations_s=recent,
        )

    # -- observation ------------------------------------------------------------------------------

    def _scrape(self, t: float) -> None:
        self._flush(t)
        for pod in self.pods:
            if pod.state is PodState.READY or pod.state is PodState.DRAINING:
                e = pod.engine
                self.scrapes.record(
                    pod.pod_id,
                    Sample(
                        t, np.array(pod.metrics.values), e.num_running, e.num_waiting, e.kv_usage
                    ),
                )

    def _sample(self, t: float) -> None:
        in_flight = len(self._buffer)
        queue = len(self._buffer)
        for pod in self.pods:
            if pod.state is PodState.READY or pod.state is PodState.DRAINING:
                in_flight += self._outstanding(pod, t)
                queue += pod.engine.num_waiting
        self.concurrency.append((t, in_flight))
        self._max_queue = max(self._max_queue, queue)

    def _record_timeline(self, t: float) -> None:
        tl = self._timeline
        tl["t"].append(t)
        tl["desired"].append(self.desired)
        tl["ready"].append(sum(1 for p in self.pods if p.state is PodState.READY))
        tl["pods"].append(sum(1 for p in self.pods if p.state is not PodState.GONE))
        tl["batch"].append(self.template_batch)
        tl["queue"].append(
            len(self._buffer)
            + sum(p.engine.num_waiting for p in self.pods if p.state is not PodState.GONE)
        )
