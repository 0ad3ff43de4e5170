"""Look-ahead: cold start measured robustly, demand extrapolated only along a real trend."""

from __future__ import annotations

import math

import pytest

from sloscale.scaling.forecast import forecast_demand, measure_cold_start, trend_line


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
    step = [5.0] * (9 - position) + [40.0] * position
    f = forecast_demand(series(step), 40.0, 1000.0, horizon_s=120.0)
    assert f.forecast_rps == 40.0
    assert not f.rising


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
    assert f.forecast_rps == 10.0
