"""The capacity-planning view: one simulated replica's throughput–latency curve across batch sizes.

For each `max_num_seqs`, a closed loop keeps that many requests of the trace's mean size in flight
(`engine.closed_loop`), and reports output tokens/s, requests/s, time per output token and TTFT.
A bigger batch buys throughput with per-token latency; this is the trade-off the batch lever
moves along.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.table import Table

from sloscale.engine import ClosedLoopResult, closed_loop
from sloscale.scaling.policy import EngineProfile

DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def curve(
    profile: EngineProfile,
    input_tokens: int,
    output_tokens: int,
    batches: Sequence[int] = DEFAULT_BATCHES,
) -> list[ClosedLoopResult]:
    return [
        closed_loop(profile, b, input_tokens, output_tokens, requests=max(6 * b, 60))
        for b in batches
    ]


def curve_table(
    profile: EngineProfile, input_tokens: int, output_tokens: int, points: list[ClosedLoopResult]
) -> Table:
    t = Table(
        title=f"{profile.name}: one replica, {input_tokens} in / {output_tokens} out, closed loop"
    )
    for col in ("max_num_seqs", "output tok/s", "req/s", "TPOT ms", "mean TTFT ms", "p99 TTFT ms"):
        t.add_column(col, justify="right")
    for p in points:
        t.add_row(
            str(p.concurrency),
            f"{p.tokens_per_s:.0f}",
            f"{p.requests_per_s:.2f}",
            f"{p.mean_tpot_s * 1e3:.1f}",
            f"{p.mean_ttft_s * 1e3:.0f}",
            f"{p.p99_ttft_s * 1e3:.0f}",
        )
    return t


def curve_plot(profile: EngineProfile, points: list[ClosedLoopResult], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 5))
    x = [p.mean_tpot_s * 1e3 for p in points]
    y = [p.tokens_per_s for p in points]
    ax.plot(x, y, marker="o")
    for p, xi, yi in zip(points, x, y, strict=True):
        ax.annotate(
            f"B={p.concurrency}", (xi, yi), textcoords="offset points", xytext=(5, -10), fontsize=8
        )
    ax.set_xlabel("time per output token (ms)")
    ax.set_ylabel("output tokens/s per replica")
    ax.set_title(f"{profile.name}: throughput vs per-token latency")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
