"""Events: emitted on transitions only, each carrying its numbers."""

from __future__ import annotations

from datetime import UTC, datetime

from operator_cases import decision, hold

from sloscale.conditions import (
    ConditionType,
    ConditionUpdate,
    Reason,
    blocked_conditions,
    set_conditions,
)
from sloscale.events import Event, EventReason, EventType, condition_events, lever_events
from sloscale.resource import Condition
from sloscale.scaling.decision import Action

T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


def conditions(*updates: tuple[ConditionType, str, str, str]) -> list[Condition]:
    return set_conditions([], [ConditionUpdate(*u) for u in updates], T0, 1)


def test_scale_up_carries_the_decisions_numbers() -> None:
    events = lever_events(decision(), replicas_before=2, batch_before=64, advisory=False)
    assert events == [
        Event(
            EventType.NORMAL,
            EventReason.SCALED_UP,
            "replicas 2→4: p99 TTFT 1.8s > 1s; queue 37; capacity 21 req/s per replica",
        )
    ]


def test_a_hold_emits_nothing() -> None:
    assert lever_events(hold(), replicas_before=2, batch_before=64, advisory=False) == []


def test_batch_change_says_it_is_a_rolling_update() -> None:
    d = decision(
        replicas=2,
        max_num_seqs=32,
        action=Action.BATCH_DOWN,
        message="max-num-seqs 64→32: p99 ITL 90ms > 60ms",
    )
    (event,) = lever_events(d, replicas_before=2, batch_before=64, advisory=False)
    assert (event.reason, event.message) == (
        EventReason.BATCH_DECREASED,
        "max-num-seqs 64→32: p99 ITL 90ms > 60ms",
    )


def test_both_levers_moving_name_the_lever_the_message_is_not_about() -> None:
    d = decision(max_num_seqs=128)  # a scale-up message, the batch moved as well
    events = lever_events(d, replicas_before=2, batch_before=64, advisory=False)
    assert [e.reason for e in events] == [EventReason.SCALED_UP, EventReason.BATCH_INCREASED]
    assert events[1].message.startswith("max-num-seqs 64→128 (rolling update); replicas 2→4")


def test_advisory_reports_a_recommendation_once() -> None:
    first = lever_events(
        decision(), replicas_before=2, batch_before=64, advisory=True, recommended_before=(2, 64)
    )
    assert [(e.reason, e.message.split(":")[0]) for e in first] == [
        (EventReason.RECOMMENDATION, "Advisory, not applied")
    ]
    assert "replicas 2→4" in first[0].message
    again = lever_events(
        decision(), replicas_before=2, batch_before=64, advisory=True, recommended_before=(4, 64)
    )
    assert again == []


def test_conditions_that_stay_put_emit_nothing_however_often_ticked() -> None:
    steady = conditions(
        (ConditionType.METRICS_AVAILABLE, "False", "Stale", "newest sample 95s old")
    )
    later = conditions(
        (ConditionType.METRICS_AVAILABLE, "False", "Stale", "newest sample 110s old")
    )
    assert condition_events(steady, later) == []


def test_metrics_lost_then_restored() -> None:
    fresh = conditions((ConditionType.METRICS_AVAILABLE, "True", "Fresh", "2 pods"))
    lost = conditions(
        (ConditionType.METRICS_AVAILABLE, "False", "QueryFailed", "Prometheus: cannot connect")
    )
    assert condition_events(fresh, lost) == [
        Event(EventType.WARNING, EventReason.METRICS_UNAVAILABLE, "Prometheus: cannot connect")
    ]
    assert condition_events(lost, fresh) == [
        Event(EventType.NORMAL, EventReason.METRICS_RESTORED, "2 pods")
    ]


def test_a_first_good_state_is_not_news_but_a_first_bad_one_is() -> None:
    good = conditions(
        (ConditionType.METRICS_AVAILABLE, "True", "Fresh", "2 pods"),
        (ConditionType.OBJECTIVE_MET, "True", "TargetMet", "p99 TTFT 0.4s <= 1s"),
        (ConditionType.INFEASIBLE, "False", "Feasible", "ok"),
    )
    assert condition_events([], good) == []
    missed = conditions(
        (ConditionType.OBJECTIVE_MET, "False", "TargetMissed", "p99 TTFT 1.8s > 1s")
    )
    assert condition_events([], missed) == [
        Event(EventType.WARNING, EventReason.OBJECTIVE_MISSED, "p99 TTFT 1.8s > 1s")
    ]
    assert condition_events(missed, good)[0].reason is EventReason.OBJECTIVE_RESTORED


def test_a_limit_warns_when_it_starts_binding_not_each_time_its_reason_alternates() -> None:
    free = conditions((ConditionType.SCALING_LIMITED, "False", "DesiredWithinRange", "ok"))
    at_max = conditions(
        (ConditionType.SCALING_LIMITED, "True", "AtMaxReplicas", "wanted 11, max 8")
    )
    rate = conditions((ConditionType.SCALING_LIMITED, "True", "RateLimited", "at most 4 per 30s"))
    assert condition_events(free, at_max) == [
        Event(EventType.WARNING, EventReason.SCALING_LIMITED, "wanted 11, max 8")
    ]
    assert condition_events(at_max, rate) == []
    assert condition_events(rate, at_max) == []


def test_infeasible_and_back() -> None:
    feasible = conditions((ConditionType.INFEASIBLE, "False", "Feasible", "ok"))
    infeasible = conditions(
        (ConditionType.INFEASIBLE, "True", "TargetBelowFloor", "ITL target 5ms < step 7ms")
    )
    assert condition_events(feasible, infeasible) == [
        Event(EventType.WARNING, EventReason.INFEASIBLE, "ITL target 5ms < step 7ms")
    ]
    assert [e.reason for e in condition_events(infeasible, feasible)] == [EventReason.FEASIBLE]


def test_spec_errors_are_reported_once_per_distinct_mistake() -> None:
    first = set_conditions(
        [], blocked_conditions(Reason.INVALID_SPEC, "engine.args sets --port"), T0, 2
    )
    (event,) = condition_events([], first)
    assert (event.type, event.reason, event.message) == (
        EventType.WARNING,
        EventReason.INVALID_SPEC,
        "engine.args sets --port",
    )
    assert condition_events(first, first) == []
    second = set_conditions(
        first, blocked_conditions(Reason.INVALID_SPEC, "engine.args sets --model"), T0, 3
    )
    assert [e.message for e in condition_events(first, second)] == ["engine.args sets --model"]
    missing = set_conditions(
        second, blocked_conditions(Reason.TARGET_NOT_FOUND, "Deployment llm does not exist"), T0, 3
    )
    assert [e.reason for e in condition_events(second, missing)] == [EventReason.TARGET_NOT_FOUND]


def test_a_refused_write_is_a_warning_once() -> None:
    ok = conditions((ConditionType.ABLE_TO_SCALE, "True", "Enforcing", "..."))
    refused = conditions((ConditionType.ABLE_TO_SCALE, "False", "ScaleFailed", "403: forbidden"))
    assert condition_events(ok, refused) == [
        Event(EventType.WARNING, EventReason.SCALE_FAILED, "403: forbidden")
    ]
    assert condition_events(refused, refused) == []
