"""Attainment per evaluation window and the error budget left."""

from __future__ import annotations

import pytest
from scaling_situations import TTFT_BUCKETS, lognormal

from sloscale.scaling.attainment import accumulate, attainment, error_budget_remaining
from sloscale.scaling.policy import LatencyMetric, LatencyTarget
from sloscale.scaling.state import MAX_WINDOWS, AttainmentState

TARGET = LatencyTarget(LatencyMetric.TTFT, 0.99, 1.0, window_s=300.0, attainment_goal=0.9)
FAST = lognormal(TTFT_BUCKETS, 10.0, 0.1, 0.5)
SLOW = lognormal(TTFT_BUCKETS, 10.0, 0.5, 3.0)
IDLE = lognormal(TTFT_BUCKETS, 0.0, 0.1, 0.5)


def run(ticks: list[tuple[float, object]], att: AttainmentState | None = None) -> AttainmentState:
    att = att or AttainmentState(window_start=0.0)
    last = 0.0
    for now, hist in ticks:
        att = accumulate(att, hist, now - last, TARGET, now)  # type: ignore[arg-type]
        last = now
    return att


def minutes(start_min: int, end_min: int, hist: object) -> list[tuple[float, object]]:
    return [(m * 60.0, hist) for m in range(start_min, end_min)]


def test_a_window_is_judged_when_it_ends() -> None:
    att = run(minutes(1, 5, FAST))
    assert att.counted == 0  # still inside the first window
    att = run(minutes(5, 6, FAST), att)
    assert att.outcomes == (True,)


def test_a_window_is_judged_on_all_its_requests_not_the_last_tick() -> None:
    # Four slow minutes, then one fast: the window as a whole missed.
    att = run(minutes(1, 5, SLOW) + minutes(5, 6, FAST) + [(360.0, FAST)])
    assert att.outcomes[0] is False


def test_windows_without_requests_do_not_count() -> None:
    att = run(minutes(1, 6, FAST) + minutes(6, 16, IDLE) + minutes(16, 21, SLOW) + [(1260.0, FAST)])
    assert att.outcomes == (True, False)


def test_a_gap_skips_windows_without_judging_them() -> None:
    att = run(minutes(1, 6, FAST) + [(3000.0, SLOW), (3300.0, SLOW)])
    assert att.outcomes == (True, False)
    assert att.window_start == 3300.0


def test_a_changed_bucket_layout_restarts_the_window() -> None:
    other = lognormal((0.5, 1.0, 2.0, float("inf")), 10.0, 0.5, 3.0)
    att = run([(60.0, FAST), (120.0, other)])
    assert att.bounds == other.bounds
    assert att.counts == tuple(c * 60.0 for c in other.counts)


def test_verdicts_are_bounded() -> None:
    att = AttainmentState(window_start=0.0, outcomes=(True,) * MAX_WINDOWS)
    att = run([(60.0, SLOW), (301.0, SLOW)], att)
    assert att.counted == MAX_WINDOWS
    assert att.outcomes[-1] is False


@pytest.mark.parametrize(
    ("outcomes", "share", "budget"),
    [
        ((), None, None),
        ((True,) * 10, 1.0, 1.0),
        ((True,) * 19 + (False,), 0.95, 0.5),  # 5 % missed of a 10 % budget
        ((True,) * 9 + (False,), 0.9, 0.0),
        ((False,) * 4, 0.0, 0.0),  # clamped at zero
    ],
)
def test_attainment_and_error_budget(
    outcomes: tuple[bool, ...], share: float | None, budget: float | None
) -> None:
    att = AttainmentState(window_start=0.0, outcomes=outcomes)
    assert attainment(att) == share if share is None else attainment(att) == pytest.approx(share)
    remaining = error_budget_remaining(att, TARGET.attainment_goal)
    assert remaining == budget if budget is None else remaining == pytest.approx(budget)


def test_a_goal_of_one_has_no_budget_to_spend() -> None:
    assert error_budget_remaining(AttainmentState(0.0, outcomes=(True, True)), 1.0) == 1.0
    assert error_budget_remaining(AttainmentState(0.0, outcomes=(True, False)), 1.0) == 0.0
