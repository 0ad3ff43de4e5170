"""The step-level model of one vLLM engine (performance-model.md), pure and clock-free.

`EngineModel` schedules requests the way vLLM V1 does (chunked prefill, the `max_num_seqs` cap, KV
blocks with preemption and recompute) and says how long each step takes on a given GPU profile.
The fleet simulator and the emulated vLLM pod both run it; neither re-implements it.
"""

from sloscale.engine.closed_loop import ClosedLoopResult, closed_loop
from sloscale.engine.model import DecodePlan, DecodeRun, EngineModel, Phase, Request, StepResult
from sloscale.engine.profiles import custom_profile, resolve_profile
from sloscale.engine.steady import steady_state

__all__ = [
    "ClosedLoopResult",
    "closed_loop",
    "DecodePlan",
    "DecodeRun",
    "EngineModel",
    "Phase",
    "Request",
    "StepResult",
    "custom_profile",
    "resolve_profile",
    "steady_state",
]
