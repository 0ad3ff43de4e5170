"""The per-service capacity model: what n replicas at batch B deliver, and at what latency.

**Step time.** One replica's engine step, for the service's mix (mean prompt I, output O
tokens), follows the closed form of performance-model.md, in seconds:

    T(B) = α·a + β·(s·max(0, B·(1 + I/O) − k) + B·(d·(I + O/2) + e·I²/(2·O)))

`a, s, k, d, e` are the prior (`policy.profile`). α (fixed per-step cost) and β (cost that grows
with the batch) start at 1 and are fitted online by ridge-regularised least squares of the
observed step time (running sequences ÷ output tokens/s) against the prior's two parts, in units
relative to the prior, with old observations discounted by age. The fit is parameterised as a
common scale m and a shape δ (α = m + δ, β = m − δ) with a stronger pull on the shape: one
operating point says how much slower or faster the pods are (uniformly, the usual case — a
different GPU, model or engine build), and only observations spread over batch sizes reshape the
curve. With few observations the ridge keeps the prior.

**Throughput.** Output tokens/s per replica = B/T(B); requests/s = B/(O·T(B)).

**Latency at demand λ on n replicas.** Each replica gets λ/n and is treated as an M/M/B queue
(B batch slots, a request holds one for O steps). The mean concurrency c solves Little's law
c = (λ/n)·O·T(c). Queueing delay uses Sakasegawa's approximation of the probability of waiting,
P(wait) ≈ ρ^(√(2(B+1)) − 1), and the exponential tail of M/M/B waiting,
P(W > t) = P(wait)·exp(−(μ_pod − λ/n)·t), so the q-percentile is ln(P(wait)/(1 − q))/(μ_pod − λ/n)
when P(wait) > 1 − q, else 0. Then

    TTFT_q ≈ queue_q + cal_ttft·prefill(c),  prefill(c) = ⌈I/budget⌉·T(c) + β·(s·I + e·I²/2)
    ITL_q  ≈ cal_itl·T(min(B, tail·c))       (bursts fill the batch: tail ≥ 1 is learned)
    E2E_q  ≈ queue_q + cal_e2e·(prefill(c) + O·T(min(B, tail·c)))   (the p99 request rides bursts)

The calibrations (`state.Calibration`) are the observed/predicted ratios of the service parts,
learned in `observe`; they carry the length-mix tail and scheduler overhead the mean model lacks.
Utilisation ρ ≥ 1 means the queue grows without bound: every latency is infinite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sloscale.scaling.policy import EngineProfile, LatencyMetric
from sloscale.scaling.state import Calibration, FitStats, Mix

MS = 1e-3
SCALE_PRIOR = 2.0  # the prior's overall speed counts as this many observations ...
SHAPE_PRIOR = 4.0  # ... and its shape (fixed vs batch-dependent cost) as this many
FIT_HALF_LIFE_S = 1800.0  # an observation's weight halves in half an hour
COEF_BOUNDS = (0.25, 4.0)  # α and β stay within 4× of the prior


@dataclass(frozen=True)
class StepCurve:
    """One replica's step time T(B) for one mix, prior × fitted correction, in seconds."""

    a_s: float
    s_s: float  # per token beyond the hinge
    k_tokens: float
    per_seq_s: float  # decode attention + amortised prefill attention per running sequence
    tokens_per_seq: float  # 1 + I/O: tokens each running sequence adds to a step
    prompt_s: float  # the extra compute of one prompt's prefill: s·I + e·I²/2
    prefill_chunks: int  # steps one prompt's prefill spans (⌈I / max_num_batched_tokens⌉)
    input_tokens: float
    output_tokens: float
    alpha: float = 1.0
    beta: float = 1.0

    @classmethod
    def prior(
        cls, profile: EngineProfile, mix: Mix, alpha: float = 1.0, beta: float = 1.0
    ) -> StepCurve:
        i, o = mix.input_tokens, max(mix.output_tokens, 1.0)
        return cls(
            a_s=profile.a_ms * MS,
            s_s=profile.s_ms_per_token * MS,
            k_tokens=profile.k_tokens,
            per_seq_s=(
                profile.d_ms_per_ctx_token * (i + o / 2) + profile.e_ms_per_pair * i * i / (2 * o)
            )
            * MS,
            tokens_per_seq=1.0 + i / o,
            prompt_s=(profile.s_ms_per_token * i + profile.e_ms_per_pair * i * i / 2) * MS,
            prefill_chunks=max(1, math.ceil(i / max(profile.max_num_batched_tokens, 1))),
            input_tokens=i,
            output_tokens=o,
            alpha=alpha,
            beta=beta,
        )

    @classmethod
    def fitted(cls, profile: EngineProfile, mix: Mix, stats: FitStats) -> StepCurve:
        alpha, beta = fit_coefficients(stats)
        return cls.prior(profile, mix, alpha, beta)

    def parts(self, batch: float) -> tuple[float, float]:
        """The prior's fixed and batch-dependent parts of T(batch), uncorrected."""
        variable = (
            self.s_s * max(0.0, batch * self.tokens_per_seq - self.k_tokens)
            + self.per_seq_s * batch
        )
        return self.a_s, variable

    def step_s(self, batch: float) -> float:
        hinge = batch * self.tokens_per_seq - self.k_tokens
        variable = self.per_seq_s * batch + (self.s_s * hinge if hinge > 0.0 else 0.0)
        return self.alpha * self.a_s + self.beta * variable

    def batch_for_step(self, step_s: float) -> float:
        """The concurrency whose step time is `step_s` (inverse of T; 0 below the idle step)."""
        base = self.alpha * self.a_s
        if step_s <= base:
            return 0.0
        slope = self.beta * self.per_seq_s
        below_hinge = (step_s - base) / slope if slope > 0 else math.inf
        if below_hinge * self.tokens_per_seq <= self.k_tokens:
            return below_hinge
        slope = self.beta * (self.s_s * self.tokens_per_seq + self.per_seq_s)
        return (step_s - base + self.beta * self.s_s * self.k_tokens) / slope

    def capacity_rps(self, batch: int) -> float:
        """Requests/s one replica completes with its batch full."""
        return batch / (self.output_tokens * self.step_s(batch))

    def prefill_s(self, concurrency: float) -> float:
        return self.prefill_chunks * self.step_s(concurrency) + self.beta * self.prompt_s

    def concurrency(self, rps_per_replica: float, batch: int) -> float:
        """Mean running sequences per replica: the fixed point of c = λ·O·T(c), capped at `batch`."""
        if rps_per_replica <= 0.0:
            return 0.0
        lo = rps_per_replica * self.output_tokens
        # Below the hinge T(c) = α·a + β·per_seq·c; above it the GEMM term adds β·s·(c·tps − k).
        intercept, slope = self.alpha * self.a_s, self.beta * self.per_seq_s
        if lo * slope < 1.0:
            c = lo * intercept / (1.0 - lo * slope)
            if c * self.tokens_per_seq <= self.k_tokens:
                return min(c, float(batch))
        intercept -= self.beta * self.s_s * self.k_tokens
        slope += self.beta * self.s_s * self.tokens_per_seq
        if lo * slope >= 1.0:
            return float(batch)
        return min(lo * intercept / (1.0 - lo * slope), float(batch))


def fit_coefficients(stats: FitStats) -> tuple[float, float]:
    """(α, β) = (m + δ, m − δ) minimising
    Σ w·(y − m − δ·v)² + SCALE_PRIOR·(m − 1)² + SHAPE_PRIOR·δ²  (v = u1 − u2, as u1 + u2 = 1)."""
    m11, m12, m22 = stats.s11 + SCALE_PRIOR, stats.s12, stats.s22 + SHAPE_PRIOR
    r1, r2 = stats.y1 + SCALE_PRIOR, stats.y2
    det = m11 * m22 - m12 * m12
    scale = (r1 * m22 - r2 * m12) / det
    shape = (m11 * r2 - m12 * r1) / det
    lo, hi = COEF_BOUNDS
    return min(max(scale + shape, lo), hi), min(max(scale - shape, lo), hi)


def update_fit(
    stats: FitStats, prior: StepCurve, batch: float, observed_step_s: float, now: float
) -> FitStats:
    """Add one observation: `observed_step_s` at `batch` running sequences per replica."""
    fixed, variable = prior.parts(batch)
    total = fixed + variable
    v, y = (fixed - variable) / total, observed_step_s / total
    decay = (
        1.0
        if stats.updated_at is None
        else 0.5 ** (max(0.0, now - stats.updated_at) / FIT_HALF_LIFE_S)
    )
    return FitStats(
        s11=stats.s11 * decay + 1.0,
        s12=stats.s12 * decay + v,
        s22=stats.s22 * decay + v * v,
        y1=stats.y1 * decay + y,
        y2=stats.y2 * decay + y * v,
        weight=stats.weight * decay + 1.0,
        updated_at=now,
    )


@dataclass(frozen=True)
class Prediction:
    """The model's view of `replicas` replicas at batch `batch` under `demand_rps`."""

    replicas: int
    batch: int
    demand_rps: float
    capacity_rps: float  # per replica, batch full
    utilization: float
    concurrency: float  # mean running sequences per replica
    queue_s: float  # queueing delay at the objective's quantile
    step_s: float  # mean inter-token latency
    ttft_s: float
    itl_s: float
    e2e_s: float
    output_tokens: float
    ttft_service_s: float  # TTFT without the queue: the prefill at this concurrency
    e2e_service_s: float  # E2E without the queue

    def latency(self, metric: LatencyMetric) -> float:
        if metric is LatencyMetric.TTFT:
            return self.ttft_s
        if metric is LatencyMetric.ITL:
            return self.itl_s
        return self.e2e_s

    def service_latency(self, metric: LatencyMetric) -> float:
        """The latency once a request runs, queueing left out; finite even where the queue grows
        without bound (every slot busy: the steps of a full batch)."""
        if metric is LatencyMetric.TTFT:
            return self.ttft_service_s
        if metric is LatencyMetric.ITL:
            return self.itl_s
        return self.e2e_service_s

    @property
    def tokens_capacity(self) -> float:
        """Output tokens/s all replicas deliver with full batches."""
        return self.replicas * self.capacity_rps * self.output_tokens


def queue_quantile_s(utilization: float, slots: int, service_rate: float, quantile: float) -> float:
    """The `quantile` of waiting time in an M/M/`slots` queue (Sakasegawa + exponential tail).

    `service_rate` is the whole replica's completion rate with every slot busy (μ_pod); the
    arrival rate is `utilization`·μ_pod.
    """
    if utilization <= 0.0:
        return 0.0
    if utilization >= 1.0:
        return math.inf
    p_wait = utilization ** (math.sqrt(2.0 * (slots + 1)) - 1.0)
    tail = 1.0 - quantile
    if p_wait <= tail:
        return 0.0
    return math.log(p_wait / tail) / (service_rate * (1.0 - utilization))


def predict(
    curve: StepCurve,
    calibration: Calibration,
    replicas: int,
    batch: int,
    demand_rps: float,
    quantile: float,
) -> Prediction:
    """Utilisation and latency percentiles of (`replicas`, `batch`) under `demand_rps`."""
    capacity = curve.capacity_rps(batch)
    if replicas <= 0:
        inf = math.inf if demand_rps > 0 else 0.0
        return Prediction(
            replicas,
            batch,
            demand_rps,
            capacity,
            inf,
            0.0,
            inf,
            inf,
            inf,
            inf,
            inf,
            curve.output_tokens,
            inf,
            inf,
        )
    per_replica = demand_rps / replicas
    utilization = per_replica / capacity
    if utilization >= 1.0:
        c = float(batch)
        queue = math.inf
    else:
        c = curve.concurrency(per_replica, batch)
        queue = queue_quantile_s(utilization, batch, capacity, quantile)
    step = curve.step_s(max(c, 1.0))
    prefill = curve.prefill_chunks * step + curve.beta * curve.prompt_s
    tail_step = curve.step_s(min(float(batch), max(1.0, calibration.itl_tail * c)))
    ttft_service = calibration.ttft * prefill
    e2e_service = calibration.e2e * (prefill + curve.output_tokens * tail_step)
    return Prediction(
        replicas=replicas,
        batch=batch,
        demand_rps=demand_rps,
        capacity_rps=capacity,
        utilization=utilization,
        concurrency=c,
        queue_s=queue,
        step_s=step,
        ttft_s=queue + ttft_service,
        itl_s=calibration.itl * tail_step,
        e2e_s=queue + e2e_service,
        output_tokens=curve.output_tokens,
        ttft_service_s=ttft_service,
        e2e_service_s=e2e_service,
    )
