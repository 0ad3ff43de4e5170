"""The fleet simulation: determinism, routing, cold starts, rollouts, drains, live metrics."""

from __future__ import annotations

import numpy as np
import pytest

from sloscale import traces
from sloscale.scaling.policy import H100
from sloscale.scaling.snapshot import MetricsSnapshot, MetricsUnavailable
from sloscale.sim.fleet import Command, FleetConfig, FleetSimulation, FleetView, PodState
from sloscale.traces import Lengths

SHORT = Lengths(input_tokens=400, output_tokens=60)


class Script:
    """An autoscaler that issues fixed commands at fixed times and records what it saw."""

    name = "script"

    def __init__(self, commands: dict[float, Command], interval_s: float = 5.0) -> None:
        self.commands = commands
        self.interval_s = interval_s
        self.seen: list[tuple[float, MetricsSnapshot | MetricsUnavailable, int, int]] = []

    def tick(self, view: FleetView) -> Command:
        workload = view.workload()
        self.seen.append((view.now, view.metrics(), workload.ready, workload.starting))
        for at in sorted(self.commands):
            if abs(view.now - at) < 1e-9:
                return self.commands[at]
        return Command()


def test_runs_are_deterministic() -> None:
    trace = traces.constant(8.0, 300.0, SHORT, seed=1)

    def once() -> tuple[np.ndarray, float, int]:
        result = FleetSimulation(
            trace, Script({50.0: Command(replicas=2)}), FleetConfig(H100), 1, 64
        ).run()
        return result.ttft_s, result.gpu_seconds, result.generated_tokens

    a, b = once(), once()
    assert np.array_equal(a[0], b[0]) and a[1:] == b[1:]
    assert not np.isnan(a[0]).any()


def test_fast_forwarded_decode_runs_match_single_steps() -> None:
    # Decode runs are applied lazily in closed form; the per-step path is the reference.
    trace = traces.constant(25.0, 240.0, Lengths(1155, 211), seed=8)
    fast = FleetSimulation(
        trace, Script({60.0: Command(replicas=3)}), FleetConfig(H100), 2, 64
    ).run()
    slow_sim = FleetSimulation(
        trace, Script({60.0: Command(replicas=3)}), FleetConfig(H100), 2, 64, single_steps=True
    )
    slow = slow_sim.run()
    assert fast.generated_tokens == slow.generated_tokens
    assert fast.gpu_seconds == pytest.approx(slow.gpu_seconds)
    for q in (0.5, 0.9, 0.99):
        assert np.quantile(fast.ttft_s, q) == pytest.approx(np.quantile(slow.ttft_s, q), rel=0.02)
        assert np.quantile(fast.e2e_s, q) == pytest.approx(np.quantile(slow.e2e_s, q), rel=0.02)


def test_router_balances_outstanding_requests_across_ready_pods() -> None:
    trace = traces.constant(30.0, 120.0, SHORT, seed=2)
    sim = FleetSimulation(trace, Script({}), FleetConfig(H100), 3, 64)
    sim.run()
    served = [p.engine.finished_total for p in sim.pods]
    assert sum(served) == len(trace)
    assert max(served) - min(served) < 0.1 * len(trace) / 3


def test_new_replicas_serve_only_after_the_cold_start_and_are_billed_from_creation() -> None:
    trace = traces.constant(4.0, 400.0, SHORT, seed=3)
    script = Script({10.0: Command(replicas=2)})
    sim = FleetSimulation(
        trace, script, FleetConfig(H100, cold_start_s=120.0), 1, 64, horizon_s=400.0
    )
    result = sim.run()
    ready = {t: r for t, _, r, _ in script.seen}
    starting = {t: s for t, _, _, s in script.seen}
    assert ready[125.0] == 1 and starting[125.0] == 1
    assert ready[135.0] == 2
    new_pod = sim.pods[1]
    assert new_pod.created_s == 10.0 and new_pod.ready_s == 130.0
    assert new_pod.engine.finished_total > 0
    assert result.gpu_seconds == pytest.approx(400.0 + 390.0)


def test_batch_change_is_a_rolling_restart_that_never_drops_below_ready() -> None:
    trace = traces.constant(6.0, 400.0, SHORT, seed=4)
    script = Script({30.0: Command(max_num_seqs=128)}, interval_s=5.0)
    config = FleetConfig(H100, cold_start_s=60.0, timeline_interval_s=5.0)
    sim = FleetSimulation(trace, script, config, 4, 64, horizon_s=400.0)
    result = sim.run()
    assert result.batch_changes == 1
    assert min(r for _, _, r, _ in script.seen) >= 4  # never below the four ready pods
    live = [p for p in sim.pods if p.state is not PodState.GONE]
    assert len(live) == 4 and all(p.batch == 128 for p in live)
    assert all(p.batch == 64 for p in sim.pods if p.state is PodState.GONE)
    # Surge of one pod: four waves of one cold start each.
    assert max(p.ready_s for p in sim.pods) == pytest.approx(30.0 + 4 * 60.0)
    assert not np.isnan(result.e2e_s).any()


def test_scale_down_drains_in_flight_requests() -> None:
    trace = traces.constant(40.0, 200.0, Lengths(2000, 400), seed=5)
    sim = FleetSimulation(trace, Script({100.0: Command(replicas=1)}), FleetConfig(H100), 3, 256)
    result = sim.run()
    assert not np.isnan(result.e2e_s).any()  # nothing was dropped
    gone = [p for p in sim.pods if p.state is PodState.GONE]
    assert len(gone) == 2
    for pod in gone:
        assert pod.ended_s is not None and pod.ended_s > 100.0  # it drained work first
        assert not pod.engine.has_work


def test_metrics_are_seen_through_scrapes_and_rate_windows() -> None:
    trace = traces.constant(10.0, 600.0, SHORT, seed=6)
    script = Script({}, interval_s=15.0)
    config = FleetConfig(H100, scrape_interval_s=15.0, rate_window_s=60.0, metrics_lag_s=20.0)
    result = FleetSimulation(trace, script, config, 2, 64).run()
    by_time = {t: m for t, m, _, _ in script.seen}
    # Nothing visible before the first scrape clears the lag; one sample is not yet a rate.
    assert isinstance(by_time[15.0], MetricsUnavailable)
    snap = by_time[300.0]
    assert isinstance(snap, MetricsSnapshot)
    assert snap.taken_at <= 300.0 - 20.0 and snap.pods_reporting == 2
    assert snap.requests_per_s == pytest.approx(10.0, rel=0.2)
    assert snap.generation_tokens_per_s == pytest.approx(600.0, rel=0.2)
    # The histogram's p99 lands in the same vLLM bucket as the ground truth's.
    true_p99 = float(
        np.quantile(result.ttft_s[(trace.arrival_s > 220) & (trace.arrival_s < 280)], 0.99)
    )
    hist_p99 = snap.ttft.quantile(0.99)
    assert hist_p99 is not None
    assert snap.ttft.bucket_width_at(true_p99) == snap.ttft.bucket_width_at(hist_p99)


def test_requests_wait_in_the_router_while_no_pod_is_ready() -> None:
    # Scaled to zero at t=5, back to one at t=100: the pod is ready at t=160 (cold start 60 s).
    trace = traces.constant(5.0, 300.0, SHORT, seed=7)
    config = FleetConfig(H100, cold_start_s=60.0, min_replicas=0)
    script = Script({5.0: Command(replicas=0), 100.0: Command(replicas=1)})
    result = FleetSimulation(trace, script, config, 1, 64).run()
    waiting = (trace.arrival_s > 10.0) & (trace.arrival_s < 150.0)
    assert waiting.sum() > 100
    assert np.all(result.ttft_s[waiting] >= 160.0 - trace.arrival_s[waiting])
    assert not np.isnan(result.ttft_s).any()  # none lost: the router held them
