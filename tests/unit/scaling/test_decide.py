"""The pipeline as a whole: what one decision carries."""

from __future__ import annotations

from scaling_situations import latency_policy, outage, snapshot, workload

from sloscale.scaling import (
    Action,
    ControlState,
    LatencyMetric,
    Observation,
    Reason,
    Stage,
    Unavailability,
    decide,
)


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
