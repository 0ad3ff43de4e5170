"""`sloscale sandbox up|down`: the whole product on one machine, without a cluster or a GPU.

`up --dir DIR` starts a supervisor process in the background and returns once everything is ready:

1. the Kubernetes API emulator (`sloscale.apiserver.ApiServer`) on loopback, with the project's
   CRDs, and `DIR/kubeconfig` for kubectl, kopf and clients;
2. a real Prometheus (`sandbox.prometheus.PrometheusServer`, data under `DIR/prometheus`) whose
   file_sd targets follow the pods;
3. the kubelet stand-in (`sandbox.kubelet`), which runs Deployments as emulated vLLM pods,
   keeps Endpoints, routes each Service through a local router, and tells Prometheus about pods;
   with `--real-engine`, pods of vLLM's server image run the real vLLM CPU engine instead, on a
   tiny random Llama built into `DIR/model` (`docs/real-engine.md`);
4. the operator as its own process, `sloscale run --kubeconfig DIR/kubeconfig --prometheus-url …`
   (skipped with `--no-operator`, or when this installation has no `run` command).

The supervisor writes `DIR/sandbox.json` — URLs, the kubeconfig path, every process id (its own,
Prometheus', the operator's and each pod's) and each Service's router URL — and keeps it current
as pods come and go. `down --dir DIR` sends the supervisor SIGTERM; it stops the operator, drains
and stops the pods, stops Prometheus and the API emulator, and exits. If the supervisor is gone or
does not stop in time, `down` kills every process the state file names (after checking each is
still the process it recorded). Pods and the operator are also tied to the supervisor's life
(PR_SET_PDEATHSIG), so nothing outlives a killed supervisor for long.

Pods run with `--speedup`, a cold start of `--cold-start` model seconds (see `realtime_engine`
for the time convention) and the GPU timing of `--gpu-profile`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sloscale.sandbox.processes import free_port, stop_process

STATE_FILE = "sandbox.json"
PID_FILE = "sandbox.pid"
LOG_FILE = "sandbox.log"
log = logging.getLogger("sloscale.sandbox")


class SandboxError(RuntimeError):
    """The sandbox could not be brought up or down; the message says why and what to do."""


@dataclass(frozen=True)
class SandboxConfig:
    directory: Path
    speedup: float = 1.0
    cold_start_s: float = 20.0  # model seconds
    gpu_profile: str = "H100"
    operator: bool = True
    operator_tick: str = "5s"
    operator_rate_window: str = "1m"  # the operator's rate() range (`sloscale run --rate-window`)
    scrape_interval_s: float = 1.0
    # Pods of vLLM's server image run the real CPU engine (`real_vllm.PodEngine`).
    real_engine: bool = False
    vllm_python: Path | None = None  # default: real_vllm.find_python()
    model_dir: Path | None = None  # the tiny model; default DIR/model, built when missing


def operator_available() -> bool:
    """Whether this installation has the `sloscale run` command."""
    import typer.main

    from sloscale.cli import app

    group = typer.main.get_command(app)
    return "run" in getattr(group, "commands", {})



def _die_with_parent() -> None:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


class Sandbox:
    """Everything `up` runs, in the supervisor process. `await start()`, then `await stop()`."""

    def __init__(self, config: SandboxConfig) -> None:
        from sloscale.apiserver import ApiServer
        from sloscale.apiserver.main import default_crds

        self.config = config
        self.dir = config.directory.resolve()
        self.api = ApiServer(port=0, crds=default_crds())
        self.prometheus: Any = None
        self.kubelet: Any = None
        self.operator: subprocess.Popen[bytes] | None = None
        self._state: dict[str, Any] = {}
        self._ready = False

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    async def start(self) -> None:
        from sloscale.sandbox.kubelet import Kubelet, KubeletConfig
        from sloscale.sandbox.prometheus import PrometheusServer

        self.dir.mkdir(parents=True, exist_ok=True)
        real_engine = await asyncio.to_thread(self._real_engine)
        await self.api.start()
        self.api.write_kubeconfig(self.kubeconfig)
        log.info("API emulator at %s; kubeconfig %s", self.api.url, self.kubeconfig)
        self.prometheus = PrometheusServer(self.dir / "prometheus", scrape_interval_s=self.config.scrape_interval_s)
        await asyncio.to_thread(self.prometheus.start)
        log.info("Prometheus at %s", self.prometheus.url)
        self.kubelet = Kubelet(
            KubeletConfig(
                self.kubeconfig,
                self.dir,
                speedup=self.config.speedup,
                cold_start_s=self.config.cold_start_s,
                gpu_profile=self.config.gpu_profile,
                real_engine=real_engine,
            ),
            on_targets=self.prometheus.set_targets,
            on_change=self.write_state,
        )
        await self.kubelet.start()
        if self.config.operator and operator_available():
            self._start_operator()
        self._ready = True
        self.write_state()

    def _real_engine(self) -> Any:
        """The kubelet's `PodEngine` when real engines are asked for (the model built if missing);
        raises VllmNotInstalled without the vLLM venv."""
        if not self.config.real_engine:
            return None
        from sloscale.sandbox.real_vllm import PodEngine, ensure_tiny_model, find_python

        python = find_python(self.config.vllm_python)
        model = ensure_tiny_model(self.config.model_dir or self.dir / "model", python)
        log.info("pods of vLLM's server image run the real engine (%s, model %s)", python, model)
        return PodEngine(python, Path(model).resolve())

    def _start_operator(self) -> None:
        argv = [
            sys.executable, "-m", "sloscale", "run",
            "--kubeconfig", str(self.kubeconfig),
            "--prometheus-url", self.prometheus.url,
            "--metrics-port", str(free_port()),
            "--tick-interval", self.config.operator_tick,
            "--rate-window", self.config.operator_rate_window,
        ]  # fmt: skip
        with (self.dir / "operator.log").open("ab") as out:
            self.operator = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
            )
        log.info("operator started (pid %d), log %s", self.operator.pid, self.dir / "operator.log")

    async def stop(self) -> None:
        """Stop in reverse order; every step runs even if an earlier one failed."""
        self._ready = False
        if self.operator is not None:
            await asyncio.to_thread(stop_process, self.operator, 15)
        if self.kubelet is not None:
            with contextlib.suppress(Exception):
                await self.kubelet.stop()
        if self.prometheus is not None:
            await asyncio.to_thread(self.prometheus.stop)
        await self.api.stop()
        with contextlib.suppress(FileNotFoundError):
            (self.dir / STATE_FILE).unlink()

    def state(self) -> dict[str, Any]:
        operator = None
        if self.operator is not None:
            code = self.operator.poll()
            operator = {"pid": self.operator.pid, "running": code is None, "exit_code": code, "log": str(self.dir / "operator.log")}
        return {
            "pid": os.getpid(),
            "ready": self._ready,
            "directory": str(self.dir),
            "kubeconfig": str(self.kubeconfig),
            "api_url": self.api.url,
            "prometheus": {"url": self.prometheus.url, "pid": self.prometheus.pid} if self.prometheus else None,
            "operator": operator,
            "speedup": self.config.speedup,
            "cold_start_s": self.config.cold_start_s,
            "gpu_profile": self.config.gpu_profile,
            "real_engine": self.config.real_engine,
            **(self.kubelet.snapshot() if self.kubelet is not None else {}),
        }

    def write_state(self) -> None:
        state = self.state()
        if state != self._state:
            write_json(self.dir / STATE_FILE, state)
            self._state = state


async def serve(config: SandboxConfig) -> int:
    """The supervisor: start, wait for SIGTERM/SIGINT, stop. Exit status 1 if starting failed."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sandbox = Sandbox(config)
    try:
        await sandbox.start()
    except Exception:
        log.exception("the sandbox failed to start")
        await sandbox.stop()
        return 1
    try:
        while not stop.is_set():
            sandbox.write_state()  # the operator's liveness changes without a kubelet pass
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)
    finally:
        log.info("stopping")
        await sandbox.stop()
    return 0


# -- up and down, from the command line ----------------------------------------------------------


def _alive(pid: int, marker: str) -> bool:
    """Whether `pid` runs and its command line still contains `marker` (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return marker in cmdline and stat.rsplit(")", 1)[-1].split()[0] != "Z"


def read_state(directory: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((directory / STATE_FILE).read_text())
        return state
    except (OSError, json.JSONDecodeError):
        return None


def _supervisor_pid(directory: Path) -> int | None:
    try:
        return int((directory / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


SUPERVISOR_MARKER = "sloscale.sandbox.sandbox"
REAL_ENGINE_MARKER = "vllm.entrypoints.openai.api_server"


def up(config: SandboxConfig, timeout_s: float = 90.0) -> dict[str, Any]:
    """Start a sandbox in the background; return its state once ready. Raise SandboxError."""
    directory = config.directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    running = _supervisor_pid(directory)
    if running is not None and _alive(running, SUPERVISOR_MARKER):
        raise SandboxError(f"a sandbox already runs in {directory} (pid {running}); run `sloscale sandbox down --dir {directory}` first")
    with contextlib.suppress(FileNotFoundError):
        (directory / STATE_FILE).unlink()
    argv = [
        sys.executable, "-m", SUPERVISOR_MARKER, "--dir", str(directory),
        "--speedup", f"{config.speedup:g}", "--cold-start", f"{config.cold_start_s:g}", "--gpu-profile", config.gpu_profile,
        "--operator-tick", config.operator_tick, "--operator-rate-window", config.operator_rate_window,
        "--scrape-interval", f"{config.scrape_interval_s:g}",
    ]  # fmt: skip
    if not config.operator:
        argv.append("--no-operator")
    if config.real_engine:
        argv.append("--real-engine")
    if config.vllm_python is not None:
        argv += ["--vllm-python", str(config.vllm_python)]
    if config.model_dir is not None:
        argv += ["--model-dir", str(Path(config.model_dir).resolve())]
    with (directory / LOG_FILE).open("ab") as out:
        supervisor = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    (directory / PID_FILE).write_text(f"{supervisor.pid}\n")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = read_state(directory)
        if state is not None and state.get("ready"):
            return state
        if supervisor.poll() is not None:
            down(directory)
            raise SandboxError(f"the sandbox failed to start:\n{_tail(directory / LOG_FILE)}")
        time.sleep(0.1)
    down(directory)
    raise SandboxError(f"the sandbox was not ready after {timeout_s:g}s:\n{_tail(directory / LOG_FILE)}")


def down(directory: Path, timeout_s: float = 60.0) -> bool:
    """Stop the sandbox in `directory`; False if none was running there. Never leaves a process."""
    directory = directory.resolve()
    state = read_state(directory) or {}
    pid = _supervisor_pid(directory)
    found = pid is not None or bool(state)
    if pid is not None and _alive(pid, SUPERVISOR_MARKER):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(pid, SUPERVISOR_MARKER) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid, SUPERVISOR_MARKER):
            os.kill(pid, signal.SIGKILL)
    # Whatever the supervisor left behind (it was killed, or crashed): stop it by recorded pid.
    leftovers = [((state.get("prometheus") or {}).get("pid"), "prometheus")]
    leftovers.append(((state.get("operator") or {}).get("pid"), "sloscale"))
    pods = list((state.get("pods") or {}).values())
    leftovers += [(pod.get("pid"), "vllm_emulator") for pod in pods if pod.get("engine") != "vllm"]
    for child, marker in leftovers:
        if isinstance(child, int) and _alive(child, marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
    # A real engine leads a process group (API server, engine core, worker): all of it goes.
    for pod in pods:
        group = pod.get("pid")
        if pod.get("engine") == "vllm" and isinstance(group, int) and _alive(group, REAL_ENGINE_MARKER):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
    for name in (STATE_FILE, PID_FILE):
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()
    return found


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog=f"python -m {SUPERVISOR_MARKER}", description="The sandbox supervisor (use `sloscale sandbox up`).")
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--speedup", type=float, default=1.0)
    parser.add_argument("--cold-start", type=float, default=20.0)
    parser.add_argument("--gpu-profile", default="H100")
    parser.add_argument("--operator-tick", default="5s")
    parser.add_argument("--operator-rate-window", default="1m")
    parser.add_argument("--scrape-interval", type=float, default=1.0)
    parser.add_argument("--no-operator", action="store_true")
    parser.add_argument("--real-engine", action="store_true")
    parser.add_argument("--vllm-python", type=Path)
    parser.add_argument("--model-dir", type=Path)
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stdout)
    config = SandboxConfig(
        ns.dir,
        speedup=ns.speedup,
        cold_start_s=ns.cold_start,
        gpu_profile=ns.gpu_profile,
        operator=not ns.no_operator,
        operator_tick=ns.operator_tick,
        operator_rate_window=ns.operator_rate_window,
        scrape_interval_s=ns.scrape_interval,
        real_engine=ns.real_engine,
        vllm_python=ns.vllm_python,
        model_dir=ns.model_dir,
    )
    sys.exit(asyncio.run(serve(config)))


if __name__ == "__main__":
    main()
