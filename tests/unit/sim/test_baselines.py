"""The peers behave as their documentation says, on synthetic steps through the real fleet."""

from __future__ import annotations

import math

import pytest

from sloscale import traces
from sloscale.scaling.policy import H100
from sloscale.sim.baselines import (
    HpaBehavior,
    HpaConcurrency,
    KedaQueue,
    KnativeKpa,
    LlmdSloAware,
    StaticPeak,
    _HpaCore,
)
from sloscale.sim.capacity import Capacity
from sloscale.sim.fleet import Command, FleetConfig, FleetSimulation, FleetView
from sloscale.traces import Lengths

SHORT = Lengths(input_tokens=400, output_tokens=60)
CAPACITY = Capacity(
    batch=64, max_rps=20.0, concurrency_at_max=8.0, concurrency_at_80=6.0, queue_at_max=1.0
)


class Recording:
    """Wraps an autoscaler and records (time, desired replicas it asked for)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.name = inner.name  # type: ignore[attr-defined]
        self.interval_s = inner.interval_s  # type: ignore[attr-defined]
        self.asked: list[tuple[float, int | None]] = []

    def tick(self, view: FleetView) -> Command:
        command = self.inner.tick(view)  # type: ignore[attr-defined]
        self.asked.append((view.now, command.replicas))
        return command


@pytest.mark.parametrize(
    ("total", "current", "expected"),
    [
        (60.0, 10, 10),  # ratio 1.0: hold
        (65.0, 10, 10),  # ratio 1.083: inside the 10 % tolerance
        (75.0, 10, 13),  # ratio 1.25: ceil(75 / 6)
        (200.0, 2, 6),  # ceil(200/6) = 34, limited to max(2 + 4, 2 * 2) = 6
    ],
)
def test_hpa_ratio_law_tolerance_and_scale_up_limit(
    total: float, current: int, expected: int
) -> None:
    core = _HpaCore(HpaBehavior())
    assert core.desired(0.0, current, total, 6.0) == expected


def test_hpa_scale_down_waits_for_the_stabilization_window() -> None:
    core = _HpaCore(HpaBehavior())
    assert core.desired(0.0, 10, 60.0, 6.0) == 10
    # Load falls to a third: the recommendation of 10 from t=0 holds for 300 s.
    assert core.desired(15.0, 10, 20.0, 6.0) == 10
    assert core.desired(299.0, 10, 20.0, 6.0) == 10
    assert core.desired(316.0, 10, 20.0, 6.0) == 4


def test_hpa_does_not_scale_down_inside_its_stabilization_window_in_the_fleet() -> None:
    # 40 req/s for 5 minutes, then 4 req/s: the HPA keeps its replicas 300 s after the drop.
    trace = traces.poisson([traces.Segment(300.0, 40.0), traces.Segment(600.0, 4.0)], SHORT, seed=1)
    hpa = Recording(HpaConcurrency(CAPACITY))
    FleetSimulation(trace, hpa, FleetConfig(H100), 4, 64).run()
    before = max(r for t, r in hpa.asked if 240 <= t <= 300 and r is not None)
    inside = [r for t, r in hpa.asked if 300 < t < 300 + 300 - 15 and r is not None]
    after = [r for t, r in hpa.asked if t >= 300 + 300 + 60 and r is not None]
    assert min(inside) >= before - 0  # no scale-down inside the window
    assert after and min(after) < before  # and it does scale down once the window has passed


def test_kpa_enters_panic_within_the_panic_window_on_a_burst() -> None:
    # 6 req/s on two pods, then 3x for a minute.
    trace = traces.burst(
        6.0, 18.0, start_s=200.0, length_s=60.0, duration_s=400.0, lengths=SHORT, seed=2
    )
    capacity = Capacity(
        batch=64, max_rps=8.0, concurrency_at_max=3.0, concurrency_at_80=2.4, queue_at_max=0.5
    )
    kpa = KnativeKpa(capacity)
    recording = Recording(kpa)
    panic_started: list[float] = []

    class Watch:
        name = "kpa"
        interval_s = kpa.interval_s

        def tick(self, view: FleetView) -> Command:
            command = recording.tick(view)
            if kpa.panicking and not panic_started:
                panic_started.append(view.now)
            return command

    FleetSimulation(trace, Watch(), FleetConfig(H100), 2, 64).run()
    assert panic_started, "a 3x burst must trigger panic mode"
    assert 200.0 < panic_started[0] <= 200.0 + 6.0 + kpa.interval_s
    # Never scales down while panicking: asked replicas do not fall during the burst.
    during = [r for t, r in recording.asked if panic_started[0] <= t <= 260.0 and r is not None]
    assert all(b >= a for a, b in zip(during, during[1:], strict=False))


def test_kpa_stays_calm_at_steady_load() -> None:
    trace = traces.constant(6.0, 300.0, SHORT, seed=3)
    capacity = Capacity(
        batch=64, max_rps=8.0, concurrency_at_max=3.0, concurrency_at_80=2.4, queue_at_max=0.5
    )
    kpa = KnativeKpa(capacity)
    FleetSimulation(trace, kpa, FleetConfig(H100), 2, 64).run()
    assert kpa.panic_entries == 0


def test_keda_threshold_follows_capacity_and_target() -> None:
    keda = KedaQueue(CAPACITY, target_s=1.0)
    assert keda.threshold == pytest.approx(10.0)
    assert KedaQueue(CAPACITY, target_s=0.05).threshold == 1.0  # never below one request


def test_keda_scales_to_min_on_an_empty_queue_after_stabilization() -> None:
    trace = traces.constant(2.0, 900.0, SHORT, seed=4)
    keda = Recording(KedaQueue(CAPACITY, target_s=1.0))
    FleetSimulation(trace, keda, FleetConfig(H100), 3, 64).run()
    asked = dict(keda.asked)
    assert asked[15.0] == 3  # held by stabilization
    assert min(r for t, r in keda.asked if t > 330 and r is not None) == 1


def test_llmd_holds_inside_its_hysteresis_band_and_scales_outside() -> None:
    llmd = LlmdSloAware(ttft_slo_s=1.0)
    assert (llmd.low, llmd.high) == (0.40, 0.55)
    # Light load: p90 TTFT far below half the SLO -> signal < 0.40 -> scale down (after 300 s).
    trace = traces.constant(2.0, 700.0, SHORT, seed=5)
    recording = Recording(llmd)
    FleetSimulation(trace, recording, FleetConfig(H100), 3, 64).run()
    assert llmd.signal is not None and llmd.signal < 0.40
    assert all(r == 3 for t, r in recording.asked if t < 300)
    assert min(r for _, r in recording.asked if r is not None) == 1


def test_static_never_moves() -> None:
    trace = traces.step(2.0, 20.0, 100.0, 300.0, SHORT, seed=6)
    static = Recording(StaticPeak(3))
    result = FleetSimulation(trace, static, FleetConfig(H100), 3, 64).run()
    assert {r for _, r in static.asked} == {3}
    assert result.scale_events == 0
    assert math.isclose(result.gpu_seconds, 3 * 300.0, rel_tol=0.01)
