"""The closed-form steady state of performance-model.md, for quick capacity estimates.

B requests always running, mean input I and output O: every step carries B decodes plus, on
average, B*I/O prompt tokens, so `T(B) = a + s*max(0, B + B*I/O - k) + d*B*(I + O/2)
+ e*(B/O)*I^2/2`. The step-level `EngineModel` is the reference; this is its average.
"""

from __future__ import annotations

from dataclasses import dataclass

from sloscale.scaling.policy import EngineProfile


@dataclass(frozen=True)
class SteadyState:
    batch: int
    step_s: float
    tokens_per_s: float  # output tokens
    requests_per_s: float


def steady_state(
    profile: EngineProfile, batch: int, input_tokens: float, output_tokens: float
) -> SteadyState:
    """Step time and throughput with `batch` requests of mean size (input, output) always running."""
    if batch < 1 or input_tokens < 0 or output_tokens < 1:
        raise ValueError("need batch >= 1, input >= 0 and output >= 1 tokens")
    b, i, o = float(batch), float(input_tokens), float(output_tokens)
    step_ms = (
        profile.a_ms
        + profile.s_ms_per_token * max(0.0, b + b * i / o - profile.k_tokens)
        + profile.d_ms_per_ctx_token * b * (i + o / 2)
        + profile.e_ms_per_pair * (b / o) * i * i / 2
    )
    step_s = step_ms / 1e3
    return SteadyState(batch, step_s, b / step_s, b / (o * step_s))
