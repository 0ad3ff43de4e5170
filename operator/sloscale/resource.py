"""The InferenceService API in Python: pydantic models mirroring `crds/inferenceservice.yaml`.

The CRD is the source of truth; these models only read what the API server has already validated
and defaulted, and write the status in exactly the CRD's shape. A unit test walks both schemas and
fails when they drift (property names, types, enums, required fields, defaults and bounds).

`resolve_policy()` turns a spec into the flat `sloscale.scaling.Policy` the control law runs under,
once per tick. It also catches what the schema and its CEL rules cannot (engine arguments that
fight the operator, batch bounds vLLM would refuse): those raise `SpecError`, whose message ends up
in a condition and an event, never in a crash.

Durations are Go-style strings (`800ms`, `1h30m`) and fractions are percentages (`99.5%`): the
spec carries no floats. The helpers here parse and format both, so status reads like the spec.
"""

from __future__ import annotations

import dataclasses
import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from sloscale.scaling.policy import (
    PROFILES,
    Batching,
    LatencyMetric,
    LatencyTarget,
    Objective,
    ObjectiveKind,
    Policy,
    RateLimit,
)

GROUP = "sloscale.dev"
VERSION = "v1alpha1"
KIND = "InferenceService"
PLURAL = "inferenceservices"
SERVICE_LABEL = (
    "sloscale.dev/service"  # on every pod of a service; Prometheus turns it into sloscale_service
)

DURATION_PATTERN = r"^([0-9]+(ms|s|m|h))+$"
PERCENT_PATTERN = r"^(100|[0-9]{1,2}(\.[0-9]{1,3})?)%$"

Duration = Annotated[str, Field(pattern=DURATION_PATTERN)]
Percent = Annotated[str, Field(pattern=PERCENT_PATTERN)]
Percentile = Literal["p50", "p90", "p95", "p99", "p99.9"]
ConditionStatus = Literal["True", "False", "Unknown"]


class SpecError(ValueError):
    """A spec the API accepted but the operator cannot act on; the message says how to fix it."""


# --- units -----------------------------------------------------------------------------------

_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration such as `800ms`, `2s` or `1h30m`."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise SpecError(f"{text!r} is not a duration such as 800ms, 2s, 5m or 1h30m")
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))


def format_duration(seconds: float) -> str:
    """A short human duration: `850ms`, `1.8s`, `42s`, `2m5s`."""
    if not math.isfinite(seconds):
        return "inf"
    if seconds < 1.0:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 100.0:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s" if rest else f"{minutes}m"


def parse_percent(text: str) -> float:
    """`99.5%` → 0.995."""
    if not re.fullmatch(PERCENT_PATTERN, text):
        raise SpecError(f"{text!r} is not a percentage such as 99% or 99.5%")
    return float(text[:-1]) / 100.0


def format_percent(fraction: float) -> str:
    """0.9875 → `98.8%`."""
    return f"{fraction * 100:.1f}%"


def percentile_quantile(percentile: Percentile) -> float:
    """`p99.9` → 0.999."""
    return float(percentile[1:]) / 100.0


# --- spec ------------------------------------------------------------------------------------


class _Model(BaseModel):
    """camelCase on the wire, snake_case in Python; fields the CRD does not know are dropped."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore"
    )


class EnvVar(_Model):
    """A core/v1 EnvVar; everything besides the name is passed through untouched."""

    model_config = ConfigDict(extra="allow")
    name: str


class EngineSpec(_Model):
    image: str = "vllm/vllm-openai:v0.32.0"
    args: list[str] = Field(default_factory=list, max_length=64)
    env: list[EnvVar] = Field(default_factory=list, max_length=64)
    gpus: int = Field(1, ge=0, le=16)
    resources: dict[str, Any] = Field(default_factory=dict)
    port: int = Field(8000, ge=1, le=65535)
    startup_timeout: Duration = "30m"
    gpu_profile: Literal["H100", "A100"] = "H100"


class ScaleTargetRef(_Model):
    api_version: Literal["apps/v1"] = "apps/v1"
    kind: Literal["Deployment"] = "Deployment"
    name: str = Field(min_length=1, max_length=253)
    container: str | None = Field(None, max_length=63)


class LatencySpec(_Model):
    metric: LatencyMetric
    percentile: Percentile = "p99"
    target: Duration
    window: Duration = "5m"
    attainment: Percent = "99%"


class ThroughputSpec(_Model):
    tokens_per_second: int | None = Field(None, ge=1, le=100_000_000)
    latency_bound: LatencySpec


class ObjectiveSpec(_Model):
    type: ObjectiveKind
    latency: LatencySpec | None = None
    throughput: ThroughputSpec | None = None


class ReplicasSpec(_Model):
    min: int = Field(1, ge=0, le=1000)
    max: int = Field(ge=1, le=1000)


class BatchingSpec(_Model):
    mode: Literal["Auto", "Off"] = "Auto"
    min_max_num_seqs: int = Field(8, ge=1, le=4096)
    initial_max_num_seqs: int = Field(64, ge=1, le=4096)
    max_max_num_seqs: int = Field(256, ge=1, le=4096)
    cooldown: Duration = "15m"


class ScalingRules(_Model):
    stabilization_window: Duration | None = None
    max_replicas_per_period: int | None = Field(None, ge=1, le=1000)
    max_percent_per_period: int | None = Field(None, ge=1, le=1000)
    period: Duration | None = None


class BehaviorSpec(_Model):
    scale_up: ScalingRules | None = None
    scale_down: ScalingRules | None = None
    tolerance: Percent = "10%"


class InferenceServiceSpec(_Model):
    mode: Literal["Enforce", "Advisory"] = "Enforce"
    model: str | None = Field(None, min_length=1, max_length=253)
    engine: EngineSpec | None = None
    scale_target_ref: ScaleTargetRef | None = None
    objective: ObjectiveSpec
    replicas: ReplicasSpec
    batching: BatchingSpec = Field(default_factory=BatchingSpec)
    behavior: BehaviorSpec = Field(default_factory=BehaviorSpec)
    cold_start: Duration = "120s"

    @property
    def owned(self) -> bool:
        """True when the operator runs the workload (spec.model), False when it attaches."""
        return self.scale_target_ref is None

    @property
    def advisory(self) -> bool:
        return self.mode == "Advisory"

    @property
    def engine_or_default(self) -> EngineSpec:
        return self.engine or EngineSpec()


# --- status ----------------------------------------------------------------------------------


class Condition(_Model):
    """metav1.Condition."""

    type: str
    status: ConditionStatus
    reason: str
    message: str
    last_transition_time: datetime
    observed_generation: int | None = None


class ReplicasStatus(_Model):
    current: int | None = None
    ready: int | None = None
    desired: int | None = None


class BatchStatus(_Model):
    current: int | None = None
    desired: int | None = None


class ObjectiveStatus(_Model):
    name: str | None = None
    target: str | None = None
    met: bool | None = None
    attainment: str | None = None
    error_budget_remaining: str | None = None


class ObservedStatus(_Model):
    value: str | None = None
    tokens_per_second: str | None = None
    requests_per_second: str | None = None
    queue: int | None = None
    queue_time: str | None = None
    prefill_time: str | None = None
    inter_token_latency: str | None = None
    cold_start: str | None = None
    time: datetime | None = None


class LastDecision(_Model):
    time: datetime | None = None
    action: str | None = None
    replicas: int | None = None
    max_num_seqs: int | None = None
    reason: str | None = None


class InferenceServiceStatus(_Model):
    observed_generation: int | None = None
    replicas: ReplicasStatus | None = None
    batch: BatchStatus | None = None
    objective: ObjectiveStatus | None = None
    observed: ObservedStatus | None = None
    last_decision: LastDecision | None = None
    last_scale_time: datetime | None = None
    last_batch_change_time: datetime | None = None
    conditions: list[Condition] = Field(default_factory=list)

    def to_patch(self) -> dict[str, Any]:
        """The status as the API stores it: camelCase, RFC 3339 times, absent fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class InferenceService(_Model):
    api_version: str | None = None
    kind: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: InferenceServiceSpec
    status: InferenceServiceStatus | None = None


def parse_spec(spec: dict[str, Any]) -> InferenceServiceSpec:
    """Read a spec; a shape the models reject becomes a `SpecError` naming the fields."""
    try:
        return InferenceServiceSpec.model_validate(spec)
    except ValidationError as exc:
        problems = "; ".join(
            f"spec.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise SpecError(problems) from exc


def parse_status(status: dict[str, Any] | None) -> InferenceServiceStatus:
    """Read the stored status; an unreadable one (written by an older operator) counts as empty."""
    try:
        return InferenceServiceStatus.model_validate(status or {})
    except ValidationError:
        return InferenceServiceStatus()


# --- policy ----------------------------------------------------------------------------------

# Arguments the operator derives from other fields; setting them in engine.args would fight it.
_MANAGED_ARGS = {
    "--model": "spec.model",
    "--served-model-name": "the InferenceService's name",
    "--port": "spec.engine.port",
    "--tensor-parallel-size": "spec.engine.gpus",
    "-tp": "spec.engine.gpus",
    "--max-num-seqs": "spec.batching",
}


@dataclasses.dataclass(frozen=True)
class OperatorDefaults:
    """Operator-wide fallbacks for behaviour the spec leaves out. None: the control law's own."""

    scale_up: RateLimit | None = None
    scale_down: RateLimit | None = None


def arg_value(args: list[str], flag: str) -> str | None:
    """The value of `flag` in a vLLM argument list (`--flag v` or `--flag=v`), or None."""
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _latency_target(spec: LatencySpec) -> LatencyTarget:
    return LatencyTarget(
        metric=spec.metric,
        quantile=percentile_quantile(spec.percentile),
        target_s=parse_duration(spec.target),
        window_s=parse_duration(spec.window),
        attainment_goal=parse_percent(spec.attainment),
    )


def _objective(spec: ObjectiveSpec) -> Objective:
    if spec.type is ObjectiveKind.LATENCY:
        if spec.latency is None or spec.throughput is not None:
            raise SpecError(
                "objective.type Latency needs objective.latency and no objective.throughput"
            )
        return Objective(kind=ObjectiveKind.LATENCY, latency=_latency_target(spec.latency))
    if spec.throughput is None or spec.latency is not None:
        raise SpecError(
            "objective.type Throughput needs objective.throughput and no objective.latency"
        )
    tokens = spec.throughput.tokens_per_second
    return Objective(
        kind=ObjectiveKind.THROUGHPUT,
        latency=_latency_target(spec.throughput.latency_bound),
        tokens_per_s=float(tokens) if tokens is not None else None,
    )


def _rate_limit(base: RateLimit, rules: ScalingRules | None) -> RateLimit:
    if rules is None:
        return base
    return RateLimit(
        stabilization_s=(
            parse_duration(rules.stabilization_window)
            if rules.stabilization_window is not None
            else base.stabilization_s
        ),
        max_replicas_per_period=rules.max_replicas_per_period or base.max_replicas_per_period,
        max_percent_per_period=rules.max_percent_per_period or base.max_percent_per_period,
        period_s=parse_duration(rules.period) if rules.period is not None else base.period_s,
    )


def _check_engine_args(spec: InferenceServiceSpec) -> None:
    if spec.engine is None:
        return
    args = spec.engine.args
    for flag, owner in _MANAGED_ARGS.items():
        if arg_value(args, flag) is not None or flag in args:
            raise SpecError(
                f"engine.args sets {flag}, which the operator derives from {owner}; remove it"
            )
    batched = arg_value(args, "--max-num-batched-tokens")
    if batched is not None and spec.batching.mode == "Auto":
        if not batched.isdigit():
            raise SpecError(
                f"engine.args --max-num-batched-tokens {batched!r} is not a whole number"
            )
        if int(batched) < spec.batching.max_max_num_seqs:
            raise SpecError(
                f"batching.maxMaxNumSeqs {spec.batching.max_max_num_seqs} exceeds "
                f"--max-num-batched-tokens {batched} in engine.args; vLLM refuses to start when "
                "max-num-seqs is above the token budget"
            )


def resolve_policy(spec: InferenceServiceSpec, defaults: OperatorDefaults | None = None) -> Policy:
    """The flat policy for one decision: spec values, then operator defaults, then the law's own."""
    defaults = defaults or OperatorDefaults()
    if spec.replicas.min > spec.replicas.max:
        raise SpecError(
            f"replicas.min {spec.replicas.min} is above replicas.max {spec.replicas.max}"
        )
    batching = spec.batching
    if batching.mode == "Auto" and not (
        batching.min_max_num_seqs <= batching.initial_max_num_seqs <= batching.max_max_num_seqs
    ):
        raise SpecError(
            "batching bounds must be ordered: minMaxNumSeqs <= initialMaxNumSeqs <= maxMaxNumSeqs, got "
            f"{batching.min_max_num_seqs}, {batching.initial_max_num_seqs}, {batching.max_max_num_seqs}"
        )
    _check_engine_args(spec)
    base = Policy(
        objective=_objective(spec.objective),
        min_replicas=spec.replicas.min,
        max_replicas=spec.replicas.max,
    )
    behavior = spec.behavior
    return dataclasses.replace(
        base,
        batching=Batching(
            enabled=batching.mode == "Auto",
            min_seqs=batching.min_max_num_seqs,
            initial_seqs=batching.initial_max_num_seqs,
            max_seqs=batching.max_max_num_seqs,
            cooldown_s=parse_duration(batching.cooldown),
        ),
        scale_up=_rate_limit(defaults.scale_up or base.scale_up, behavior.scale_up),
        scale_down=_rate_limit(defaults.scale_down or base.scale_down, behavior.scale_down),
        tolerance=parse_percent(behavior.tolerance),
        cold_start_s=parse_duration(spec.cold_start),
        profile=PROFILES[spec.engine_or_default.gpu_profile],
    )
