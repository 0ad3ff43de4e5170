"""`sloscale sandbox …` commands: bring the sandbox up and down, run one emulated pod, replay load.

`register(sandbox_app)` adds them to the CLI. Every import that pulls in aiohttp, numpy or the
Kubernetes client happens inside the command, so `sloscale --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def pod(ctx: typer.Context) -> None:
    """Run one emulated vLLM pod: vLLM's server arguments plus --speedup, --startup-delay, --shutdown-grace."""
    from sloscale.sandbox.vllm_emulator import main

    main(ctx.args)


def loadgen(
    url: Annotated[str, typer.Option(help="The OpenAI endpoint's base URL (loopback), e.g. http://127.0.0.1:8000.")],
    trace: Annotated[Path, typer.Option(help="Trace file: Azure CSV or JSONL.", exists=True, dir_okay=False)],
    rate_scale: Annotated[float, typer.Option(help="Multiply the trace's request rate (time compression).")] = 1.0,
    speedup: Annotated[float, typer.Option(help="Model seconds per real second; match the pods' --speedup.")] = 1.0,
    duration: Annotated[float | None, typer.Option(help="Replay this many trace seconds (after rate scaling).")] = None,
    start: Annotated[float, typer.Option(help="Skip this many trace seconds first (after rate scaling).")] = 0.0,
    max_requests: Annotated[int | None, typer.Option(help="Send at most this many requests.")] = None,
    api: Annotated[str, typer.Option(help="completions or chat.")] = "completions",
    model: Annotated[str | None, typer.Option(help="Served model name (default: the first in /v1/models).")] = None,
    max_in_flight: Annotated[int, typer.Option(help="Outstanding requests beyond this are dropped.")] = 512,
    max_context: Annotated[int | None, typer.Option(help="Clip input+output tokens to this.")] = None,
    timeout: Annotated[float, typer.Option(help="Stop after this many real seconds.")] = 600.0,
    engine_metrics: Annotated[
        list[str] | None, typer.Option("--metrics-url", help="Engine /metrics to compare with (repeatable).")
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Write the JSON report here.")] = None,
    per_request: Annotated[bool, typer.Option(help="Include every request in the JSON report.")] = False,
) -> None:
    """Replay a trace open-loop against an endpoint; print client-side (and engine) percentiles."""
    import asyncio

    from sloscale.sandbox.loadgen import LoadConfig, format_summary, replay
    from sloscale.traces import load_trace

    try:
        config = LoadConfig(
            url=url,
            model=model,
            api=api,
            speedup=speedup,
            duration_s=duration,
            max_requests=max_requests,
            max_in_flight=max_in_flight,
            max_context=max_context,
            timeout_s=timeout,
            metrics_urls=tuple(engine_metrics or ()),
        )
        replayed = load_trace(trace)
        if rate_scale != 1.0:
            replayed = replayed.scale_rate(rate_scale)
        if start > 0:
            replayed = replayed.slice(start)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    report = asyncio.run(replay(config, replayed))
    typer.echo(format_summary(report.summary()))
    if output is not None:
        output.write_text(report.to_json(per_request))


def up(
    dir: Annotated[Path, typer.Option("--dir", help="Where the sandbox keeps its kubeconfig, state and logs.")],
    speedup: Annotated[float, typer.Option(help="Model seconds per real second in every emulated pod.")] = 1.0,
    cold_start: Annotated[float, typer.Option(help="Model seconds from pod start to ready (the model load).")] = 20.0,
    gpu_profile: Annotated[str, typer.Option(help="Emulated GPU: H100, A100, or e.g. h100:a=8.5.")] = "H100",
    operator: Annotated[bool, typer.Option(help="Also run the operator (`sloscale run`).")] = True,
    operator_tick: Annotated[str, typer.Option(help="The operator's reconcile interval.")] = "5s",
    operator_rate_window: Annotated[
        str, typer.Option(help="The operator's rate() range over the pods' metrics (scrapes every second).")
    ] = "1m",
    timeout: Annotated[float, typer.Option(help="Give up if not ready after this many seconds.")] = 90.0,
    real_engine: Annotated[
        bool, typer.Option(help="Run pods of vLLM's server image as the real vLLM CPU engine (.venv-vllm; docs/real-engine.md).")
    ] = False,
) -> None:
    """Start the sandbox in the background: API emulator, Prometheus, emulated pods, the operator."""
    from sloscale.sandbox.sandbox import SandboxConfig, SandboxError
    from sloscale.sandbox.sandbox import up as start

    try:
        config = SandboxConfig(
            dir,
            speedup=speedup,
            cold_start_s=cold_start,
            gpu_profile=gpu_profile,
            operator=operator,
            operator_tick=operator_tick,
            operator_rate_window=operator_rate_window,
            real_engine=real_engine,
        )
        state = start(config, timeout)
    except SandboxError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"sandbox up in {state['directory']}")
    typer.echo(f"  export KUBECONFIG={state['kubeconfig']}")
    typer.echo(f"  Prometheus  {state['prometheus']['url']}")
    if state.get("operator"):
        typer.echo(f"  operator    pid {state['operator']['pid']}, log {state['operator']['log']}")
    else:
        typer.echo("  operator    not started")
    typer.echo(f"Service URLs appear in {state['directory']}/sandbox.json; stop with `sloscale sandbox down --dir {dir}`.")


def down(dir: Annotated[Path, typer.Option("--dir", help="The directory given to `up`.")]) -> None:
    """Stop everything the sandbox in DIR started."""
    from sloscale.sandbox.sandbox import down as stop

    typer.echo("sandbox stopped" if stop(dir) else f"no sandbox in {dir}")


def register(sandbox_app: typer.Typer) -> None:
    sandbox_app.command()(up)
    sandbox_app.command()(down)
    sandbox_app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(pod)
    sandbox_app.command()(loadgen)
