"""Conditions: metav1.Condition semantics and what each decision implies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from operator_cases import THROUGHPUT, TTFT_1S, decision, hold

from sloscale.conditions import (
    ConditionType,
    ConditionUpdate,
    Reason,
    blocked_conditions,
    decision_conditions,
    objective_message,
    set_condition,
)
from sloscale.scaling.decision import ObjectiveReport, StageOutcome

T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=1)


def by_type(updates: list[ConditionUpdate]) -> dict[str, ConditionUpdate]:
    return {u.type.value: u for u in updates}


def test_transition_time_is_kept_while_the_status_holds_and_moves_when_it_flips() -> None:
    first = set_condition([], ConditionUpdate(ConditionType.READY, "True", "Serving", "1/1"), T0, 1)
    same = set_condition(
        first, ConditionUpdate(ConditionType.READY, "True", "Serving", "2/2"), T1, 2
    )
    assert same[0].last_transition_time == T0
    assert (same[0].message, same[0].observed_generation) == ("2/2", 2)
    flipped = set_condition(
        same, ConditionUpdate(ConditionType.READY, "False", "WorkloadNotReady", "0/2"), T1, 2
    )
    assert flipped[0].last_transition_time == T1
    assert len(flipped) == 1


def test_conditions_keep_a_stable_order_with_ready_first() -> None:
    conditions = []
    for update in reversed(
        decision_conditions(decision(), TTFT_1S.objective, ready=2, replicas=4, advisory=False)
    ):
        conditions = set_condition(conditions, update, T0, 1)
    assert [c.type for c in conditions] == [t.value for t in ConditionType]


def test_a_scale_up_on_a_missed_objective() -> None:
    got = by_type(
        decision_conditions(decision(), TTFT_1S.objective, ready=2, replicas=4, advisory=False)
    )
    assert got["Ready"] == ConditionUpdate(
        ConditionType.READY, "True", Reason.SERVING, "2/4 replicas ready"
    )
    assert got["MetricsAvailable"][1:3] == ("True", "Fresh")
    assert got["ObjectiveMet"][1:] == (
        "False",
        Reason.TARGET_MISSED,
        "p99 TTFT 1.8s > 1s; attainment 97.0%",
    )
    assert got["AbleToScale"][1:3] == ("True", Reason.ENFORCING)
    assert got["ScalingLimited"][1:3] == ("False", Reason.DESIRED_WITHIN_RANGE)
    assert got["Infeasible"][1:3] == ("False", Reason.FEASIBLE)


def test_missing_metrics_make_the_objective_unknown_not_met() -> None:
    d = hold(
        metrics_available=False, metrics_reason="Stale", metrics_message="newest sample 120s old"
    )
    got = by_type(decision_conditions(d, TTFT_1S.objective, ready=2, replicas=2, advisory=False))
    assert got["MetricsAvailable"][1:] == ("False", "Stale", "newest sample 120s old")
    assert got["ObjectiveMet"][1:] == (
        "Unknown",
        Reason.METRICS_UNAVAILABLE,
        "newest sample 120s old",
    )


def test_no_requests_in_the_window_is_unknown() -> None:
    report = ObjectiveReport("p99 TTFT", "1s", None, 0.0, None, None, None)
    got = by_type(
        decision_conditions(
            hold(objective=report), TTFT_1S.objective, ready=1, replicas=1, advisory=False
        )
    )
    assert got["ObjectiveMet"][1:3] == ("Unknown", Reason.NO_REQUESTS)


@pytest.mark.parametrize(
    ("advisory", "error", "expected"),
    [
        (True, None, ("False", Reason.ADVISORY)),
        (False, "writing Deployment chat failed: 403: forbidden", ("False", Reason.SCALE_FAILED)),
    ],
)
def test_able_to_scale(advisory: bool, error: str | None, expected: tuple[str, str]) -> None:
    got = by_type(
        decision_conditions(
            decision(), TTFT_1S.objective, ready=2, replicas=2, advisory=advisory, scale_error=error
        )
    )
    assert got["AbleToScale"][1:3] == expected
    if error:
        assert got["AbleToScale"].message == error


def test_limits_and_infeasibility_pass_the_control_laws_reasons_through() -> None:
    d = decision(
        scaling_limited=StageOutcome("Clamp", "AtMaxReplicas", "wanted 11 replicas, max 8"),
        infeasible=StageOutcome(
            "Feasibility", "InfeasibleAtMaxReplicas", "p99 TTFT 3s > 1s at 8 replicas"
        ),
    )
    got = by_type(decision_conditions(d, TTFT_1S.objective, ready=8, replicas=8, advisory=False))
    assert got["ScalingLimited"][1:] == ("True", "AtMaxReplicas", "wanted 11 replicas, max 8")
    assert got["Infeasible"][1:] == (
        "True",
        "InfeasibleAtMaxReplicas",
        "p99 TTFT 3s > 1s at 8 replicas",
    )


@pytest.mark.parametrize(
    ("ready", "replicas", "expected"),
    [
        (0, 3, ("False", Reason.WORKLOAD_NOT_READY)),
        (0, 0, ("True", Reason.SCALED_TO_ZERO)),
        (1, 3, ("True", Reason.SERVING)),
    ],
)
def test_ready_summarises_the_workload(
    ready: int, replicas: int, expected: tuple[str, str]
) -> None:
    got = by_type(
        decision_conditions(
            hold(), TTFT_1S.objective, ready=ready, replicas=replicas, advisory=False
        )
    )
    assert got["Ready"][1:3] == expected


def test_throughput_message_names_tokens_and_the_bound() -> None:
    report = ObjectiveReport("tokens/s", "2000 tok/s", 0.08, 1520.0, False, None, None)
    assert objective_message(decision(objective=report), THROUGHPUT.objective) == (
        "1520 tok/s, target 2000 tok/s; p99 ITL 80ms <= bound 100ms"
    )


def test_blocked_spec_says_why_on_ready_and_able_to_scale_and_evaluates_nothing() -> None:
    got = by_type(blocked_conditions(Reason.INVALID_SPEC, "spec: engine.args sets --port"))
    assert got["Ready"][1:] == ("False", Reason.INVALID_SPEC, "spec: engine.args sets --port")
    assert got["AbleToScale"][1:3] == ("False", Reason.INVALID_SPEC)
    assert {
        got[t].status for t in ("MetricsAvailable", "ObjectiveMet", "ScalingLimited", "Infeasible")
    } == {"Unknown"}
