"""The oracle: per-window requirements, the cheapest schedule given cold starts, its replay."""

from __future__ import annotations

import numpy as np
import pytest

from sloscale import traces
from sloscale.scaling.policy import H100
from sloscale.sim.fleet import FleetConfig, FleetSimulation
from sloscale.sim.objective import BenchObjective, window_scores
from sloscale.sim.oracle import OraclePlan, ScheduledOracle, cheapest_schedule, repair, requirements
from sloscale.traces import Lengths


@pytest.mark.parametrize(
    ("required", "cold", "expected"),
    [
        ([2, 1, 2], 120.0, [2, 2, 2]),  # a one-window dip is cheaper to ride out than to restart
        ([3, 1, 1, 1, 1, 3], 60.0, [3, 1, 1, 1, 1, 3]),  # a long dip pays for the cold start
        ([1, 4, 1], 0.0, [1, 4, 1]),  # free cold starts: follow the requirement exactly
        ([2, 2, 5, 5, 1], 30.0, [2, 2, 5, 5, 1]),
    ],
)
def test_cheapest_schedule(required: list[int], cold: float, expected: list[int]) -> None:
    schedule, cost = cheapest_schedule(required, 60.0, cold)
    assert schedule.tolist() == expected
    assert np.all(schedule >= np.array(required))
    added = sum(max(0, b - a) for a, b in zip(expected, expected[1:], strict=False))
    assert cost == pytest.approx(60.0 * sum(expected) + cold * added)


def _replay(trace: traces.Trace, schedule: list[int], config: FleetConfig, horizon: float) -> float:
    plan = OraclePlan(256, 60.0, np.array(schedule), np.array(schedule), 0.0, 0)
    result = FleetSimulation(
        trace,
        ScheduledOracle(plan, config.cold_start_s),
        config,
        schedule[0],
        256,
        horizon_s=horizon,
    ).run()
    return window_scores(OBJECTIVE, result.arrival_s, result.ttft_s, horizon).met


OBJECTIVE = BenchObjective.parse("p99-ttft<=0.5s/1m")
STEP = traces.step(10.0, 60.0, 180.0, 360.0, Lengths(1000, 200), seed=1)


def test_requirements_follow_a_load_step_and_are_minimal() -> None:
    config = FleetConfig(H100, cold_start_s=0.0)
    required, evaluations = requirements(STEP, OBJECTIVE, config, 256, 360.0)
    assert len(required) == 6 and evaluations >= 6
    assert required[:3].max() < required[3:].min()
    # Replayed as planned, every window is met; one replica fewer in window 4 misses it.
    assert _replay(STEP, required.tolist(), config, 360.0).all()
    fewer = required.tolist()
    fewer[4] -= 1
    met = _replay(STEP, fewer, config, 360.0)
    assert not met[4] and met[:4].all()


def test_scheduled_oracle_starts_pods_one_cold_start_ahead() -> None:
    plan = OraclePlan(64, 60.0, np.array([1, 1, 1, 3, 1]), np.array([1, 1, 1, 3, 1]), 0.0, 0)
    oracle = ScheduledOracle(plan, cold_start_s=90.0)
    assert oracle.replicas_at(0.0) == 1
    assert oracle.replicas_at(89.0) == 1
    assert oracle.replicas_at(91.0) == 3  # window 3 starts at 180 s, 90 s ahead
    assert oracle.replicas_at(200.0) == 3
    assert oracle.replicas_at(240.0) == 1


def test_replayed_oracle_meets_a_step_with_pods_ready_in_time() -> None:
    # With a 90 s cold start the pods for the step are created 90 s ahead and billed from then.
    config = FleetConfig(H100, cold_start_s=90.0)
    required, _ = requirements(STEP, OBJECTIVE, config, 256, 360.0)
    schedule, cost = cheapest_schedule(required, 60.0, 90.0)
    plan = OraclePlan(256, 60.0, required, schedule, cost, 0)
    repaired, result = repair(plan, STEP, OBJECTIVE, config, 360.0)
    assert window_scores(OBJECTIVE, result.arrival_s, result.ttft_s, 360.0).attainment == 1.0
    assert result.gpu_seconds == pytest.approx(repaired.planned_gpu_seconds, rel=0.03)
