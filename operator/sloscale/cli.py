"""The `sloscale` command line: run the operator, the sandbox and the bench.

Each subcommand lives next to the code it drives; this module only wires them together so that
`sloscale --help` lists everything an SRE can do.
"""

from __future__ import annotations

import typer

from sloscale import run as run_command
from sloscale.sandbox import commands as sandbox_commands

app = typer.Typer(
    name="sloscale",
    help="Autoscale vLLM inference to a declared latency or throughput objective.",
    no_args_is_help=True,
    add_completion=False,
)
sandbox_app = typer.Typer(help="The local sandbox: Kubernetes API emulator, emulated vLLM pods, Prometheus.")
app.add_typer(sandbox_app, name="sandbox")
sandbox_commands.register(sandbox_app)
app.command(name="run")(run_command.run)


@app.command()
def version() -> None:
    """Print the sloscale version."""
    from sloscale import __version__

    typer.echo(__version__)


def main() -> None:
    app()
