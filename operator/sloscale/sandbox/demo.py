"""`sloscale sandbox demo` (`make demo`): the product end to end in a few minutes, on one machine.

1. Bring the sandbox up (`sandbox.up`): the Kubernetes API emulator, a real Prometheus, emulated
   A100 pods and the operator ticking every 2 s.
2. Apply `examples/chat-p99-ttft.yaml` (p99 time to first token under 1 s) with sandbox timings:
   a 30 s evaluation window instead of 5 m, a 10 s cold start instead of 3 m, short stabilisation
   and batch cooldown, the emulated GPU, and batch bounds of 8–32 so that a few requests per
   second — what two shared cores can stream — need more than one replica.
3. Replay three minutes of the Azure LLM conversation trace, compressed four times, through the
   Service: a steady load, a one-minute rise to a burst of about five times that, then a quiet tail; afterwards keep
   watching until the replicas are given back (at most `settle_s`).
4. Show live progress (replicas current/ready/desired, batch, the operator's observed p99 against
   the target and the client's own, queue, the last decision), then print a scorecard: share of
   evaluation windows met from the client's side, client p50/p99 against the target, GPU-hours
   against a static fleet at the peak, decisions made.
5. Write `latency.png` (p99 TTFT against the target over time), `levers.png` (replicas and batch
   over time, with the offered load) and `demo.json` into the output directory.
6. Tear everything down — also on Ctrl-C, SIGTERM or an error (`sandbox.down`), and say so.

Pods run at speed-up 1: the operator reads counter rates per real second and latencies per model
second, so only at speed-up 1 does its capacity model see consistent units. Time is compressed in
the trace and in the InferenceService's windows instead.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from sloscale.sandbox.loadgen import LoadGenerator, LoadReport, RequestRecord
    from sloscale.sandbox.scenario import Sample, Scorecard, StatusSampler

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "chat-p99-ttft.yaml"
AZURE_CONV = (
    ROOT.parent / "shared/data/traces/azure_llm_inference_2023/AzureLLMInferenceTrace_conv.csv"
)
NAMESPACE = "default"


@dataclass(frozen=True)
class Plan:
    """The demo's scenario. Rates are requests/s per window; times are real seconds."""

    phases: tuple[tuple[str, int, float], ...] = (
        ("steady", 2, 1.5),
        ("rising", 4, 8.0),
        ("burst", 2, 8.0),
        ("falling", 1, 3.0),
        ("quiet", 3, 0.5),
    )
    # Phases that climb window by window from the rate before them to their own: a rise the
    # operator can see coming (a trend), where a step within one cold start could not be.
    ramps: tuple[str, ...] = ("rising",)
    window_s: float = 15.0
    trace_start_s: float = 600.0  # ten minutes into the trace
    compression: float = 4.0
    settle_s: float = 120.0  # after the load, wait this long at most for the replicas to return
    cold_start_s: float = 10.0
    operator_tick: str = "2s"
    # Rates over a quarter of the usual minute, as the trace's time is compressed four times.
    operator_rate_window: str = "15s"
    gpu_profile: str = "A100"

    @property
    def rates(self) -> list[float]:
        rates: list[float] = []
        for name, windows, rate in self.phases:
            before = rates[-1] if rates and name in self.ramps else rate
            rates += [before + (rate - before) * (k + 1) / windows for k in range(windows)]
        return rates

    @property
    def load_s(self) -> float:
        return len(self.rates) * self.window_s

    def phase_at(self, t: float) -> str:
        end = 0.0
        for name, windows, _ in self.phases:
            end += windows * self.window_s
            if t < end:
                return name
        return "after the load"

    def span(self, phase: str) -> tuple[float, float]:
        start = 0.0
        for name, windows, _ in self.phases:
            if name == phase:
                return start, start + windows * self.window_s
            start += windows * self.window_s
        raise KeyError(phase)


def demo_spec(example: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """The example InferenceService with the sandbox's timings (see the module docstring)."""
    doc = {**example, "metadata": {"name": example["metadata"]["name"], "namespace": NAMESPACE}}
    spec = dict(doc["spec"])
    spec["engine"] = {**spec.get("engine", {}), "gpuProfile": plan.gpu_profile}
    objective = dict(spec["objective"])
    objective["latency"] = {**objective["latency"], "window": "30s"}
    spec["objective"] = objective
    spec["batching"] = {
        **spec.get("batching", {}),
        "minMaxNumSeqs": 8,
        "initialMaxNumSeqs": 16,
        "maxMaxNumSeqs": 32,
        "cooldown": "30s",
    }
    spec["behavior"] = {
        "scaleUp": {"stabilizationWindow": "0s", "period": "4s"},
        "scaleDown": {"stabilizationWindow": "20s", "period": "10s", "maxReplicasPerPeriod": 2},
    }
    spec["coldStart"] = f"{plan.cold_start_s:g}s"
    doc["spec"] = spec
    return doc


# -- live progress ---------------------------------------------------------------------------------


def client_p99(records: list[RequestRecord], now_s: float, span_s: float = 30.0) -> float | None:
    """The client-side p99 TTFT of requests sent in the last `span_s` seconds that have one."""
    from sloscale.sandbox.scenario import quantile

    recent = [
        r.ttft_s
        for r in records
        if r.ttft_s is not None and r.sent_s is not None and r.sent_s >= now_s - span_s
    ]
    return quantile(recent, 0.99)


def offered_rate(records: list[RequestRecord], now_s: float, span_s: float = 10.0) -> float:
    return sum(1 for r in records if now_s - span_s <= r.scheduled_s < now_s) / span_s


def fmt_s(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f}ms" if value < 1.0 else f"{value:.2f}s"


def live_view(
    plan: Plan,
    target_s: float,
    now_s: float,
    latest: Sample | None,
    records: list[RequestRecord],
    decisions: list[dict[str, Any]],
) -> RenderableType:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    s = latest
    phase = plan.phase_at(now_s)
    header = Text.assemble(
        ("sloscale demo ", "bold"),
        f"t={now_s:5.0f}s  phase: ",
        (phase, "bold magenta"),
        f"  offered {offered_rate(records, now_s):.1f} req/s  sent {len(records)} requests",
    )
    state = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    for column in (
        "replicas cur/ready/desired",
        "batch",
        "p99 TTFT (operator)",
        "p99 TTFT (client, 30s)",
        "target",
        "queue",
        "met",
    ):
        state.add_column(column)
    client = client_p99(records, now_s)
    observed = s.observed_s if s else None
    met = "-" if s is None or s.met is None else ("yes" if s.met else "NO")
    state.add_row(
        f"{_n(s and s.replicas)}/{_n(s and s.ready)}/{_n(s and s.desired)}",
        f"{_n(s and s.batch)}"
        + (f"→{s.batch_desired}" if s and s.batch_desired not in (None, s.batch) else ""),
        _colour(observed, target_s),
        _colour(client, target_s),
        fmt_s(target_s),
        _n(s and s.queue),
        met,
    )
    log = Table(
        show_header=True,
        header_style="bold",
        box=None,
        padding=(0, 2),
        title="decisions",
        title_justify="left",
    )
    log.add_column("time")
    log.add_column("event")
    log.add_column("message", overflow="ellipsis", no_wrap=True, max_width=100)
    for event in decisions[-6:]:
        stamp = str(event.get("lastTimestamp") or "")[11:19]
        log.add_row(stamp, str(event.get("reason")), str(event.get("message")))
    return Group(header, state, log)


def _n(value: object) -> str:
    return "-" if value is None or value is False else str(value)


def _colour(value: float | None, target_s: float) -> str:
    if value is None:
        return "-"
    return f"[green]{fmt_s(value)}[/]" if value <= target_s else f"[red]{fmt_s(value)}[/]"


# -- plots -----------------------------------------------------------------------------------------


def write_plots(
    out: Path,
    plan: Plan,
    samples: list[Sample],
    records: list[RequestRecord],
    *,
    target_s: float,
    load_start_s: float,
    objective: str,
) -> list[Path]:
    """`latency.png` and `levers.png` in `out`; x is seconds since the load began, the load's
    phases are shaded and named."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes

    from sloscale.sandbox.scenario import window_quantiles

    out.mkdir(parents=True, exist_ok=True)
    t = [s.t - load_start_s for s in samples]

    def phases(ax: Axes, names: bool) -> None:
        start = 0.0
        for i, (name, windows, _) in enumerate(plan.phases):
            end = start + windows * plan.window_s
            ax.axvspan(
                start,
                end,
                color="tab:red" if name == "burst" else "0.5",
                alpha=0.08 if i % 2 == 0 or name == "burst" else 0.03,
                linewidth=0,
            )
            if names:
                ax.text(
                    (start + end) / 2,
                    1.01,
                    name,
                    transform=ax.get_xaxis_transform(),
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    color="0.3",
                )
            start = end

    fig, ax = plt.subplots(figsize=(10, 4.8), dpi=110)
    windows = window_quantiles(records, 10.0, 0.99)
    if windows:  # a step per 10 s window, drawn to the window's end; empty windows leave a gap
        values = [math.nan if w.value_s is None else w.value_s for w in windows]
        ax.step(
            [w.start_s for w in windows] + [windows[-1].start_s + 10.0], values + values[-1:],
            where="post", color="tab:blue", linewidth=2, label="client p99, per 10 s of requests (what users saw)",
        )  # fmt: skip
    observed = [
        (x, v)
        for x, s in zip(t, samples, strict=True)
        if (v := s.observed_s) is not None and math.isfinite(v)
    ]
    if observed:
        ax.plot(
            *zip(*observed, strict=True),
            color="tab:orange",
            linewidth=1.5,
            label="operator's p99 (vLLM's histograms in Prometheus)",
        )
    ax.axhline(
        target_s, color="tab:red", linestyle="--", linewidth=1.5, label=f"target {fmt_s(target_s)}"
    )
    phases(ax, names=True)
    ax.set_xlim(min(0.0, t[0] if t else 0.0), max(t[-1] if t else 0.0, plan.load_s))
    shown = [v for _, v in observed] + [w.value_s for w in windows if w.value_s is not None]
    ax.set_ylim(0, 1.15 * max([1.3 * target_s, *shown]))
    ax.set_xlabel("seconds since the load began")
    ax.set_ylabel("time to first token (s)")
    ax.set_title(f"{objective}: observed against the target", pad=16)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    written = [out / "latency.png"]
    fig.savefig(written[-1])
    plt.close(fig)

    fig, (load, replicas, batch) = plt.subplots(
        3, 1, figsize=(10, 7.5), dpi=110, sharex=True, height_ratios=[1, 2, 1]
    )
    edges = [i * 10.0 for i in range(int(plan.load_s // 10) + 1)]
    load.step(
        edges,
        [offered_rate(records, e + 10.0) for e in edges],
        where="post",
        color="tab:blue",
        linewidth=2,
    )
    load.set_ylabel("offered load\n(req/s)")
    load.set_ylim(bottom=0)
    load.set_title("the load and the two levers: replicas and batch size", pad=16)
    phases(load, names=True)
    replicas.step(
        t, [s.desired for s in samples], where="post", color="0.4", linestyle="--", label="desired"
    )
    replicas.step(
        t,
        [s.pods for s in samples],
        where="post",
        color="tab:purple",
        alpha=0.7,
        label="pods (starting and draining included)",
    )
    replicas.step(
        t, [s.ready for s in samples], where="post", color="tab:green", linewidth=2, label="ready"
    )
    replicas.set_ylabel("replicas")
    replicas.set_ylim(
        0, max([s.pods or 0 for s in samples] + [s.desired or 0 for s in samples] + [1]) + 1
    )
    replicas.yaxis.get_major_locator().set_params(integer=True)
    replicas.legend(loc="upper left", fontsize=8)
    phases(replicas, names=False)
    batch.step(t, [s.batch for s in samples], where="post", color="tab:brown", linewidth=2)
    batch.set_ylabel("batch\n(--max-num-seqs)")
    batch.set_ylim(0, max([s.batch or 0 for s in samples] + [1]) * 1.25)
    batch.set_xlabel("seconds since the load began")
    phases(batch, names=False)
    for axis in (load, replicas, batch):
        axis.grid(alpha=0.3)
    fig.tight_layout()
    written.append(out / "levers.png")
    fig.savefig(written[-1])
    plt.close(fig)
    return written


def scorecard_table(card: Scorecard, objective: str, wall_s: float) -> RenderableType:
    from rich.table import Table

    table = Table(title="scorecard", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    share = card.met_fraction
    table.add_row("objective", f"{objective}, judged per 30 s window")
    table.add_row(
        "windows met (client side)",
        f"{card.windows_met}/{card.windows}" + (f" ({share:.0%})" if share is not None else ""),
    )
    table.add_row("attainment (operator)", card.operator_attainment or "-")
    table.add_row(
        "client TTFT p50 / p99",
        f"{fmt_s(card.p50_s)} / {_colour(card.p99_s, card.target_s)} (target {fmt_s(card.target_s)})",
    )
    table.add_row("requests", f"{card.requests}, {card.failed} failed")
    saving = 1 - card.gpu_hours / card.static_peak_gpu_hours if card.static_peak_gpu_hours else 0.0
    table.add_row(
        "GPU-hours",
        f"{card.gpu_hours:.3f} (static at the peak of {card.peak_replicas}: "
        f"{card.static_peak_gpu_hours:.3f}, {saving:.0%} saved)",
    )
    table.add_row(
        "decisions", ", ".join(f"{k} {v}" for k, v in sorted(card.decisions.items())) or "none"
    )
    table.add_row("wall time", f"{wall_s:.0f} s")
    return table


# -- the command -----------------------------------------------------------------------------------


class Interrupted(Exception):
    """SIGTERM: end the demo the way Ctrl-C does, through the teardown."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def demo(
    out: Annotated[
        Path, typer.Option(help="Where the plots, demo.json and the sandbox's logs go.")
    ] = Path("demo-output"),
    trace: Annotated[
        Path, typer.Option(help="The Azure LLM conversation trace (CSV).", dir_okay=False)
    ] = AZURE_CONV,
    example: Annotated[
        Path, typer.Option(help="The InferenceService to apply.", dir_okay=False)
    ] = EXAMPLE,
) -> None:
    """Run sloscale end to end on the local sandbox: a real trace with a burst, live progress, a
    scorecard and plots; everything is torn down at the end, on Ctrl-C and on failure."""
    from rich.console import Console

    console = Console()
    for path, what in ((trace, "trace"), (example, "example")):
        if not path.is_file():
            console.print(
                f"[red]no {what} at {path}[/] (the Azure trace: https://github.com/Azure/AzurePublicDataset)"
            )
            raise typer.Exit(2)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = run_demo(console, out.resolve(), trace, example, Plan())
    finally:
        signal.signal(signal.SIGTERM, previous)
    raise typer.Exit(code)


def run_demo(console: Console, out: Path, trace_path: Path, example_path: Path, plan: Plan) -> int:
    """The demo; returns the exit status (0, 1 on failure, 130 when interrupted)."""
    import yaml

    from sloscale.sandbox.prometheus import PrometheusNotInstalled, find_binary
    from sloscale.sandbox.sandbox import SandboxConfig, SandboxError, down, up

    try:
        find_binary()
    except PrometheusNotInstalled as err:
        console.print(f"[red]{err}[/]")
        return 1
    started = time.monotonic()
    sandbox_dir = out / "sandbox"
    out.mkdir(parents=True, exist_ok=True)
    try:
        console.print(
            f"[bold]sandbox[/] starting in {sandbox_dir} (API emulator, Prometheus, operator) …"
        )
        state = up(
            SandboxConfig(
                sandbox_dir,
                speedup=1.0,
                cold_start_s=plan.cold_start_s,
                gpu_profile=plan.gpu_profile,
                operator_tick=plan.operator_tick,
                operator_rate_window=plan.operator_rate_window,
            ),
            timeout_s=120,
        )
        spec = demo_spec(yaml.safe_load(example_path.read_text()), plan)
        return _scenario(console, out, state, spec, trace_path, plan, started)
    except (KeyboardInterrupt, Interrupted):
        console.print("\n[yellow]interrupted[/]")
        return 130
    except (SandboxError, RuntimeError) as err:
        console.print(f"[red]{err}[/]")
        return 1
    finally:
        console.print("[bold]sandbox[/] stopping …")
        stopped = down(sandbox_dir)
        console.print(
            f"[bold]sandbox[/] {'stopped: nothing left running' if stopped else 'was not running'}; logs in {sandbox_dir}"
        )


@dataclass
class Watch:
    """What the live view follows while the load runs and the replicas settle."""

    plan: Plan
    console: Console
    api: Any  # sloscale.kube.KubeApi
    sampler: StatusSampler
    name: str
    target_s: float
    floor: int  # spec.replicas.min: the scale-down is over when the service is back to it
    decisions: list[dict[str, Any]] = field(default_factory=list)

    def settled(self) -> bool:
        s = self.sampler.latest
        return bool(
            s
            and s.replicas == self.floor
            and s.pods == self.floor
            and (s.desired or 0) <= self.floor
        )

    def line(self, now_s: float, records: list[RequestRecord]) -> str:
        """One line of progress, for output that is not a terminal."""
        s = self.sampler.latest
        last = f"{s.action} ({(s.reason or '').split(':')[0]})" if s and s.action else "-"
        return (
            f"t={now_s:4.0f}s {self.plan.phase_at(now_s):<14} offered {offered_rate(records, now_s):4.1f} req/s  "
            f"replicas {_n(s and s.replicas)}/{_n(s and s.ready)}/{_n(s and s.desired)}  batch {_n(s and s.batch)}  "
            f"p99 TTFT {fmt_s(s.observed_s if s else None)} (client {fmt_s(client_p99(records, now_s))}, "
            f"target {fmt_s(self.target_s)})  last {last}"
        )


async def replay_and_watch(watch: Watch, generator: LoadGenerator) -> tuple[LoadReport, float]:
    """Run the load; show progress every second until it has ended and the replicas are back to
    the minimum (or `settle_s` has passed). Returns the report and when the load began."""
    import asyncio
    import contextlib

    from rich.live import Live

    from sloscale.sandbox.scenario import events_of

    run = asyncio.create_task(generator.run())
    load_start = watch.sampler.now()
    last_events = last_line = -math.inf
    settle_end = math.inf
    live = Live(console=watch.console, refresh_per_second=2) if watch.console.is_terminal else None
    with live or contextlib.nullcontext():
        while True:
            now = watch.sampler.now()
            if now - last_events >= 3:
                last_events = now
                found = await asyncio.to_thread(events_of, watch.api, NAMESPACE, watch.name)
                watch.decisions[:] = [e for e in found if e.get("reason") != "MetricsRestored"]
            t = now - load_start
            if live is not None:
                live.update(
                    live_view(
                        watch.plan,
                        watch.target_s,
                        t,
                        watch.sampler.latest,
                        generator.records,
                        watch.decisions,
                    )
                )
            elif now - last_line >= 10:
                last_line = now
                watch.console.print(watch.line(t, generator.records), soft_wrap=True)
            if run.done():
                settle_end = min(settle_end, now + watch.plan.settle_s)
                if now >= settle_end or watch.settled():
                    break
            await asyncio.sleep(1.0)
    return run.result(), load_start


def _scenario(
    console: Console,
    out: Path,
    state: dict[str, Any],
    spec: dict[str, Any],
    trace_path: Path,
    plan: Plan,
    started: float,
) -> int:
    import asyncio
    import json
    from dataclasses import asdict

    import yaml

    from sloscale.kube import KubeApi
    from sloscale.resource import parse_duration, percentile_quantile
    from sloscale.sandbox.loadgen import LoadConfig, LoadGenerator, format_summary
    from sloscale.sandbox.scenario import StatusSampler, events_of, scorecard, shaped_trace
    from sloscale.traces import load_trace

    name = spec["metadata"]["name"]
    latency = spec["spec"]["objective"]["latency"]
    target_s = parse_duration(latency["target"])
    objective = f"{latency.get('percentile', 'p99')} time to first token ≤ {latency['target']}"
    kubeconfig = Path(state["kubeconfig"])
    _kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(spec))
    console.print(
        f"[bold]applied[/] InferenceService {name}: {objective} ({EXAMPLE.name} with sandbox timings)"
    )
    load = shaped_trace(
        load_trace(trace_path),
        plan.rates,
        plan.window_s,
        start_s=plan.trace_start_s,
        compression=plan.compression,
    )
    console.print(
        f"[bold]load[/] {len(load)} requests: {plan.load_s * plan.compression / 60:.0f} min of {trace_path.name} "
        f"from minute {plan.trace_start_s / 60:.0f}, {plan.compression:g}× compressed into {plan.load_s / 60:.0f}; "
        + ", ".join(
            f"{p} {'to ' if p in plan.ramps else ''}{r:g} req/s" for p, _, r in plan.phases
        )
    )
    api = KubeApi.connect(str(kubeconfig))
    try:
        with StatusSampler(api, NAMESPACE, name, period_s=1.0) as sampler:
            url = _wait(lambda: _router(Path(state["directory"]), name), 60, "the Service's router")
            _wait(
                lambda: (s := sampler.latest) and (s.ready or 0) >= 1,
                90,
                "the first pod to be ready",
            )
            watch = Watch(
                plan, console, api, sampler, name, target_s, floor=spec["spec"]["replicas"]["min"]
            )
            generator = LoadGenerator(LoadConfig(url=url, timeout_s=plan.load_s + 300), load)
            report, load_start = asyncio.run(replay_and_watch(watch, generator))
            samples = list(sampler.samples)
        events = events_of(api, NAMESPACE, name)
    finally:
        api.close()

    quantile = percentile_quantile(latency.get("percentile", "p99"))
    card = scorecard(
        report.records, samples, events, target_s=target_s, percentile=quantile, window_s=30.0
    )
    wall = time.monotonic() - started
    console.print(format_summary(report.summary()))
    console.print(scorecard_table(card, objective, wall))
    plots = write_plots(
        out,
        plan,
        samples,
        report.records,
        target_s=target_s,
        load_start_s=load_start,
        objective=objective,
    )
    result = {
        "objective": objective,
        "inference_service": spec,
        "scorecard": asdict(card),
        "load": report.summary(),
        "timeline": [asdict(s) | {"t": s.t - load_start} for s in samples],
        "events": [
            {k: e.get(k) for k in ("reason", "message", "lastTimestamp", "count")} for e in events
        ],
        "requests": [asdict(r) for r in report.records],
        "wall_s": wall,
    }
    (out / "demo.json").write_text(json.dumps(result, indent=1, default=str))
    console.print(
        f"[bold]plots[/] {', '.join(str(p) for p in plots)}; the run as JSON: {out / 'demo.json'}"
    )
    return 0


def _router(directory: Path, name: str) -> str | None:
    import json

    try:
        services: dict[str, str] = json.loads((directory / "sandbox.json").read_text()).get(
            "services", {}
        )
    except (OSError, ValueError):
        return None
    return services.get(f"{NAMESPACE}/{name}")


def _wait(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise RuntimeError(f"timed out after {timeout_s:g}s waiting for {what}")


def _kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    import subprocess

    kubectl = Path(sys.executable).parent / "kubectl"
    done = subprocess.run(
        [str(kubectl), "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout
