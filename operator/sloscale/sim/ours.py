"""Our control law in the simulator: the operator's own `sloscale.scaling.decide`, unchanged.

The adapter does what the reconcile loop does live and nothing more: it builds the `Observation`
from the queried metrics and the workload, calls `decide`, keeps the returned state for the next
tick, and hands the decision's replicas and batch to the Deployment. Times are shifted to an
epoch (simulated second 0 = `EPOCH`) so the law sees realistic timestamps.
Each tick is also logged (`log`, written by `sloscale bench --decisions`): what the law saw and
decided, every stage's reason, next to the demand the simulator really offered — the record for
checking the law's beliefs (demand, capacity, the percentile) against the ground truth.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from sloscale.scaling import decide
from sloscale.scaling.decision import Decision
from sloscale.scaling.policy import Policy
from sloscale.scaling.snapshot import MetricsSnapshot, Observation
from sloscale.scaling.state import ControlState
from sloscale.sim.fleet import Command, FleetView

EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class SloScaleLaw:
    """The operator's control law, ticking every `interval_s` (the operator's default 15 s)."""

    name = "sloscale"

    def __init__(
        self,
        policy: Policy,
        initial_replicas: int,
        initial_batch: int | None,
        interval_s: float = 15.0,
    ):
        self.policy = policy
        self.interval_s = interval_s
        self.state = ControlState.initial(EPOCH, initial_replicas, initial_batch)
        self.reasons: Counter[str] = Counter()
        self.last: Decision | None = None
        self.log: list[dict[str, object]] = []

    def tick(self, view: FleetView) -> Command:
        metrics = view.metrics()
        if isinstance(metrics, MetricsSnapshot):
            metrics = replace(metrics, taken_at=metrics.taken_at + EPOCH)
        observation = Observation(metrics, view.workload())
        decision, self.state = decide(observation, self.policy, self.state, view.now + EPOCH)
        self.last = decision
        self.reasons[decision.reason] += 1
        self.log.append(log_entry(view, observation, decision))
        return Command(replicas=decision.replicas, max_num_seqs=decision.max_num_seqs)


def log_entry(view: FleetView, observation: Observation, decision: Decision) -> dict[str, object]:
    """One tick of the decision log: the workload seen, the decision, each stage's reason and
    message, and the demand really offered over the metrics' rate window."""
    workload = observation.workload
    metrics = observation.metrics
    window = metrics.window_s if isinstance(metrics, MetricsSnapshot) else 60.0
    return {
        "t": view.now,
        "offered_rps": view.offered_rps(window),
        "replicas": workload.replicas,
        "ready": workload.ready,
        "starting": workload.starting,
        "max_num_seqs": workload.max_num_seqs,
        "decided_replicas": decision.replicas,
        "decided_max_num_seqs": decision.max_num_seqs,
        "action": decision.action.value,
        "reason": decision.reason,
        "observed_s": decision.objective.observed_s,
        "capacity_rps_per_replica": decision.capacity_rps_per_replica,
        "cold_start_s": decision.cold_start_s,
        "stages": {str(s.stage): f"{s.reason}: {s.message}" for s in decision.stages},
    }
