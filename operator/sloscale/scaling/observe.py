"""Stage 2, observe: fold one fresh snapshot into the state.

* Demand: the arrival rate is completions plus the queue's growth since the last tick (under
  overload completions only show capacity; while a backlog drains they overstate arrivals); it joins a bounded history for the trend.
* Mix: mean prompt and output tokens per finished request (`mix_reading`), smoothed.
* Capacity fit: the observed mean step time at the observed sequences decoding per pod, both
  from the inter-token-latency histogram's sum and count (`step_reading`), joins the step-curve
  fit (`capacity`); skipped during a rollout, when pods of two batch settings mix.
* Calibration: the model's latency percentiles against the observed ones (`calibrate`).
* Cold start: from the created→ready times of recently started pods (`forecast`).
* Attainment: the tick's objective histogram joins the evaluation window (`attainment`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sloscale.scaling.attainment import accumulate
from sloscale.scaling.calibrate import calibrate
from sloscale.scaling.capacity import StepCurve, update_fit
from sloscale.scaling.decision import StageOutcome
from sloscale.scaling.fmt import number, seconds
from sloscale.scaling.forecast import measure_cold_start
from sloscale.scaling.policy import Policy
from sloscale.scaling.readings import objective_histogram
from sloscale.scaling.reasons import Reason, Stage
from sloscale.scaling.snapshot import MetricsSnapshot, WorkloadObservation
from sloscale.scaling.state import (
    DEFAULT_MIX,
    DEMAND_SAMPLE_SPACING_S,
    MAX_DEMAND_SAMPLES,
    AttainmentState,
    ControlState,
    Mix,
    append_bounded,
)

DEMAND_HISTORY_S = 600.0
MIX_SMOOTHING = 0.3
MIN_RUNNING_TO_FIT = 1.0


@dataclass(frozen=True)
class Observed:
    """What this tick adds to the model: demand now and the service's fitted curve."""

    arrival_rps: float
    queue_growth_rps: float  # negative while a backlog drains
    mix: Mix
    curve: StepCurve
    cold_start_s: float
    batch: int  # the batch cap in force (vLLM's default when the template sets none)
    concurrency: float  # mean running sequences per reporting pod


def effective_batch(workload: WorkloadObservation, policy: Policy) -> int:
    """The batch cap the pods run with: the template's, or vLLM's default when it sets none."""
    return (
        workload.max_num_seqs
        if workload.max_num_seqs is not None
        else policy.profile.default_max_num_seqs
    )


def queue_growth(snapshot: MetricsSnapshot, state: ControlState, now: float) -> float:
    """How fast the engine queue grew (negative: drained) since the last tick, requests/s."""
    if state.last_tick is None or state.last_waiting is None or now <= state.last_tick:
        return 0.0
    return (snapshot.waiting - state.last_waiting) / (now - state.last_tick)


def arrival_rate(snapshot: MetricsSnapshot, growth: float) -> float:
    """Arrivals = completions + queue growth: right while capacity is short (completions only
    show capacity) and while a backlog drains (completions exceed arrivals)."""
    return max(0.0, snapshot.requests_per_s + growth)


def mix_reading(snapshot: MetricsSnapshot) -> Mix | None:
    """Mean prompt and output tokens per request over the rate window; None without requests.

    The per-request token sums are counted when a request finishes, like the request rate they
    are divided by. The token counters are the fallback: they count prompt tokens when a request
    starts and output tokens as they are generated, so while load changes they are paired with
    requests finishing from another period (the prompt can read several times too long).
    """
    requests = snapshot.requests_per_s
    prompt, output = (
        snapshot.finished_prompt_tokens_per_s,
        snapshot.finished_generation_tokens_per_s,
    )
    if requests > 0.0 and prompt is not None and output is not None and output > 0.0:
        return Mix(prompt / requests, output / requests)
    if requests <= 0.0 or snapshot.generation_tokens_per_s <= 0.0:
        return None
    return Mix(snapshot.prompt_tokens_per_s / requests, snapshot.generation_tokens_per_s / requests)


def step_reading(snapshot: MetricsSnapshot) -> tuple[float, float] | None:
    """(sequences decoding per pod, mean step time s) over the rate window; None when idle.

    From the inter-token-latency histogram where its `_sum` is exported: sum ÷ count is the mean
    step, and the sum alone is the mean number of sequences decoding (each accrues a second of
    inter-token latency per second) — both averaged over the same window. Otherwise the running
    gauge at one instant against the windowed output rate, which lags and jumps in bursts.
    """
    pods = max(snapshot.pods_reporting, 1)
    seconds, tokens = snapshot.itl_seconds_per_s, snapshot.itl_tokens_per_s
    if seconds is not None and tokens is not None:
        if seconds <= 0.0 or tokens <= 0.0 or seconds / pods < MIN_RUNNING_TO_FIT:
            return None
        return seconds / pods, seconds / tokens
    if snapshot.running < MIN_RUNNING_TO_FIT or snapshot.generation_tokens_per_s <= 0.0:
        return None
    return snapshot.running / pods, snapshot.running / snapshot.generation_tokens_per_s


def observed_mix(snapshot: MetricsSnapshot, previous: Mix | None) -> Mix | None:
    now = mix_reading(snapshot)
    if now is None:
        return previous
    if previous is None:
        return now
    w = MIX_SMOOTHING
    return Mix(
        (1 - w) * previous.input_tokens + w * now.input_tokens,
        (1 - w) * previous.output_tokens + w * now.output_tokens,
    )


def observe(
    state: ControlState,
    snapshot: MetricsSnapshot,
    workload: WorkloadObservation,
    policy: Policy,
    now: float,
) -> tuple[ControlState, Observed, StageOutcome]:
    growth = queue_growth(snapshot, state, now)
    arrival = arrival_rate(snapshot, growth)
    demand = append_bounded(
        state.demand,
        (now, arrival),
        horizon_s=DEMAND_HISTORY_S,
        max_len=MAX_DEMAND_SAMPLES,
        spacing_s=DEMAND_SAMPLE_SPACING_S,
    )
    mix = observed_mix(snapshot, state.mix)
    used_mix = mix or DEFAULT_MIX
    batch = effective_batch(workload, policy)
    pods = max(snapshot.pods_reporting, 1)
    concurrency = snapshot.running / pods

    fit = state.fit
    reading = step_reading(snapshot)
    if not workload.rollout_in_progress and reading is not None:
        prior = StepCurve.prior(policy.profile, used_mix)
        fit = update_fit(fit, prior, reading[0], reading[1], now)
    curve = StepCurve.fitted(policy.profile, used_mix, fit)

    calibration = state.calibration
    if not workload.rollout_in_progress:
        calibration = calibrate(
            calibration, curve, snapshot, batch, policy.objective.latency.quantile
        )

    cold_start = measure_cold_start(workload.pod_start_durations_s, state.cold_start_s)

    target = policy.objective.latency
    tick_s = (
        0.0 if state.last_tick is None else min(max(now - state.last_tick, 0.0), target.window_s)
    )
    att = accumulate(
        state.attainment or AttainmentState(window_start=now),
        objective_histogram(snapshot, target.metric),
        tick_s,
        target,
        now,
    )

    new_state = replace(
        state,
        last_tick=now,
        last_waiting=snapshot.waiting,
        demand=demand,
        mix=mix,
        fit=fit,
        calibration=calibration,
        cold_start_s=cold_start,
        attainment=att,
    )
    observed = Observed(
        arrival_rps=arrival,
        queue_growth_rps=growth,
        mix=used_mix,
        curve=curve,
        cold_start_s=cold_start if cold_start is not None else policy.cold_start_s,
        batch=batch,
        concurrency=concurrency,
    )
    outcome = StageOutcome(
        Stage.OBSERVE,
        Reason.STATE_UPDATED,
        f"arrivals {number(arrival)} req/s; mix {number(used_mix.input_tokens)}/"
        f"{number(used_mix.output_tokens)} tokens; step {seconds(curve.step_s(max(concurrency, 1.0)))} "
        f"at {number(concurrency)} running per pod (fit α={curve.alpha:.2f} β={curve.beta:.2f}); "
        f"cold start {seconds(observed.cold_start_s)}",
    )
    return new_state, observed, outcome
