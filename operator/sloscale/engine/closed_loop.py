"""Closed-loop measurement of one engine: `concurrency` clients, each sending its next request as
soon as the previous one finishes — the way benchmark sweeps (vLLM's `benchmark_serving
--max-concurrency`) measure a replica's throughput–latency curve.

Used to check the engine model against published measurements and to draw the capacity-planning
curve of `sloscale bench --curve`.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from sloscale.engine.model import EngineModel, Request
from sloscale.scaling.policy import EngineProfile


@dataclass(frozen=True)
class ClosedLoopResult:
    concurrency: int
    tokens_per_s: float  # output tokens per second, after warm-up
    requests_per_s: float
    mean_step_s: float
    median_itl_s: float  # over decode tokens, as vLLM's inter-token latency histogram counts them
    mean_tpot_s: float  # mean over requests of (e2e - ttft) / (output - 1)
    mean_ttft_s: float
    p99_ttft_s: float


def closed_loop(
    profile: EngineProfile,
    concurrency: int,
    input_tokens: int,
    output_tokens: int,
    requests: int = 400,
    max_num_seqs: int | None = None,
    warmup_fraction: float = 0.2,
) -> ClosedLoopResult:
    """Run `requests` requests of fixed size at fixed concurrency; statistics skip the first
    `warmup_fraction` of them (the ramp-up)."""
    if concurrency < 1 or requests < concurrency:
        raise ValueError("need concurrency >= 1 and at least `concurrency` requests")
    engine = EngineModel(profile, max_num_seqs or concurrency, track_decodes=False)
    now = 0.0
    issued = 0
    for _ in range(concurrency):
        engine.add(Request(issued, input_tokens, output_tokens, now))
        issued += 1
    done: list[Request] = []
    warm = max(1, int(requests * warmup_fraction))
    t_warm = tokens_warm = None
    steps = 0
    step_time = 0.0
    itl_counts: dict[float, int] = {}
    while len(done) < requests:
        result = engine.step(now)
        now = result.end_s
        if tokens_warm is not None:
            steps += 1
            step_time += result.duration_s
            if result.num_decoded:
                itl_counts[result.duration_s] = (
                    itl_counts.get(result.duration_s, 0) + result.num_decoded
                )
        for req in result.finished:
            done.append(req)
            if len(done) == warm:
                t_warm, tokens_warm = now, engine.generation_tokens_total
            if issued < requests + concurrency:
                engine.add(Request(issued, input_tokens, output_tokens, now))
                issued += 1
    assert t_warm is not None and tokens_warm is not None
    measured = done[warm:]
    elapsed = now - t_warm
    tpots = [r.tpot_s for r in measured if r.tpot_s is not None]
    ttfts = sorted(r.ttft_s for r in measured if r.ttft_s is not None)
    return ClosedLoopResult(
        concurrency=concurrency,
        tokens_per_s=(engine.generation_tokens_total - tokens_warm) / elapsed,
        requests_per_s=len(measured) / elapsed,
        mean_step_s=step_time / max(steps, 1),
        median_itl_s=_weighted_median(itl_counts),
        mean_tpot_s=statistics.fmean(tpots) if tpots else 0.0,
        mean_ttft_s=statistics.fmean(ttfts),
        p99_ttft_s=ttfts[min(len(ttfts) - 1, int(0.99 * len(ttfts)))],
    )


def _weighted_median(counts: dict[float, int]) -> float:
    if not counts:
        return 0.0
    total = sum(counts.values())
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if 2 * seen >= total:
            return value
    return max(counts)
