"""The bench's outputs: the table (rich), the JSON file, and the PNG plots (matplotlib, Agg).

The table has one row per policy, with its cost relative to the oracle and our cost relative to
it (below 1: we are cheaper). The plots share their time axes across policies: the objective's
percentile per window against the target, the replicas over time, the batch over time; plus a
cost-versus-attainment scatter with the oracle and the Pareto front visible at a glance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from sloscale.sim.bench import BenchResult
from sloscale.sim.objective import BenchObjective, window_scores

OURS = "sloscale"


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table(result: BenchResult) -> Table:
    sc = result.scenario
    title = (
        f"{sc['trace_name']} ×{sc['rate_scale']:g} · {sc['objective']} · {sc['profile']['name']} · "
        f"cold start {sc['cold_start_s']:g}s · {sc['requests']} requests over {sc['duration_s']:.0f}s"
    )
    t = Table(title=title)
    for col, justify in [
        ("policy", "left"),
        ("windows met", "right"),
        ("requests met", "right"),
        ("GPU-h", "right"),
        ("× oracle", "right"),
        ("ours ÷ this", "right"),
        ("p50 s", "right"),
        ("p99 s", "right"),
        ("scale ev.", "right"),
        ("batch ch.", "right"),
        ("tok/GPU-s", "right"),
        ("max queue", "right"),
    ]:
        t.add_column(col, justify=justify)  # type: ignore[arg-type]
    ours = result.policies.get(OURS)
    for name, p in result.policies.items():
        relative = ours["gpu_hours"] / p["gpu_hours"] if ours and p["gpu_hours"] else None
        t.add_row(
            name,
            f"{p['attainment_windows'] * 100:.1f}%",
            f"{p['attainment_requests'] * 100:.2f}%",
            _fmt(p["gpu_hours"]),
            _fmt(p["cost_vs_oracle"]),
            _fmt(relative),
            _fmt(p["p50_s"], 3),
            _fmt(p["p99_s"], 3),
            str(p["scale_events"]),
            str(p["batch_changes"]),
            f"{p['tokens_per_gpu_second']:.0f}",
            str(p["max_queue"]),
        )
    return t


def write_json(result: BenchResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(result.to_json(), indent=2, default=_json_default) + "\n", encoding="utf-8"
    )


def write_decisions(result: BenchResult, path: Path, policy: str = "sloscale") -> int:
    """Our law's decision log as JSON lines, one per tick; returns how many were written."""
    run = result.runs.get(policy)
    entries = run.decisions if run is not None else []
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(entry, default=_json_default) for entry in entries]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return len(lines)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_plots(result: BenchResult, directory: Path) -> list[Path]:
    """timeline.png (percentile, replicas, batch over time) and cost_attainment.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    objective = BenchObjective.parse(result.scenario["objective_spec"])
    names = list(result.runs)
    colors = {name: plt.get_cmap("tab10")(i % 10) for i, name in enumerate(names)}

    fig, axes = plt.subplots(3, 1, figsize=(12, 10), sharex=True)
    ax_p, ax_r, ax_b = axes
    for name, run in result.runs.items():
        scores = window_scores(objective, run.arrival_s, objective.values(run), run.horizon_s)
        centers = (scores.starts + objective.window_s / 2) / 60
        style = {"color": colors[name], "linewidth": 2.2 if name == OURS else 1.1}
        if name == "oracle":
            style["linestyle"] = "--"
        ax_p.plot(centers, scores.percentile, label=name, **style)
        tl = run.timeline
        ax_r.step(tl["t"] / 60, tl["pods"], where="post", label=name, **style)
        ax_b.step(tl["t"] / 60, tl["batch"], where="post", label=name, **style)
    ax_p.axhline(objective.target_s, color="black", linestyle=":", label="target")
    ax_p.set_yscale("log")
    ax_p.set_ylabel(f"p{objective.quantile * 100:g} {objective.metric.short} per window (s)")
    ax_r.set_ylabel("pods (billed)")
    ax_b.set_ylabel("max_num_seqs")
    ax_b.set_yscale("log", base=2)
    ax_b.set_xlabel("time (min)")
    ax_p.legend(loc="upper right", fontsize=8, ncol=2)
    ax_p.set_title(result.scenario["objective"])
    fig.tight_layout()
    timeline_path = directory / "timeline.png"
    fig.savefig(timeline_path, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 5))
    for name, p in result.policies.items():
        ax.scatter(
            p["gpu_hours"],
            p["attainment_windows"] * 100,
            color=colors.get(name),
            s=80 if name == OURS else 40,
        )
        ax.annotate(
            name,
            (p["gpu_hours"], p["attainment_windows"] * 100),
            textcoords="offset points",
            xytext=(5, 4),
            fontsize=8,
        )
    ax.set_xlabel("GPU-hours")
    ax.set_ylabel("windows meeting the objective (%)")
    ax.set_title("cost vs attainment (up and left is better)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    scatter_path = directory / "cost_attainment.png"
    fig.savefig(scatter_path, dpi=110)
    plt.close(fig)
    return [timeline_path, scatter_path]
