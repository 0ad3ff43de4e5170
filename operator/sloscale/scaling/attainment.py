"""Attainment: the share of evaluation windows in which the objective's percentile held.

Each window (`LatencyTarget.window_s`) integrates the objective's histogram over its ticks
(per-second counts × tick length), so its percentile is taken over all its requests, the way
`histogram_quantile` over `increase(...[window])` would. A window with no requests is not
counted; a throughput objective is judged on its latency bound. The verdicts of at most
`MAX_WINDOWS` windows are kept, so attainment is over the last day at 5-minute windows.

Error budget remaining = 1 − (missed share ÷ (1 − goal)), clamped at 0: with a 99 % goal, one
missed window in a hundred spends the whole budget.
"""

from __future__ import annotations

from sloscale.scaling.policy import LatencyTarget
from sloscale.scaling.snapshot import Histogram
from sloscale.scaling.state import MAX_WINDOWS, AttainmentState


def window_met(
    bounds: tuple[float, ...], counts: tuple[float, ...], target: LatencyTarget
) -> bool | None:
    """Did the aggregated window meet the target? None when it held no requests."""
    observed = Histogram(bounds, counts).quantile(target.quantile)
    return None if observed is None else observed <= target.target_s


def close_windows(att: AttainmentState, target: LatencyTarget, now: float) -> AttainmentState:
    """Judge every window that has ended by `now` and start the one `now` falls in."""
    end = att.window_start + target.window_s
    if now < end:
        return att
    outcomes = att.outcomes
    verdict = window_met(att.bounds, att.counts, target) if att.counts else None
    if verdict is not None:
        outcomes = (*outcomes, verdict)[-MAX_WINDOWS:]
    # Windows skipped entirely (an outage, an idle operator) hold nothing to judge.
    skipped = int((now - end) // target.window_s)
    return AttainmentState(window_start=end + skipped * target.window_s, outcomes=outcomes)


def add(att: AttainmentState, histogram: Histogram, tick_s: float) -> AttainmentState:
    """Add `histogram` (per-second counts) × `tick_s` to the open window."""
    if histogram.empty or tick_s <= 0.0:
        return att
    added = tuple(c * tick_s for c in histogram.counts)
    # A changed bucket layout (an engine upgrade) cannot be merged: the partial window restarts.
    if att.counts and att.bounds == histogram.bounds:
        added = tuple(a + b for a, b in zip(att.counts, added, strict=True))
    return AttainmentState(att.window_start, histogram.bounds, added, att.outcomes)


def accumulate(
    att: AttainmentState, histogram: Histogram, tick_s: float, target: LatencyTarget, now: float
) -> AttainmentState:
    """Fold in one tick's histogram, which covers the `tick_s` seconds up to `now`, and judge
    the windows that have ended."""
    if now > att.window_start + target.window_s:
        # The tick lies mostly past the open window's end: it opens the next one.
        return add(close_windows(att, target, now), histogram, tick_s)
    return close_windows(add(att, histogram, tick_s), target, now)


def attainment(att: AttainmentState | None) -> float | None:
    if att is None or att.counted == 0:
        return None
    return att.met / att.counted


def error_budget_remaining(att: AttainmentState | None, goal: float) -> float | None:
    share = attainment(att)
    if share is None:
        return None
    missed = 1.0 - share
    allowed = 1.0 - goal
    if allowed <= 0.0:
        return 1.0 if missed <= 0.0 else 0.0
    return max(0.0, 1.0 - missed / allowed)
