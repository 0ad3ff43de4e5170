"""The `sloscale bench` command: options, progress bar, table, JSON and plots.

Only typer is imported at module level so that `sloscale --help` stays fast; the simulator,
numpy and matplotlib load when the command runs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")


def parse_duration(text: str) -> float:
    """`120s`, `2m`, `500ms`, `1h` or a bare number of seconds."""
    m = _DURATION.match(text.strip().lower())
    if m is None:
        raise typer.BadParameter(f"{text!r} is not a duration like 120s, 2m or 500ms")
    scale = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}[m[2]]
    return float(m[1]) * scale


def bench(
    trace: Annotated[
        Path | None, typer.Option(help="Trace to replay: Azure-style CSV or JSONL.")
    ] = None,
    rate_scale: Annotated[
        float,
        typer.Option(help="Rate multiplier over the same span (replays each request ~X times)."),
    ] = 1.0,
    time_compression: Annotated[
        float, typer.Option(help="Compress time by X (same requests, shorter trace).")
    ] = 1.0,
    start: Annotated[str, typer.Option(help="Replay from this offset into the trace.")] = "0s",
    duration: Annotated[
        str | None, typer.Option(help="Replay only this much of the trace (after compression).")
    ] = None,
    shape: Annotated[
        Path | None,
        typer.Option(
            help="Rate-shape CSV (window_start_s,total_rate_rps,…) to modulate the trace with."
        ),
    ] = None,
    shape_span: Annotated[
        str | None,
        typer.Option(help="Duration the rate shape is stretched over (default: the trace's)."),
    ] = None,
    objective: Annotated[
        str,
        typer.Option(
            help="Objective, e.g. p99-ttft<=1s/1m, p95-itl<=50ms or throughput:p99-e2e<=30s/1m (window: 1m unless given)."
        ),
    ] = "p99-ttft<=1s/1m",
    gpu: Annotated[
        str,
        typer.Option(
            help="GPU profile: h100, a100, or a preset with overrides (h100:a=8,kv=200000)."
        ),
    ] = "h100",
    cold_start: Annotated[
        str, typer.Option(help="Pod start to ready, for new replicas and batch restarts.")
    ] = "120s",
    policies: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated subset of: sloscale, static-peak, hpa-concurrency, keda-queue, knative-kpa, llm-d-slo, oracle."
        ),
    ] = None,
    max_replicas: Annotated[
        int, typer.Option(help="Upper bound on replicas for every policy.")
    ] = 64,
    tick: Annotated[str, typer.Option(help="Our control loop's tick.")] = "15s",
    batching: Annotated[bool, typer.Option(help="Let our law move --max-num-seqs.")] = True,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the results as JSON here.")
    ] = None,
    plots: Annotated[Path | None, typer.Option(help="Write PNG plots into this folder.")] = None,
    decisions: Annotated[
        Path | None,
        typer.Option(
            help="Write our law's decision log here (JSON lines, one per tick: what it saw, "
            "decided and why, next to the demand really offered)."
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed for the rate multiplier's jitter and the capacity test.")
    ] = 0,
    capacity_test: Annotated[
        str,
        typer.Option(
            help="Length of each run of the one-replica capacity test that sizes the peers."
        ),
    ] = "600s",
    curve: Annotated[
        bool,
        typer.Option(
            "--curve",
            help="Print one replica's throughput–latency curve across batch sizes instead.",
        ),
    ] = False,
    input_tokens: Annotated[
        int | None,
        typer.Option(help="--curve: prompt tokens (default: the trace's mean, else 1155)."),
    ] = None,
    output_tokens: Annotated[
        int | None,
        typer.Option(help="--curve: output tokens (default: the trace's mean, else 211)."),
    ] = None,
) -> None:
    """Replay a trace against our control law, the autoscalers SREs use today and the oracle."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from sloscale import traces
    from sloscale.engine import resolve_profile
    from sloscale.sim import bench as bench_mod
    from sloscale.sim import report

    console = Console()
    try:
        profile = resolve_profile(gpu)
        loaded = traces.load_trace(trace) if trace is not None else None
    except (ValueError, traces.TraceError) as exc:
        raise typer.BadParameter(str(exc)) from None

    if curve:
        from sloscale.sim.curve import curve as run_curve
        from sloscale.sim.curve import curve_plot, curve_table

        mean_in = round(float(loaded.input_tokens.mean())) if loaded is not None else 1155
        mean_out = round(float(loaded.output_tokens.mean())) if loaded is not None else 211
        i_tok, o_tok = input_tokens or mean_in, output_tokens or mean_out
        points = run_curve(profile, i_tok, o_tok)
        console.print(curve_table(profile, i_tok, o_tok, points))
        if plots is not None:
            console.print(f"plot: {curve_plot(profile, points, plots / 'curve.png')}")
        return

    if loaded is None:
        raise typer.BadParameter("--trace is required (or use --curve)")
    try:
        replay = bench_mod.prepare_trace(
            loaded,
            rate_scale=rate_scale,
            time_compression=time_compression,
            seed=seed,
            start_s=parse_duration(start),
            duration_s=parse_duration(duration) if duration else None,
        )
        if shape is not None:
            rate_shape = traces.load_rate_shape(shape)
            span = parse_duration(shape_span) if shape_span else replay.duration_s
            replay = replay.modulate(rate_shape, span)
        scenario = bench_mod.Scenario(
            trace_name=loaded.name,
            objective=objective,
            gpu=gpu,
            cold_start_s=parse_duration(cold_start),
            rate_scale=rate_scale,
            seed=seed,
            policies=bench_mod.policies_from(policies),
            max_replicas=max_replicas,
            tick_s=parse_duration(tick),
            batching=batching,
            capacity_test_s=parse_duration(capacity_test),
        )
    except (ValueError, traces.TraceError) as exc:
        raise typer.BadParameter(str(exc)) from None

    with Progress(
        TextColumn("{task.description:<18}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        tasks: dict[str, int] = {}

        def update(stage: str, done: float, total: float) -> None:
            if stage not in tasks:
                tasks[stage] = int(progress.add_task(stage, total=max(total, 1e-9)))
            progress.update(tasks[stage], completed=done, total=max(total, 1e-9))  # type: ignore[arg-type]

        try:
            result = bench_mod.run_bench(replay, scenario, update)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None

    console.print(report.table(result))
    sim_wall = sum(p["wall_s"] for p in result.policies.values())
    console.print(
        f"{len(replay)} requests over {replay.duration_s / 3600:.2f} simulated hours · "
        f"{len(result.policies)} policies simulated in {sim_wall:.1f}s · whole bench {result.scenario['wall_s']:.1f}s "
        f"(capacity test and oracle plan included)"
    )
    if json_path is not None:
        report.write_json(result, json_path)
        console.print(f"json: {json_path}")
    if decisions is not None:
        count = report.write_decisions(result, decisions)
        console.print(f"decisions: {decisions} ({count} ticks)")
    if plots is not None:
        for path in report.write_plots(result, plots):
            console.print(f"plot: {path}")
