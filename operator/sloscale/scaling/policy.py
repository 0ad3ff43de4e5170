"""The flat, validated policy one decision runs under.

The InferenceService spec and the operator's defaults are resolved into a `Policy` once per tick
(by the edge that reads the spec); the control law reads nothing else. Units are seconds,
requests and tokens; fractions are 0..1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class LatencyMetric(StrEnum):
    TTFT = "TimeToFirstToken"
    ITL = "InterTokenLatency"
    E2E = "EndToEndLatency"

    @property
    def short(self) -> str:
        return {"TimeToFirstToken": "TTFT", "InterTokenLatency": "ITL", "EndToEndLatency": "E2E"}[self.value]


class ObjectiveKind(StrEnum):
    LATENCY = "Latency"
    THROUGHPUT = "Throughput"


@dataclass(frozen=True)
class LatencyTarget:
    """`quantile` of `metric` at or below `target_s`, judged per `window_s`.

    `attainment_goal` is the share of windows that must meet it; 1 - goal is the error budget.
    """

    metric: LatencyMetric
    quantile: float
    target_s: float
    window_s: float = 300.0
    attainment_goal: float = 0.99

    @property
    def name(self) -> str:
        """E.g. "p99 TTFT"."""
        return f"p{self.quantile * 100:g} {self.metric.short}"


@dataclass(frozen=True)
class Objective:
    """Exactly one objective. For THROUGHPUT, `latency` is the looser bound the batch may not break
    and `tokens_per_s` the output rate to sustain (None: maximise tokens per GPU)."""

    kind: ObjectiveKind
    latency: LatencyTarget
    tokens_per_s: float | None = None


@dataclass(frozen=True)
class RateLimit:
    """HPA-style limits on one direction of replica changes."""

    stabilization_s: float
    max_replicas_per_period: int
    max_percent_per_period: int
    period_s: float


@dataclass(frozen=True)
class Batching:
    """Bounds of the batch lever (--max-num-seqs). A change is a rolling restart: `cooldown_s`
    is the least time between two."""

    enabled: bool = True
    min_seqs: int = 8
    initial_seqs: int = 64
    max_seqs: int = 256
    cooldown_s: float = 900.0


@dataclass(frozen=True)
class EngineProfile:
    """Prior for the capacity model: one replica's engine step time
    `a + s*max(0, n_tok - k) + d*sum(ctx)` in milliseconds (performance-model.md)."""

    name: str
    a_ms: float
    s_ms_per_token: float
    k_tokens: float
    d_ms_per_ctx_token: float
    e_ms_per_pair: float
    kv_capacity_tokens: int
    max_num_batched_tokens: int
    default_max_num_seqs: int = 256  # vLLM's --max-num-seqs when the pod template does not set it


H100 = EngineProfile("H100", 6.44, 0.0208, 80.0, 4.37e-5, 1.3e-6, 430_000, 8192, default_max_num_seqs=1024)
A100 = EngineProfile("A100", 10.5, 0.0671, 80.0, 7.2e-5, 2.6e-6, 430_000, 2048, default_max_num_seqs=256)
PROFILES = {p.name: p for p in (H100, A100)}


@dataclass(frozen=True)
class Policy:
    objective: Objective
    min_replicas: int
    max_replicas: int
    batching: Batching = field(default_factory=Batching)
    scale_up: RateLimit = field(default_factory=lambda: RateLimit(0.0, 4, 100, 30.0))
    scale_down: RateLimit = field(default_factory=lambda: RateLimit(300.0, 1, 50, 60.0))
    tolerance: float = 0.10
    cold_start_s: float = 120.0
    profile: EngineProfile = H100
    # The capacity model must predict the objective with this share of the target to spare ...
    target_margin: float = 0.10
    # ... and each replica's batch slots busy at most this share of the time (stable queues).
    max_utilization: float = 0.85
