"""What the control law remembers between ticks: `ControlState`, immutable, passed in and out.

`decide` never keeps anything on an object; it returns a new `ControlState` and the caller (the
reconcile loop or the fleet simulator) hands it back on the next tick. Everything kept here is
bounded — histories are pruned by age and capped by count — so a tick costs the same after a
week as after a minute.

After an operator restart the state is rebuilt with `ControlState.initial`, seeded from the
workload and from what the resource's status persisted (the last scale and batch change times).
The law then refuses to scale down until a full evaluation window of history has been seen again
(the `started_at` field), as Knative's autoscaler does after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TypeVar

V = TypeVar("V")

# Bounds on every history, so that a tick is O(1) in the age of the state.
MAX_DEMAND_SAMPLES = 64
DEMAND_SAMPLE_SPACING_S = 5.0  # samples closer than this replace the newest one
MAX_RECOMMENDATIONS = 256
MAX_SCALE_EVENTS = 64
MAX_WINDOWS = 288  # one day of 5-minute evaluation windows


@dataclass(frozen=True)
class Mix:
    """The service's request mix: mean prompt (I) and generated (O) tokens per request."""

    input_tokens: float
    output_tokens: float


# Until traffic has been seen, a chat-like mix stands in (the Azure conversation trace's shape).
DEFAULT_MIX = Mix(input_tokens=1024.0, output_tokens=256.0)


@dataclass(frozen=True)
class FitStats:
    """Sufficient statistics of the online step-time fit (see `capacity.StepCurve.fitted`).

    Residuals are relative to the prior's step time; v is the fixed-cost share minus the
    batch-dependent share of the prior at the observed batch. s11 = Σw, s12 = Σw·v, s22 = Σw·v²,
    y1 = Σw·y, y2 = Σw·y·v; each observation is discounted by age so the fit follows change.
    """

    s11: float = 0.0
    s12: float = 0.0
    s22: float = 0.0
    y1: float = 0.0
    y2: float = 0.0
    weight: float = 0.0  # effective number of observations
    updated_at: float | None = None


@dataclass(frozen=True)
class Calibration:
    """Corrections of the model's latency percentiles, learned from what the service shows.

    The step-time fit works on means; percentiles also depend on the length mix's tail and on
    burstiness. `ttft` and `e2e` scale the model's service (non-queueing) part; `itl_tail` is how
    far tail concurrency runs above mean concurrency (bursts fill the batch), `itl` scales the
    rest. All start at 1 (the bare model) and move by exponential smoothing.
    """

    ttft: float = 1.0
    itl: float = 1.0
    itl_tail: float = 1.0
    e2e: float = 1.0


@dataclass(frozen=True)
class AttainmentState:
    """The evaluation window being filled and the verdicts of the windows already closed.

    `counts` integrates the objective histogram's per-second counts over the window (counts × tick
    length), so the window's percentile comes from all its requests, not from the last tick.
    """

    window_start: float
    bounds: tuple[float, ...] = ()
    counts: tuple[float, ...] = ()
    outcomes: tuple[bool, ...] = ()  # True = window met; windows without requests are not kept

    @property
    def counted(self) -> int:
        return len(self.outcomes)

    @property
    def met(self) -> int:
        return sum(self.outcomes)


@dataclass(frozen=True)
class ControlState:
    """Everything one service's control law carries from one tick to the next.

    Times are epoch seconds. `replicas` and `max_num_seqs` are the last decided positions.
    """

    started_at: float
    replicas: int
    max_num_seqs: int | None
    last_scale_time: float | None = None
    last_batch_change_time: float | None = None
    last_scale_up_time: float | None = None  # when replicas last grew (capacity still coming)
    last_tick: float | None = None
    last_waiting: float | None = None
    demand: tuple[tuple[float, float], ...] = ()  # (time, req/s arriving)
    recommendations: tuple[tuple[float, int], ...] = ()  # (time, replicas) for stabilisation
    scale_events: tuple[tuple[float, int], ...] = ()  # (time, replica change) for rate limits
    cold_start_s: float | None = None  # measured; None until a pod start has been seen
    mix: Mix | None = None
    fit: FitStats = field(default_factory=FitStats)
    calibration: Calibration = field(default_factory=Calibration)
    attainment: AttainmentState | None = None
    seen_workload: tuple[int, int | None] | None = None  # (replicas, batch) at the last tick
    seen_at: float | None = None  # when `seen_workload` was observed

    @classmethod
    def initial(
        cls,
        now: float,
        replicas: int,
        max_num_seqs: int | None,
        last_scale_time: float | None = None,
        last_batch_change_time: float | None = None,
    ) -> ControlState:
        """A fresh state, e.g. after an operator restart.

        The stabilisation history is seeded with the current replicas, so a scale-down needs the
        window to pass first. `last_batch_change_time` comes from the resource's status and keeps
        the batch cooldown across restarts; `last_scale_time` is carried for status. Scale events
        for the rate limits are not restored: scale-ups may be fast after a restart, and
        scale-downs wait for a full evaluation window anyway (restart safety).
        """
        return cls(
            started_at=now,
            replicas=replicas,
            max_num_seqs=max_num_seqs,
            last_scale_time=last_scale_time,
            last_batch_change_time=last_batch_change_time,
            recommendations=((now, replicas),),
            attainment=AttainmentState(window_start=now),
        )


def record_workload(
    state: ControlState, replicas: int, batch: int | None, now: float, horizon_s: float
) -> ControlState:
    """Note changes of the workload since the last tick: scale events (for the rate limits) and
    batch changes (for the cooldown).

    Changes are taken from what the workload shows, not from what was decided, so the limits
    count what really happened: in Advisory mode nothing is actuated and nothing is spent, and a
    change another actor made counts like one of ours. A replica change is dated at the previous
    tick, when it was decided (the operator actuates right after deciding) — dating it at the tick
    that notices it would shift the start of a rate-limit period and let a scale-down through
    that the period's rule forbids. A batch change is dated when noticed, which only lengthens
    its cooldown.
    """
    seen = (replicas, batch)
    if state.seen_workload is None or state.seen_at is None:
        return replace(state, seen_workload=seen, seen_at=now)
    if state.seen_workload == seen:
        return replace(state, seen_at=now)
    changed_at = min(state.seen_at, now)
    events, last_scale, last_batch, last_up = (
        state.scale_events,
        state.last_scale_time,
        state.last_batch_change_time,
        state.last_scale_up_time,
    )
    before_replicas, before_batch = state.seen_workload
    if replicas != before_replicas:
        events = append_bounded(
            events,
            (changed_at, replicas - before_replicas),
            horizon_s=horizon_s,
            max_len=MAX_SCALE_EVENTS,
        )
        last_scale = changed_at
        if replicas > before_replicas:
            last_up = changed_at
    if batch != before_batch:
        last_batch = now
    return replace(
        state,
        seen_workload=seen,
        seen_at=now,
        scale_events=events,
        last_scale_time=last_scale,
        last_batch_change_time=last_batch,
        last_scale_up_time=last_up,
    )


def append_bounded(
    history: tuple[tuple[float, V], ...],
    sample: tuple[float, V],
    *,
    horizon_s: float,
    max_len: int,
    spacing_s: float = 0.0,
) -> tuple[tuple[float, V], ...]:
    """Add a (time, value) sample, replacing the newest if closer than `spacing_s`, and drop
    samples older than `horizon_s` before the new one or beyond `max_len`."""
    now = sample[0]
    if history and now - history[-1][0] < spacing_s:
        history = history[:-1]
    start = 0
    while start < len(history) and now - history[start][0] > horizon_s:
        start += 1
    start = max(start, len(history) + 1 - max_len)
    return (*history[start:], sample)
