"""Every stage name and reason the control law can give, in one place.

Conditions, events and the operator's own metrics are derived from these values, so they are
CamelCase, stable, and never built ad hoc at a call site. A reason says *why* a stage produced its
value; the accompanying message (built by the stage) carries the numbers.
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    """The pipeline stages of `decide`, in the order they run."""

    ASSESS = "AssessMetrics"
    OBSERVE = "Observe"
    EVALUATE = "EvaluateObjective"
    FORECAST = "ForecastDemand"
    RECOMMEND = "Recommend"
    BATCH = "BatchGate"
    CLAMP = "Clamp"
    TOLERANCE = "Tolerance"
    STABILIZE = "Stabilize"
    RATE_LIMIT = "RateLimit"
    SCALE_DOWN_SAFETY = "ScaleDownSafety"
    FEASIBILITY = "Feasibility"


class Reason(StrEnum):
    """Why a stage produced its value."""

    # assess metrics
    FRESH = "Fresh"
    ZERO_TRAFFIC = "ZeroTraffic"
    METRICS_UNAVAILABLE = "MetricsUnavailable"
    # observe
    STATE_UPDATED = "StateUpdated"
    # evaluate objective
    OBJECTIVE_MET = "ObjectiveMet"
    OBJECTIVE_VIOLATED = "ObjectiveViolated"
    NO_REQUESTS = "NoRequests"
    # forecast
    RISING_DEMAND = "RisingDemand"
    STEADY_DEMAND = "SteadyDemand"
    # recommend
    QUEUEING_DELAY = "QueueingDelay"
    PER_TOKEN_LATENCY = "PerTokenLatency"
    FORECAST_DEMAND = "ForecastDemand"
    THROUGHPUT_TARGET = "ThroughputTarget"
    MODEL_CORRECTION = "ModelCorrection"
    PODS_STARTING = "PodsStarting"
    EXCESS_CAPACITY = "ExcessCapacity"
    OBJECTIVE_HELD = "ObjectiveHeld"
    # batch gate
    BATCH_UNCHANGED = "BatchUnchanged"
    BATCHING_DISABLED = "BatchingDisabled"
    BATCH_COOLDOWN = "BatchCooldown"
    ROLLOUT_IN_PROGRESS = "RolloutInProgress"
    BATCH_HYSTERESIS = "BatchHysteresis"
    SMALLER_BATCH = "SmallerBatch"
    LARGER_BATCH = "LargerBatch"
    BATCH_OUT_OF_BOUNDS = "BatchOutOfBounds"
    # clamp
    WITHIN_BOUNDS = "WithinBounds"
    AT_MAX_REPLICAS = "AtMaxReplicas"
    AT_MIN_REPLICAS = "AtMinReplicas"
    # tolerance
    WITHIN_TOLERANCE = "WithinTolerance"
    OUTSIDE_TOLERANCE = "OutsideTolerance"
    # stabilisation
    STABILIZING = "Stabilizing"
    STABLE = "Stable"
    # rate limits
    RATE_LIMITED = "RateLimited"
    WITHIN_RATE = "WithinRateLimits"
    # scale-down safety
    HISTORY_REFILLING = "HistoryRefilling"
    WOULD_VIOLATE_OBJECTIVE = "WouldViolateObjective"
    RECENTLY_SCALED = "RecentlyScaled"
    SCALE_DOWN_SAFE = "ScaleDownSafe"
    NOT_SCALING_DOWN = "NotScalingDown"
    # feasibility
    FEASIBLE = "Feasible"
    TARGET_BELOW_FLOOR = "TargetBelowFloor"
    INFEASIBLE_AT_MAX_REPLICAS = "InfeasibleAtMaxReplicas"
