"""The oracle: the clairvoyant minimum replicas per window that meets the objective.

It is the lower bound the bench compares every policy's cost with. What it assumes, exactly:

1. **Requirement per window, in sequence.** The oracle simulates the fleet window by window
   with the real router and engine model. At each window's start it forks the simulation (the
   queues and batches carried over from the windows before included), tries replica counts on
   the copies — new pods ready at once, removed pods draining — and keeps the least count whose
   requests (by arrival) meet the objective's percentile, judged once each request has had
   `target` seconds to reach it. The search starts from the previous window's count and walks
   up or down, so it visits few counts per window. The main simulation then continues with
   that count. It is greedy: a window is never over-provisioned to spare a later one.
2. **Cold starts are paid, not waited for.** The oracle knows the future: a replica needed at
   the start of window w is created one cold start earlier and billed from then. The schedule
   `r_w >= n_w` minimises `sum(r_w * window) + cold_start * sum(max(0, r_w - r_{w-1}))` by
   dynamic programming — so it keeps replicas through a dip shorter than a cold start rather
   than removing and recreating them.
3. **One batch size for the run**, the candidate with the cheapest schedule. Changing the batch
   is a rolling restart (a cold start per pod); the oracle does not do it mid-run.
4. It is then replayed through the same fleet simulation as every policy (`ScheduledOracle`): it
   scales up one cold start ahead and down at window ends. Where the replay misses a window
   that the isolated simulation met (a queue carried over, the router's state), that window's
   requirement is raised by one and the schedule re-planned, for a few rounds (`repair`). The
   replay of the last round is the oracle's reported run; a window still missed after the
   rounds stays missed and shows in its attainment.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sloscale.sim.fleet import Command, FleetConfig, FleetSimulation, FleetView, RunResult
from sloscale.sim.objective import BenchObjective, window_scores
from sloscale.traces import Trace

IntArray = npt.NDArray[np.int64]


class _Hold:
    name = "hold"
    interval_s = 1e9

    def tick(self, view: FleetView) -> Command:
        return Command()


@dataclass(frozen=True)
class OraclePlan:
    batch: int
    window_s: float
    required: IntArray  # n_w: the least replicas meeting the objective in window w
    schedule: IntArray  # r_w >= n_w, the cost-optimal schedule given cold starts
    planned_gpu_seconds: float
    evaluations: int  # window simulations run to find the requirements


def requirements(
    trace: Trace,
    objective: BenchObjective,
    config: FleetConfig,
    batch: int,
    horizon_s: float,
    progress: Callable[[int, int], None] | None = None,
    windows: int | None = None,
) -> tuple[IntArray, int]:
    """n_w for every window of the horizon (or the first `windows`), and how many window
    simulations it took (assumption 1)."""
    n_windows = max(1, math.ceil(horizon_s / objective.window_s))
    if windows is not None:
        n_windows = min(n_windows, windows)
    required = np.zeros(n_windows, dtype=np.int64)
    arrivals = trace.arrival_s
    sim = FleetSimulation(
        trace, _Hold(), config, max(1, config.min_replicas), batch, horizon_s=horizon_s
    )
    n = max(1, config.min_replicas)
    evaluations = 0

    def met(w: int, replicas: int) -> bool:
        nonlocal evaluations
        evaluations += 1
        start, end = w * objective.window_s, (w + 1) * objective.window_s
        lo, hi = np.searchsorted(arrivals, [start, end])
        if hi <= lo:
            return True
        trial = sim.fork()
        trial.resize_now(replicas, start)
        # A request not at the metric by arrival + target has missed it, whatever comes later.
        trial.advance(end + objective.target_s)
        values = objective.values(trial.result())[lo:hi]
        values = np.where(np.isnan(values), np.inf, values)
        k = max(0, math.ceil(objective.quantile * len(values)) - 1)
        return bool(np.partition(values, k)[k] <= objective.target_s)

    for w in range(n_windows):
        floor = max(1, config.min_replicas)
        if met(w, n):
            while n > floor and met(w, n - 1):
                n -= 1
        else:
            while n < config.max_replicas and not met(w, n + 1):
                n += 1
            n = min(n + 1, config.max_replicas)
        required[w] = n
        sim.resize_now(n, w * objective.window_s)
        sim.advance((w + 1) * objective.window_s)
        if progress is not None:
            progress(w + 1, n_windows)
    return required, evaluations


def cheapest_schedule(
    required: Sequence[int] | IntArray, window_s: float, cold_start_s: float
) -> tuple[IntArray, float]:
    """The schedule r_w >= required[w] minimising window time plus cold starts of added replicas.

    r_{-1} is taken as required[0] (the fleet starts warm, as every policy's does).
    """
    req = np.asarray(required, dtype=np.int64)
    top = int(max(req.max(), 1))
    levels = np.arange(top + 1)
    inf = math.inf
    cost = np.where(levels >= req[0], levels * window_s, inf)
    choice: list[npt.NDArray[np.int64]] = []
    for w in range(1, len(req)):
        # best previous level for each new level r: min over p of cost[p] + cold * max(0, r - p)
        add = cold_start_s * np.maximum(0, levels[:, None] - levels[None, :])
        total = cost[None, :] + add
        prev = np.argmin(total, axis=1)
        best = total[levels, prev]
        cost = np.where(levels >= req[w], best + levels * window_s, inf)
        choice.append(prev)
    r = int(np.argmin(cost))
    planned = float(cost[r])
    schedule = [r]
    for prev in reversed(choice):
        r = int(prev[r])
        schedule.append(r)
    return np.array(schedule[::-1], dtype=np.int64), planned


def plan(
    trace: Trace,
    objective: BenchObjective,
    config: FleetConfig,
    batches: Sequence[int],
    horizon_s: float,
    progress: Callable[[int, int], None] | None = None,
) -> OraclePlan:
    """Requirements for each candidate batch; the batch whose cheapest schedule costs least."""
    best: OraclePlan | None = None
    total_evals = 0
    for i, batch in enumerate(batches):

        def report(done: int, total: int, i: int = i) -> None:
            if progress is not None:
                progress(i * total + done, len(batches) * total)

        required, evals = requirements(trace, objective, config, batch, horizon_s, progress=report)
        total_evals += evals
        schedule, planned = cheapest_schedule(required, objective.window_s, config.cold_start_s)
        candidate = OraclePlan(batch, objective.window_s, required, schedule, planned, total_evals)
        if best is None or candidate.planned_gpu_seconds < best.planned_gpu_seconds:
            best = candidate
    assert best is not None
    return OraclePlan(
        best.batch,
        best.window_s,
        best.required,
        best.schedule,
        best.planned_gpu_seconds,
        total_evals,
    )


class ScheduledOracle:
    """Replays an `OraclePlan`: at time t it wants the planned replicas of the current window and
    of every window starting within one cold start, so new pods are ready when needed."""

    name = "oracle"
    interval_s = 1.0

    def __init__(self, oracle: OraclePlan, cold_start_s: float) -> None:
        self.plan = oracle
        self.cold_start_s = cold_start_s

    def replicas_at(self, t: float) -> int:
        sched = self.plan.schedule
        w = min(int(t // self.plan.window_s), len(sched) - 1)
        last = min(int((t + self.cold_start_s) // self.plan.window_s), len(sched) - 1)
        return int(max(sched[w : last + 1]))

    def tick(self, view: FleetView) -> Command:
        return Command(replicas=self.replicas_at(view.now), max_num_seqs=self.plan.batch)


def window_requirement(
    trace: Trace, objective: BenchObjective, config: FleetConfig, batch: int
) -> int:
    """The least warm replicas meeting the objective in the first window."""
    required, _ = requirements(trace, objective, config, batch, objective.window_s, windows=1)
    return int(required[0])


def repair(
    oracle: OraclePlan,
    trace: Trace,
    objective: BenchObjective,
    config: FleetConfig,
    horizon_s: float,
    rounds: int = 3,
    progress: Callable[[float], None] | None = None,
) -> tuple[OraclePlan, RunResult]:
    """Replay the plan; raise the requirement of windows the replay missed; re-plan (assumption 4)."""
    required = oracle.required.copy()
    current = oracle
    for round_no in range(rounds + 1):
        sim = FleetSimulation(
            trace,
            ScheduledOracle(current, config.cold_start_s),
            config,
            max(1, int(current.schedule[0])),
            current.batch,
            horizon_s=horizon_s,
        )
        result = sim.run(progress)
        scores = window_scores(objective, result.arrival_s, objective.values(result), horizon_s)
        missed = np.flatnonzero(scores.counted & ~scores.met)
        if not len(missed) or round_no == rounds:
            return current, result
        required[missed] += 1
        required = np.minimum(required, config.max_replicas)
        schedule, planned = cheapest_schedule(required, objective.window_s, config.cold_start_s)
        current = OraclePlan(
            current.batch, current.window_s, required.copy(), schedule, planned, current.evaluations
        )
    raise AssertionError("unreachable")
