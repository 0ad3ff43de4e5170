"""Stages 7–10, the replica limits, in the Kubernetes HPA's manner.

7. clamp — bounds [min_replicas, max_replicas]; when they bind, the outcome feeds the
   `ScalingLimited` condition (AtMaxReplicas / AtMinReplicas);
8. tolerance — a change within `policy.tolerance` of the current replicas is not worth making,
   unless the objective is violated now and the change adds capacity;
9. stabilisation — the recommendation joins a history; a scale-down goes only as low as the
   highest recommendation within `scale_down.stabilization_s`, a scale-up only as high as the
   lowest within `scale_up.stabilization_s` (HPA's stabilizeRecommendationWithBehaviors);
10. rate limits — per direction, the change since the start of the period may not exceed the
   larger of `max_replicas_per_period` and `max_percent_per_period` (HPA's default Max policy
   selection: the most permissive policy wins); bounds still win over rate limits.
"""

from __future__ import annotations

import math

from sloscale.scaling.decision import StageOutcome
from sloscale.scaling.policy import Policy
from sloscale.scaling.reasons import Reason, Stage
from sloscale.scaling.state import MAX_RECOMMENDATIONS, append_bounded


def clamp(desired: int, policy: Policy) -> tuple[int, StageOutcome, StageOutcome | None]:
    """Bound `desired`; the third value is the ScalingLimited outcome when a bound binds."""
    if desired > policy.max_replicas:
        limited = StageOutcome(
            Stage.CLAMP,
            Reason.AT_MAX_REPLICAS,
            f"{desired} replicas wanted, limited to max {policy.max_replicas}",
        )
        return policy.max_replicas, limited, limited
    if desired < policy.min_replicas:
        limited = StageOutcome(
            Stage.CLAMP,
            Reason.AT_MIN_REPLICAS,
            f"{desired} replicas wanted, raised to min {policy.min_replicas}",
        )
        return policy.min_replicas, limited, limited
    return (
        desired,
        StageOutcome(
            Stage.CLAMP,
            Reason.WITHIN_BOUNDS,
            f"{desired} within [{policy.min_replicas}, {policy.max_replicas}]",
        ),
        None,
    )


def within_tolerance(desired: int, current: int, tolerance: float) -> bool:
    """A change no larger than `tolerance` × current (HPA's `Tolerances.isWithin`)."""
    return current > 0 and abs(desired - current) <= tolerance * current


def apply_tolerance(
    desired: int, current: int, tolerance: float, violated: bool
) -> tuple[int, StageOutcome]:
    if (
        desired != current
        and within_tolerance(desired, current, tolerance)
        and not (violated and desired > current)
    ):
        return current, StageOutcome(
            Stage.TOLERANCE,
            Reason.WITHIN_TOLERANCE,
            f"{current}→{desired} is within the {tolerance:.0%} tolerance: holding {current}",
        )
    return desired, StageOutcome(Stage.TOLERANCE, Reason.OUTSIDE_TOLERANCE, f"{current}→{desired}")


def stabilize(
    desired: int,
    current: int,
    history: tuple[tuple[float, int], ...],
    policy: Policy,
    now: float,
) -> tuple[int, tuple[tuple[float, int], ...], StageOutcome]:
    """Stabilised replicas and the history with `desired` recorded."""
    horizon = max(policy.scale_up.stabilization_s, policy.scale_down.stabilization_s)
    history = append_bounded(
        history, (now, desired), horizon_s=horizon, max_len=MAX_RECOMMENDATIONS
    )
    up = down = desired
    for t, value in history:
        if now - t <= policy.scale_up.stabilization_s:
            up = min(up, value)
        if now - t <= policy.scale_down.stabilization_s:
            down = max(down, value)
    result = current
    if result < up:
        result = up
    if result > down:
        result = down
    if result != desired:
        window = (
            policy.scale_down.stabilization_s
            if desired < current
            else policy.scale_up.stabilization_s
        )
        return (
            result,
            history,
            StageOutcome(
                Stage.STABILIZE,
                Reason.STABILIZING,
                f"{desired} recommended, {result} kept: recommendations within the last {window:g}s reach {result}",
            ),
        )
    return result, history, StageOutcome(Stage.STABILIZE, Reason.STABLE, f"{desired} is stable")


def change_in_period(
    events: tuple[tuple[float, int], ...], now: float, period_s: float
) -> tuple[int, int]:
    """Replicas added and removed by scale events within the last `period_s`."""
    added = removed = 0
    for t, delta in events:
        if now - t < period_s:
            if delta > 0:
                added += delta
            else:
                removed -= delta
    return added, removed


def scale_up_limit(
    current: int, events: tuple[tuple[float, int], ...], policy: Policy, now: float
) -> int:
    rule = policy.scale_up
    added, removed = change_in_period(events, now, rule.period_s)
    start = current - added + removed
    by_replicas = start + rule.max_replicas_per_period
    by_percent = math.ceil(start * (1 + rule.max_percent_per_period / 100))
    return max(by_replicas, by_percent, current)


def scale_down_limit(
    current: int, events: tuple[tuple[float, int], ...], policy: Policy, now: float
) -> int:
    rule = policy.scale_down
    added, removed = change_in_period(events, now, rule.period_s)
    start = current - added + removed
    by_replicas = start - rule.max_replicas_per_period
    by_percent = int(start * (1 - rule.max_percent_per_period / 100))
    return min(min(by_replicas, by_percent), current)


def rate_limit(
    desired: int, current: int, events: tuple[tuple[float, int], ...], policy: Policy, now: float
) -> tuple[int, StageOutcome]:
    if desired > current:
        limit = scale_up_limit(current, events, policy, now)
        if desired > limit:
            return limit, StageOutcome(
                Stage.RATE_LIMIT,
                Reason.RATE_LIMITED,
                f"{current}→{desired} limited to {limit}: scale-up allows +{policy.scale_up.max_replicas_per_period} "
                f"or +{policy.scale_up.max_percent_per_period}% per {policy.scale_up.period_s:g}s",
            )
    elif desired < current:
        limit = scale_down_limit(current, events, policy, now)
        if desired < limit:
            return limit, StageOutcome(
                Stage.RATE_LIMIT,
                Reason.RATE_LIMITED,
                f"{current}→{desired} limited to {limit}: scale-down allows -{policy.scale_down.max_replicas_per_period} "
                f"or -{policy.scale_down.max_percent_per_period}% per {policy.scale_down.period_s:g}s",
            )
    return desired, StageOutcome(
        Stage.RATE_LIMIT, Reason.WITHIN_RATE, f"{current}→{desired} within rate limits"
    )
