"""The pure control law: `decide(observation, policy, state, now) -> (decision, new_state)`.

Nothing here reads a clock, talks to Kubernetes or Prometheus, or keeps state on an object: the
live operator and the fleet simulator call the same function with the same immutable types
(enforced by import-linter). Start with `decide.py`, whose docstring lists the stages in order.
"""

from sloscale.scaling.decide import decide
from sloscale.scaling.decision import Action, Decision, ObjectiveReport, StageOutcome
from sloscale.scaling.policy import (
    A100,
    H100,
    PROFILES,
    Batching,
    EngineProfile,
    LatencyMetric,
    LatencyTarget,
    Objective,
    ObjectiveKind,
    Policy,
    RateLimit,
)
from sloscale.scaling.reasons import Reason, Stage
from sloscale.scaling.snapshot import (
    Histogram,
    MetricsSnapshot,
    MetricsUnavailable,
    Observation,
    Unavailability,
    WorkloadObservation,
)
from sloscale.scaling.state import ControlState

__all__ = [
    "A100",
    "H100",
    "PROFILES",
    "Action",
    "Batching",
    "ControlState",
    "Decision",
    "EngineProfile",
    "Histogram",
    "LatencyMetric",
    "LatencyTarget",
    "MetricsSnapshot",
    "MetricsUnavailable",
    "Objective",
    "ObjectiveKind",
    "ObjectiveReport",
    "Observation",
    "Policy",
    "RateLimit",
    "Reason",
    "Stage",
    "StageOutcome",
    "Unavailability",
    "WorkloadObservation",
    "decide",
]
