"""The `sloscale` command line: run the operator, the sandbox and the bench.

Each subcommand lives next to the code it drives; this module only wires them together so that
`sloscale --help` lists everything an SRE can do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sloscale import run as run_command
from sloscale.sandbox import commands as sandbox_commands
from sloscale.sandbox import demo as demo_command
from sloscale.sim import command as bench_command

app = typer.Typer(
    name="sloscale",
    help="Autoscale vLLM inference to a declared latency or throughput objective.",
    no_args_is_help=True,
    add_completion=False,
)
sandbox_app = typer.Typer(help="The local sandbox: Kubernetes API emulator, emulated vLLM pods, Prometheus.")
app.add_typer(sandbox_app, name="sandbox")
sandbox_commands.register(sandbox_app)
sandbox_app.command("demo")(demo_command.demo)
app.command(name="run")(run_command.run)
app.command(name="bench")(bench_command.bench)


@sandbox_app.command("apiserver")
def apiserver(
    kubeconfig: Annotated[Path, typer.Option(help="Where to write a kubeconfig that points at the emulator.")],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1; 0 picks a free one.")] = 0,
    crd: Annotated[list[Path] | None, typer.Option(help="CRD manifests to load instead of the project's crds/.")] = None,
) -> None:
    """Run the Kubernetes API emulator in the foreground; prints its URL, stops on SIGTERM/SIGINT."""
    from sloscale.apiserver.main import serve

    serve(kubeconfig, port, crds=crd)


@app.command()
def version() -> None:
    """Print the sloscale version."""
    from sloscale import __version__

    typer.echo(__version__)


def main() -> None:
    app()
