"""`sloscale sandbox apiserver`: the emulator in the foreground until SIGTERM or SIGINT.

It loads the project's CRDs (`crds/*.yaml`, from the working directory or the source tree)
unless `--crd` names others, writes a kubeconfig, prints the server's URL on the first line of
standard output (so a parent process can read it) and exits 0 on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence
from pathlib import Path

from sloscale.apiserver.api import ApiServer


def default_crds() -> list[Path]:
    for folder in (Path.cwd() / "crds", Path(__file__).resolve().parents[3] / "crds"):
        if folder.is_dir():
            return sorted(folder.glob("*.yaml"))
    return []


async def _serve(kubeconfig: Path, port: int, host: str, crds: Sequence[Path]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with ApiServer(port=port, host=host, crds=crds) as api:
        api.write_kubeconfig(kubeconfig)
        print(api.url, flush=True)
        await stop.wait()


def serve(kubeconfig: Path, port: int = 0, host: str = "127.0.0.1", crds: Sequence[Path] | None = None) -> None:
    asyncio.run(_serve(kubeconfig, port, host, crds if crds else default_crds()))
