"""Look-ahead: cold start measured robustly, demand extrapolated only along a real trend."""

from __future__ import annotations

import math

import pytest

from sloscale.scaling.forecast import (
    MAX_SURGE,
    forecast_demand,
    measure_cold_start,
    surge_ratio,
    trend_line,
)


@pytest.mark.parametrize(
    ("durations", "previous", "expected"),
    [
        ((), None, None),  # nothing seen yet: the policy default applies
        ((), 95.0, 95.0),  # no recent starts: the last measure stands
        ((100.0,), None, 100.0),
        (
            (90.0, 100.0, 110.0, 120.0, 130.0, 140.0, 150.0, 160.0, 170.0, 600.0),
            None,
            170.0,
        ),  # p90 skips one outlier
        ((60.0, 0.0, -5.0, math.nan, math.inf), None, 60.0),  # nonsense durations are ignored
    ],
)
def test_cold_start_is_a_high_percentile_of_recent_starts(
    durations: tuple[float, ...], previous: float | None, expected: float | None
) -> None:
    assert measure_cold_start(durations, previous) == expected


def series(
    values: list[float], step_s: float = 15.0, now: float = 1000.0
) -> tuple[tuple[float, float], ...]:
    n = len(values)
    return tuple((now - (n - 1 - i) * step_s, v) for i, v in enumerate(values))


def test_a_steady_ramp_is_extrapolated_one_cold_start_ahead() -> None:
    ramp = [10.0 + 0.1 * 15 * i for i in range(9)]  # +0.1 req/s per second
    f = forecast_demand(series(ramp), ramp[-1], 1000.0, horizon_s=120.0)
    assert f.rising
    assert f.slope_rps_per_s == pytest.approx(0.1)
    assert f.forecast_rps == pytest.approx(ramp[-1] + 0.1 * 120)


@pytest.mark.parametrize("position", [1, 2, 4, 6, 8])
def test_a_step_is_not_a_trend(position: int) -> None:
    # Not extrapolated as a line (that would reach 40 + 0.16..0.39 × 120 = 59..87 req/s): the
    # step's own level, with at most the surge headroom for rises like it.
    step = [5.0] * (9 - position) + [40.0] * position
    f = forecast_demand(series(step), 40.0, 1000.0, horizon_s=120.0)
    assert f.forecast_rps == pytest.approx(40.0 * f.surge)
    assert 1.0 <= f.surge <= MAX_SURGE


def test_falling_demand_forecasts_the_current_demand() -> None:
    fall = [40.0 - 3 * i for i in range(9)]
    f = forecast_demand(series(fall), fall[-1], 1000.0, horizon_s=120.0)
    assert f.forecast_rps == fall[-1]


def test_growth_is_capped_at_doubling_per_horizon() -> None:
    steep = [1.0 + 2.0 * i for i in range(9)]
    f = forecast_demand(series(steep), steep[-1], 1000.0, horizon_s=300.0)
    assert f.forecast_rps == pytest.approx(2 * steep[-1])


def test_too_few_samples_give_no_trend() -> None:
    assert trend_line(series([1.0, 2.0, 3.0]), 1000.0, 120.0) is None
    f = forecast_demand(series([1.0, 2.0, 3.0]), 3.0, 1000.0, 120.0)
    assert f.forecast_rps == 3.0


def test_only_samples_within_the_trend_window_count() -> None:
    # An old ramp followed by a flat minute and a half: the window (60 s at a 30 s horizon) sees flat.
    values = [1.0 + i for i in range(10)] + [10.0] * 7
    f = forecast_demand(series(values), 10.0, 1000.0, horizon_s=30.0)
    assert f.slope_rps_per_s == 0.0  # no line: the window holds only the flat samples
    assert f.forecast_rps == pytest.approx(10.0 * f.surge)  # the old rises still give headroom


def test_steady_demand_gets_no_surge_headroom() -> None:
    f = forecast_demand(series([40.0] * 20), 40.0, 1000.0, horizon_s=120.0)
    assert f.surge == 1.0 and f.forecast_rps == 40.0 and not f.rising


def test_demand_that_wanders_gets_the_rises_it_showed_within_a_cold_start() -> None:
    # ±20 % every two minutes (eight 15-s samples): within 120 s half the samples see a rise of
    # 1.2 / 0.8 = 1.5, within 30 s only the last two of each low stretch do.
    wander = [40.0 * (1.2 if (i // 8) % 2 else 0.8) for i in range(48)]
    long_horizon = surge_ratio(series(wander), 120.0)
    short_horizon = surge_ratio(series(wander), 30.0)
    assert long_horizon == pytest.approx(1.5)
    assert 1.0 <= short_horizon < long_horizon
    f = forecast_demand(series(wander), wander[-1], 1000.0, horizon_s=120.0)
    assert f.forecast_rps == pytest.approx(wander[-1] * 1.5)
    assert f.rising


def test_one_old_step_does_not_set_the_headroom_for_the_whole_history() -> None:
    # A step 5 → 40 nine minutes ago, steady since: only the samples just before it rose.
    values = [5.0] * 4 + [40.0] * 36
    assert surge_ratio(series(values), 120.0) == 1.0


def test_the_surge_is_capped() -> None:
    wild = [1.0 if i % 2 else 100.0 for i in range(40)]
    assert surge_ratio(series(wild), 120.0) == MAX_SURGE


def test_the_forecast_stage_says_where_the_headroom_comes_from() -> None:
    from sloscale.scaling.decide import forecast_outcome

    wander = [40.0 * (1.2 if (i // 8) % 2 else 0.8) for i in range(48)]
    surged = forecast_outcome(forecast_demand(series(wander), 32.0, 1000.0, horizon_s=120.0))
    assert surged.message == (
        "demand 32 req/s, no trend; it rose up to ×1.50 within 120s lately: 48 req/s provisioned for"
    )
    ramp = [10.0 + 0.1 * 15 * i for i in range(9)]
    trended = forecast_outcome(forecast_demand(series(ramp), ramp[-1], 1000.0, horizon_s=120.0))
    assert "rising 6 req/s per minute" in trended.message
