"""Run the bench scenarios reported in docs/bench.md and write their JSON (and plots).

Usage: .venv/bin/python benchmarks/run_scenarios.py [NAME ...]   (no name: all of them)

Each scenario is one `run_bench` call; the results land in benchmarks/results/NAME.json and
benchmarks/results/NAME/*.png. `step` also reports, per policy, how long after a 3x load step
the objective's percentile stays above target (10-second windows by arrival).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from sloscale import traces
from sloscale.sim import report
from sloscale.sim.bench import BenchResult, Scenario, prepare_trace, run_bench
from sloscale.sim.objective import BenchObjective, window_scores

DATA = Path("/work/shared/data/traces/azure_llm_inference_2023")
CONV = DATA / "AzureLLMInferenceTrace_conv.csv"
CODE = DATA / "AzureLLMInferenceTrace_code.csv"
SERVEGEN_IMAGE = Path(
    "/work/shared/data/traces/servegen_derived/multimodal_mm-image_aggregate_rate.csv"
)
OUT = Path(__file__).parent / "results"
TTFT = "p99-ttft<=1s/1m"


def _azure(path: Path, rate: float) -> traces.Trace:
    return prepare_trace(traces.load_trace(path), rate_scale=rate)


def _shaped(path: Path, rate: float, shape: Path) -> traces.Trace:
    # A day of another service's request rate (ServeGen, 10-minute windows) bent over the hour:
    # a load shape the control law was not tuned on.
    trace = _azure(path, rate)
    return trace.modulate(traces.load_rate_shape(shape), trace.duration_s)


def _step_trace() -> traces.Trace:
    # Azure-conv lengths, 20 req/s for 10 minutes, then 60 req/s for 10 minutes.
    sample = traces.load_trace(CONV)
    return traces.step(20.0, 60.0, 600.0, 1200.0, traces.Lengths(sample_from=sample), seed=1)


SCENARIOS: dict[str, tuple[object, Scenario]] = {
    "conv_native": (lambda: _azure(CONV, 1.0), Scenario("conv", TTFT)),
    "conv_x15_cold120": (lambda: _azure(CONV, 15.0), Scenario("conv", TTFT, rate_scale=15.0)),
    "conv_x15_cold30": (
        lambda: _azure(CONV, 15.0),
        Scenario("conv", TTFT, rate_scale=15.0, cold_start_s=30.0),
    ),
    "conv_x15_cold300": (
        lambda: _azure(CONV, 15.0),
        Scenario("conv", TTFT, rate_scale=15.0, cold_start_s=300.0),
    ),
    "code_x10_cold120": (lambda: _azure(CODE, 10.0), Scenario("code", TTFT, rate_scale=10.0)),
    "conv_x15_throughput": (
        lambda: _azure(CONV, 15.0),
        Scenario("conv", "throughput:p99-e2e<=30s/1m", rate_scale=15.0),
    ),
    "step_3x": (_step_trace, Scenario("step-20to60rps-conv-lengths", TTFT)),
    "conv_x15_servegen": (
        lambda: _shaped(CONV, 15.0, SERVEGEN_IMAGE),
        Scenario("conv-shaped-by-servegen-mm-image", TTFT, rate_scale=15.0),
    ),
}


def recovery_after_step(
    result: BenchResult, step_s: float, objective: BenchObjective
) -> dict[str, float | None]:
    """Seconds from the step to the end of the last 10-s window above target (None: never above)."""
    fine = BenchObjective(
        objective.kind, objective.metric, objective.quantile, objective.target_s, 10.0
    )
    out: dict[str, float | None] = {}
    for name, run in result.runs.items():
        scores = window_scores(fine, run.arrival_s, objective.values(run), run.horizon_s)
        late = scores.counted & ~scores.met & (scores.starts >= step_s)
        out[name] = float(scores.starts[late].max() + 10.0 - step_s) if late.any() else None
    return out


def main(names: list[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in names or list(SCENARIOS):
        make_trace, scenario = SCENARIOS[name]
        trace = make_trace()  # type: ignore[operator]
        started = time.process_time()
        result = run_bench(trace, scenario)
        cpu = time.process_time() - started
        data = result.to_json()
        data["scenario"]["cpu_s"] = cpu
        if name == "step_3x":
            objective = BenchObjective.parse(scenario.objective)
            data["scenario"]["recovery_after_step_s"] = recovery_after_step(
                result, 600.0, objective
            )
        (OUT / f"{name}.json").write_text(
            json.dumps(data, indent=2, default=report._json_default) + "\n"
        )
        report.write_plots(result, OUT / name)
        ours = data["policies"].get("sloscale", {})
        print(
            f"{name}: {len(trace)} requests, cpu {cpu:.1f}s, ours attain {ours.get('attainment_windows', math.nan):.3f} "
            f"at {ours.get('cost_vs_oracle') or math.nan:.2f}x oracle",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
