"""Feedback from observed percentiles into the model: service parts only, bursts before slowness."""

from __future__ import annotations

import pytest
from scaling_situations import snapshot

from sloscale.scaling.calibrate import FACTOR_BOUNDS, calibrate
from sloscale.scaling.capacity import StepCurve
from sloscale.scaling.policy import H100
from sloscale.scaling.snapshot import MetricsSnapshot
from sloscale.scaling.state import Calibration, Mix

MIX = Mix(1024.0, 256.0)
CURVE = StepCurve.prior(H100, MIX)


def settle_on(
    curve: StepCurve, snap: MetricsSnapshot, batch: int = 256, ticks: int = 30
) -> Calibration:
    cal = Calibration()
    for _ in range(ticks):
        cal = calibrate(cal, curve, snap, batch, 0.99)
    return cal


def settle(snap: MetricsSnapshot, batch: int = 256) -> Calibration:
    return settle_on(CURVE, snap, batch)


@pytest.mark.parametrize(
    ("c", "ttft_scale", "itl_scale"), [(20.0, 1.0, 1.0), (60.0, 2.0, 1.5), (5.0, 0.8, 3.0)]
)
def test_the_calibrated_model_reproduces_the_observed_percentiles(
    c: float, ttft_scale: float, itl_scale: float
) -> None:
    step, prefill = CURVE.step_s(c), CURVE.prefill_s(c)
    snap = snapshot(
        rps=2.0,
        running=c,
        ttft=(prefill * ttft_scale * 0.7, prefill * ttft_scale),
        itl=(step, step * itl_scale),
    )
    cal = settle(snap)
    observed_ttft, observed_itl = snap.ttft.quantile(0.99), snap.itl.quantile(0.99)
    assert cal.ttft * prefill == pytest.approx(observed_ttft, rel=0.02)
    assert cal.itl * CURVE.step_s(min(256.0, cal.itl_tail * c)) == pytest.approx(
        observed_itl, rel=0.02
    )


def test_slow_prefill_raises_the_ttft_factor() -> None:
    c = 20.0
    slow = 3 * CURVE.prefill_s(c)
    cal = settle(snapshot(rps=2.0, running=c, ttft=(slow * 0.6, slow)))
    assert cal.ttft == pytest.approx(3.0, rel=0.2)


def test_queueing_is_not_read_as_slow_prefill() -> None:
    long_prompts = StepCurve.prior(H100, Mix(8192.0, 256.0))
    c = 20.0
    prefill = long_prompts.prefill_s(c)  # ≈ 0.23 s
    ttft = (prefill, prefill + 0.5)
    # The queue-time histogram proves p99 ≥ 0.5 s: the service part is as modelled.
    queued = snapshot(rps=2.0, running=c, ttft=ttft, queue=(0.3, 0.6), prompt_tokens=8192.0)
    unqueued = snapshot(rps=2.0, running=c, ttft=ttft, prompt_tokens=8192.0)
    assert settle_on(long_prompts, queued).ttft == pytest.approx(1.0, abs=0.35)
    assert settle_on(long_prompts, unqueued).ttft > 2.0


def test_itl_tail_is_explained_by_bursts_first() -> None:
    c = 10.0
    burst = CURVE.step_s(4 * c)  # p99 ITL is the step of four times the mean concurrency
    cal = settle(snapshot(rps=1.0, running=c, itl=(CURVE.step_s(c), burst)))
    assert cal.itl_tail > 2.0
    assert cal.itl == pytest.approx(1.0, abs=0.2)


def test_itl_beyond_a_full_batch_is_slowness() -> None:
    c = 10.0
    beyond = 2 * CURVE.step_s(32)
    cal = settle(snapshot(rps=1.0, running=c, itl=(CURVE.step_s(c), beyond)), batch=32)
    assert cal.itl_tail == pytest.approx(32 / c, rel=0.1)
    assert cal.itl == pytest.approx(2.0, rel=0.3)


def test_idle_pods_teach_nothing() -> None:
    assert (
        calibrate(Calibration(), CURVE, snapshot(rps=0.1, running=0.2, ttft=(5.0, 9.0)), 64, 0.99)
        == Calibration()
    )


def test_factors_stay_within_bounds() -> None:
    absurd = snapshot(rps=2.0, running=20.0, ttft=(100.0, 500.0))
    assert settle(absurd).ttft <= FACTOR_BOUNDS[1]


def test_one_odd_scrape_moves_the_factor_only_partly() -> None:
    c = 20.0
    slow = 4 * CURVE.prefill_s(c)
    once = calibrate(
        Calibration(), CURVE, snapshot(rps=2.0, running=c, ttft=(slow * 0.6, slow)), 256, 0.99
    )
    assert 1.0 < once.ttft < 2.0
