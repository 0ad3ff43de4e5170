"""The capacity model: the prior reproduces performance-model.md, the fit follows the service,
and predictions behave the way queues do."""

from __future__ import annotations

import math

import pytest

from sloscale.scaling.capacity import (
    StepCurve,
    fit_coefficients,
    predict,
    queue_quantile_s,
    update_fit,
)
from sloscale.scaling.policy import A100, H100, LatencyMetric
from sloscale.scaling.state import Calibration, FitStats, Mix

CONV = Mix(1155.0, 211.0)  # Azure conversation trace
DECODE = Mix(512.0, 512.0)


@pytest.mark.parametrize(
    ("mix", "batch", "step_ms", "tokens_per_s", "rps"),
    [
        (CONV, 8, 6.9, 1160, 5.5),
        (CONV, 32, 11.0, 2900, 13.8),
        (CONV, 64, 17.2, 3700, 17.7),
        (CONV, 128, 29.6, 4300, 20.5),
        (DECODE, 8, 6.7, 1200, None),
        (DECODE, 64, 9.6, 6700, None),
        (DECODE, 256, 24.1, 10600, None),
    ],
)
def test_prior_reproduces_the_performance_model_table(
    mix: Mix, batch: int, step_ms: float, tokens_per_s: float, rps: float | None
) -> None:
    curve = StepCurve.prior(H100, mix)
    assert curve.step_s(batch) * 1000 == pytest.approx(step_ms, rel=0.03)
    assert batch / curve.step_s(batch) == pytest.approx(tokens_per_s, rel=0.05)
    if rps is not None:
        assert curve.capacity_rps(batch) == pytest.approx(rps, rel=0.05)


def test_a100_is_slower_than_h100_for_the_same_mix() -> None:
    ratio = StepCurve.prior(A100, CONV).capacity_rps(64) / StepCurve.prior(H100, CONV).capacity_rps(
        64
    )
    assert 0.3 < ratio < 0.6


@pytest.mark.parametrize("batch", [0.5, 3.0, 10.0, 40.0, 100.0, 300.0])
def test_batch_for_step_inverts_the_step_curve(batch: float) -> None:
    curve = StepCurve.prior(H100, CONV, alpha=1.3, beta=0.8)
    assert curve.batch_for_step(curve.step_s(batch)) == pytest.approx(batch, rel=1e-9)


def test_batch_for_step_below_the_idle_step_is_zero() -> None:
    curve = StepCurve.prior(H100, CONV)
    assert curve.batch_for_step(curve.a_s * 0.5) == 0.0


@pytest.mark.parametrize("rps", [0.5, 2.0, 8.0, 15.0])
def test_concurrency_satisfies_littles_law(rps: float) -> None:
    curve = StepCurve.prior(H100, CONV)
    c = curve.concurrency(rps, 256)
    assert c == pytest.approx(rps * curve.output_tokens * curve.step_s(c), rel=1e-9)


def test_concurrency_is_capped_by_the_batch_when_demand_exceeds_capacity() -> None:
    curve = StepCurve.prior(H100, CONV)
    assert curve.concurrency(curve.capacity_rps(32) * 2, 32) == 32.0
    assert curve.concurrency(0.0, 32) == 0.0


@pytest.mark.parametrize(
    ("utilization", "expected"),
    [(0.0, 0.0), (0.3, 0.0), (1.0, math.inf), (1.5, math.inf)],
)
def test_queue_quantile_at_the_extremes(utilization: float, expected: float) -> None:
    assert queue_quantile_s(utilization, 64, 10.0, 0.99) == expected


def test_queue_quantile_grows_with_utilisation_and_is_larger_for_fewer_slots() -> None:
    loads = [0.85, 0.9, 0.95, 0.99]
    waits = [queue_quantile_s(u, 64, 10.0, 0.99) for u in loads]
    assert waits == sorted(waits) and waits[0] < waits[-1]
    assert queue_quantile_s(0.9, 4, 10.0, 0.99) > queue_quantile_s(0.9, 64, 10.0, 0.99)


def test_queue_quantile_follows_the_exponential_tail() -> None:
    # P(W > t) = P(wait)·exp(-(μ - λ)t): the p99 lies ln(10)/(μ - λ) beyond the p90.
    u, rate = 0.97, 10.0
    gap = queue_quantile_s(u, 16, rate, 0.99) - queue_quantile_s(u, 16, rate, 0.9)
    assert gap == pytest.approx(math.log(10) / (rate * (1 - u)))


def test_predictions_improve_with_replicas_and_break_past_capacity() -> None:
    curve = StepCurve.prior(H100, CONV)
    cal = Calibration()
    demand = 3.5 * curve.capacity_rps(64)
    preds = [predict(curve, cal, n, 64, demand, 0.99) for n in range(1, 9)]
    assert all(
        math.isinf(p.ttft_s) for p in preds[:3]
    )  # 1–3 replicas: the queue grows without bound
    finite = [p.ttft_s for p in preds[3:]]
    assert finite == sorted(finite, reverse=True)
    assert [p.utilization for p in preds] == sorted((p.utilization for p in preds), reverse=True)


def test_smaller_batch_gives_lower_itl_and_less_capacity() -> None:
    curve = StepCurve.prior(H100, DECODE)
    cal = Calibration(itl_tail=4.0)  # bursts fill whatever batch there is
    big, small = (predict(curve, cal, 2, b, 20.0, 0.99) for b in (256, 64))
    assert small.latency(LatencyMetric.ITL) < big.latency(LatencyMetric.ITL)
    assert small.capacity_rps < big.capacity_rps


def test_zero_replicas_cannot_serve_any_demand() -> None:
    curve = StepCurve.prior(H100, CONV)
    assert math.isinf(predict(curve, Calibration(), 0, 64, 1.0, 0.99).ttft_s)
    assert predict(curve, Calibration(), 0, 64, 0.0, 0.99).utilization == 0.0


def feed(
    truth: StepCurve, prior: StepCurve, batches: list[float], stats: FitStats | None = None
) -> FitStats:
    stats = stats or FitStats()
    for i, b in enumerate(batches):
        stats = update_fit(stats, prior, b, truth.step_s(b), now=float(i * 15))
    return stats


def test_fit_without_observations_is_the_prior() -> None:
    assert fit_coefficients(FitStats()) == (1.0, 1.0)


@pytest.mark.parametrize(("alpha", "beta"), [(1.5, 1.5), (0.7, 0.7), (1.0, 2.0), (2.0, 1.0)])
def test_fit_converges_to_a_service_slower_or_faster_than_the_prior(
    alpha: float, beta: float
) -> None:
    prior = StepCurve.prior(H100, CONV)
    truth = StepCurve.prior(H100, CONV, alpha, beta)
    stats = feed(truth, prior, [4, 16, 48, 96, 160] * 40)
    fitted = StepCurve.fitted(H100, CONV, stats)
    for b in (8, 64, 200):
        assert fitted.step_s(b) == pytest.approx(truth.step_s(b), rel=0.05)


def test_fit_on_thin_data_moves_only_part_way_from_the_prior() -> None:
    prior = StepCurve.prior(H100, CONV)
    truth = StepCurve.prior(H100, CONV, 2.0, 2.0)
    alpha, beta = fit_coefficients(feed(truth, prior, [40.0]))
    assert 1.1 < alpha < 1.5 and 1.1 < beta < 1.5


def test_one_operating_point_reads_as_uniformly_slower_pods() -> None:
    prior = StepCurve.prior(H100, CONV)
    truth = StepCurve.prior(H100, CONV, 1.6, 1.6)
    fitted = StepCurve.fitted(H100, CONV, feed(truth, prior, [30.0] * 200))
    for b in (1, 64, 256):  # extrapolated away from the one batch observed
        assert fitted.step_s(b) == pytest.approx(truth.step_s(b), rel=0.05)


def test_fit_forgets_old_observations() -> None:
    prior = StepCurve.prior(H100, CONV)
    slow = StepCurve.prior(H100, CONV, 2.0, 2.0)
    stats = feed(slow, prior, [16, 64, 128] * 30)
    # Three hours later the pods run at the prior's speed again (a new engine image).
    later = stats.updated_at or 0.0
    for i, b in enumerate([16, 64, 128] * 30):
        stats = update_fit(stats, prior, b, prior.step_s(b), now=later + 3 * 3600 + i * 15)
    alpha, beta = fit_coefficients(stats)
    assert alpha == pytest.approx(1.0, abs=0.1) and beta == pytest.approx(1.0, abs=0.1)


def test_fit_coefficients_stay_within_bounds() -> None:
    prior = StepCurve.prior(H100, CONV)
    absurd = StepCurve.prior(H100, CONV, 50.0, 50.0)
    assert fit_coefficients(feed(absurd, prior, [8, 64, 128] * 50)) == (4.0, 4.0)
