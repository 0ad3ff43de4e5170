import math

import pytest

from sloscale.scaling.snapshot import Histogram

INF = math.inf
# 10 req/s: 5 at or below 0.1 s, 9 at or below 1 s, all at or below 2.5 s.
H = Histogram(bounds=(0.1, 1.0, 2.5, INF), counts=(5.0, 9.0, 10.0, 10.0))


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0.5, 0.1), (0.25, 0.05), (0.7, 0.1 + 0.9 * 2 / 4), (0.95, 1.0 + 1.5 * 0.5), (1.0, 2.5)],
)
def test_quantile_interpolates_inside_the_bucket_like_prometheus(q: float, expected: float) -> None:
    assert H.quantile(q) == pytest.approx(expected)


def test_quantile_in_the_inf_bucket_returns_the_highest_finite_bound() -> None:
    h = Histogram(bounds=(1.0, INF), counts=(1.0, 10.0))
    assert h.quantile(0.99) == 1.0


def test_empty_histogram_has_no_quantile_and_no_attainment() -> None:
    empty = Histogram(bounds=(1.0, INF), counts=(0.0, 0.0))
    assert empty.quantile(0.99) is None
    assert empty.fraction_within(1.0) is None
    assert Histogram().empty


@pytest.mark.parametrize(("threshold", "share"), [(0.1, 0.5), (0.55, 0.7), (1.0, 0.9), (100.0, 1.0)])
def test_fraction_within_target(threshold: float, share: float) -> None:
    assert H.fraction_within(threshold) == pytest.approx(share)


def test_bucket_width_tells_how_coarse_a_percentile_is() -> None:
    assert H.bucket_width_at(1.8) == pytest.approx(1.5)
    assert H.bucket_width_at(5.0) == INF


def test_mismatched_bounds_and_counts_are_rejected() -> None:
    with pytest.raises(ValueError, match="one count per bucket"):
        Histogram(bounds=(1.0, INF), counts=(1.0,))
