"""The pipeline as a whole: what one decision carries."""

from __future__ import annotations

from dataclasses import replace

import pytest
from scaling_situations import idle, latency_policy, outage, snapshot, workload

from sloscale.scaling import (
    Action,
    Batching,
    ControlState,
    Decision,
    LatencyMetric,
    Observation,
    RateLimit,
    Reason,
    Stage,
    Unavailability,
    decide,
)
from sloscale.scaling.decide import fleet_changed_in_window
from sloscale.scaling.state import record_workload


def stage(decision: Decision, name: Stage) -> str:
    return next(s.reason for s in decision.stages if s.stage == name)


def test_stages_run_in_the_documented_order() -> None:
    d, _ = decide(
        Observation(snapshot(rps=5.0), workload(1)),
        latency_policy(),
        ControlState.initial(0.0, 1, 64),
        15.0,
    )
    assert [s.stage for s in d.stages] == list(Stage)
    assert all(s.message for s in d.stages)


def test_missing_metrics_hold_and_say_why() -> None:
    state = ControlState.initial(0.0, 3, 32)
    d, new = decide(
        Observation(outage(Unavailability.QUERY_FAILED), workload(3, batch=32)),
        latency_policy(),
        state,
        15.0,
    )
    assert (d.replicas, d.max_num_seqs, d.action) == (3, 32, Action.HOLD)
    assert d.reason == Reason.METRICS_UNAVAILABLE and not d.metrics_available
    assert d.metrics_reason == "QueryFailed" and d.metrics_message == "newest sample 300s old"
    assert d.message.startswith("holding 3 replicas at batch 32: metrics QueryFailed")
    assert [s.stage for s in d.stages] == [Stage.ASSESS]
    assert new.demand == state.demand  # an outage adds no demand sample: never read as zero load


def test_a_decision_reports_the_objective_and_the_model() -> None:
    policy = latency_policy(LatencyMetric.TTFT, 1.0)
    d, _ = decide(
        Observation(snapshot(rps=5.0, ttft=(0.1, 0.4)), workload(1, starts=(95.0,))),
        policy,
        ControlState.initial(0.0, 1, 64),
        15.0,
    )
    assert d.metrics_available and d.metrics_reason == "Fresh"
    assert d.objective.name == "p99 TTFT" and d.objective.target == "1s" and d.objective.met
    assert d.cold_start_s == 95.0
    assert d.capacity_rps_per_replica is not None and d.capacity_rps_per_replica > 5.0
    assert d.scaling_limited is None and d.infeasible is None


def test_zero_traffic_is_fresh_not_missing() -> None:
    d, _ = decide(
        Observation(snapshot(rps=0.0, running=0.0), workload(2)),
        latency_policy(),
        ControlState.initial(0.0, 2, 64),
        15.0,
    )
    assert d.metrics_available and d.metrics_reason == "ZeroTraffic"
    assert d.objective.met is None


# --- a pod template without --max-num-seqs runs vLLM's default (1024 on H100) -----------------

UNSET_BOUNDS = Batching(min_seqs=8, initial_seqs=48, max_seqs=256, cooldown_s=900.0)


def test_a_template_without_the_flag_idle_goes_to_the_initial_batch() -> None:
    d, _ = decide(
        Observation(idle(15.0, pods=2), workload(2, batch=None)),
        latency_policy(batching=UNSET_BOUNDS),
        ControlState.initial(0.0, 2, None),
        15.0,
    )
    assert d.max_num_seqs == 48
    assert d.action is Action.BATCH_DOWN  # from the 1024 vLLM runs
    assert d.message.startswith("batch unset→48")
    assert stage(d, Stage.BATCH) == Reason.BATCH_OUT_OF_BOUNDS


@pytest.mark.parametrize("batch", [None, 4, 1024])
def test_a_batch_outside_the_bounds_moves_in_with_traffic_even_within_the_cooldown(
    batch: int | None,
) -> None:
    # The status says the batch changed a minute ago; the cooldown still lets it into bounds.
    state = ControlState.initial(0.0, 2, batch, last_batch_change_time=-60.0)
    d, _ = decide(
        Observation(snapshot(15.0, rps=10.0, pods=2), workload(2, batch=batch)),
        latency_policy(batching=UNSET_BOUNDS),
        state,
        15.0,
    )
    assert d.max_num_seqs is not None and 8 <= d.max_num_seqs <= 256
    assert stage(d, Stage.BATCH) == Reason.BATCH_OUT_OF_BOUNDS
    assert "outside [8, 256]" in next(s.message for s in d.stages if s.stage == Stage.BATCH)


def test_a_rollout_holds_an_out_of_bounds_batch_until_it_ends() -> None:
    d, _ = decide(
        Observation(snapshot(15.0, rps=10.0, pods=2), workload(2, batch=None, rollout=True)),
        latency_policy(batching=UNSET_BOUNDS),
        ControlState.initial(0.0, 2, None),
        15.0,
    )
    assert d.max_num_seqs is None
    assert stage(d, Stage.BATCH) == Reason.ROLLOUT_IN_PROGRESS


def test_vllms_default_within_the_bounds_is_decided_as_no_change() -> None:
    wide = Batching(min_seqs=8, initial_seqs=64, max_seqs=2048)
    d, _ = decide(
        Observation(idle(15.0), workload(1, batch=None)),
        latency_policy(batching=wide),
        ControlState.initial(0.0, 1, None),
        15.0,
    )
    assert (d.max_num_seqs, d.action) == (1024, Action.HOLD)
    assert stage(d, Stage.BATCH) == Reason.BATCH_UNCHANGED
    assert d.message.startswith("holding 1 replicas at batch 1024")


@pytest.mark.parametrize("batch", [None, 4, 1024])
def test_with_batching_off_the_templates_batch_is_never_touched(batch: int | None) -> None:
    for metrics in (idle(15.0), snapshot(15.0, rps=10.0)):
        d, _ = decide(
            Observation(metrics, workload(1, batch=batch)),
            latency_policy(batching=Batching(enabled=False)),
            ControlState.initial(0.0, 1, batch),
            15.0,
        )
        assert d.max_num_seqs == batch
        assert d.action is not Action.BATCH_UP and d.action is not Action.BATCH_DOWN


# --- rate limits count a replica change from the tick that decided it -------------------------


def test_a_scale_up_seen_a_long_tick_later_still_limits_the_next_scale_down() -> None:
    # A 30 s scale-down period allows one replica at a time. The scale-up to 2 was decided at
    # 246 s and is seen at 307 s: the period before 307 s started at 2 replicas, so the idle
    # service goes to 1, not straight to 0.
    policy = replace(
        latency_policy(min_replicas=0, max_replicas=2, batching=Batching(enabled=False)),
        scale_up=RateLimit(0.0, 1, 10, 15.0),
        scale_down=RateLimit(0.0, 1, 10, 30.0),
    )
    state = ControlState.initial(0.0, 1, 64)
    d, state = decide(Observation(idle(244.0), workload(1)), policy, state, 244.0)
    assert d.replicas == 1 and d.reason == Reason.HISTORY_REFILLING
    d, state = decide(Observation(snapshot(246.0, rps=14.0), workload(1)), policy, state, 246.0)
    assert d.replicas == 2
    d, state = decide(Observation(idle(307.0, pods=2), workload(2)), policy, state, 307.0)
    assert d.replicas == 1 and d.reason == Reason.RATE_LIMITED
    assert state.scale_events == ((246.0, 1),)


@pytest.mark.parametrize(
    ("last_up", "now", "expected"),
    [
        (None, 1000.0, False),  # never grew: the window holds one fleet
        (900.0, 1000.0, True),  # ready at 960, the 60 s window still reaches back before it
        (880.0, 1000.0, False),  # ready at 940: the window starts right then
        (800.0, 1000.0, False),
    ],
)
def test_a_window_mixes_fleets_until_a_whole_one_has_passed_since_the_pods_were_ready(
    last_up: float | None, now: float, expected: bool
) -> None:
    state = replace(ControlState.initial(0.0, 2, 64), last_scale_up_time=last_up)
    assert fleet_changed_in_window(state, cold_start_s=60.0, window_s=60.0, now=now) is expected


def test_only_a_scale_up_makes_the_window_mix_fleets() -> None:
    # A scale-down takes effect at once; a window holding the larger fleet flatters the smaller.
    state = ControlState.initial(0.0, 4, 64)
    state = record_workload(state, 4, 64, 100.0, 60.0)
    down = record_workload(state, 3, 64, 115.0, 60.0)
    assert down.last_scale_time == 100.0 and down.last_scale_up_time is None
    assert not fleet_changed_in_window(down, cold_start_s=60.0, window_s=60.0, now=130.0)
    up = record_workload(down, 5, 64, 130.0, 60.0)
    assert up.last_scale_up_time == 115.0
    assert fleet_changed_in_window(up, cold_start_s=60.0, window_s=60.0, now=145.0)
