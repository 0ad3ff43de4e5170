"""Print the markdown tables of docs/bench.md from benchmarks/results/*.json.

Usage: .venv/bin/python benchmarks/summarize.py [NAME ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def table(name: str) -> str:
    data = json.loads((RESULTS / f"{name}.json").read_text())
    sc, policies = data["scenario"], data["policies"]
    ours = policies.get("sloscale")
    lines = [
        f"**{name}** — {sc['trace_name']} ×{sc['rate_scale']:g}, {sc['requests']} requests over "
        f"{sc['duration_s']:.0f} s, {sc['objective']}, {sc['profile']['name']}, cold start "
        f"{sc['cold_start_s']:g} s; capacity test: {sc['capacity']['max_rps']:.1f} req/s per replica "
        f"at max_num_seqs {sc['capacity']['batch']}; oracle batch {sc['oracle']['max_num_seqs']}, "
        f"{min(sc['oracle']['schedule'])}–{max(sc['oracle']['schedule'])} replicas"
        + (f"; CPU {sc['cpu_s']:.0f} s for the whole bench" if "cpu_s" in sc else ""),
        "",
        "| policy | windows met | requests met | GPU-h | × oracle | ours ÷ this | p99 s | scale events | batch changes | tok/GPU-s | max queue |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for pname, p in policies.items():
        relative = f"{ours['gpu_hours'] / p['gpu_hours']:.2f}" if ours else "–"
        p99 = "–" if p["p99_s"] is None else f"{p['p99_s']:.2f}"
        lines.append(
            f"| {pname} | {p['attainment_windows'] * 100:.1f} % | {p['attainment_requests'] * 100:.2f} % | "
            f"{p['gpu_hours']:.2f} | {p['cost_vs_oracle']:.2f} | {relative} | {p99} | {p['scale_events']} | "
            f"{p['batch_changes']} | {p['tokens_per_gpu_second']:.0f} | {p['max_queue']} |"
        )
    if "saturation_tokens_per_s" in sc:
        lines.append("")
        lines.append(
            f"Replica saturation throughput (closed loop, best batch): {sc['saturation_tokens_per_s']:.0f} tok/s."
        )
    if "recovery_after_step_s" in sc:
        rec = ", ".join(
            f"{k} {'never above' if v is None else f'{v:.0f} s'}"
            for k, v in sc["recovery_after_step_s"].items()
        )
        lines.append("")
        lines.append(
            f"Back under target after the step (end of the last 10-s window above it): {rec}."
        )
    return "\n".join(lines)


if __name__ == "__main__":
    names = sys.argv[1:] or sorted(p.stem for p in RESULTS.glob("*.json"))
    print("\n\n".join(table(n) for n in names))
