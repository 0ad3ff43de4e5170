"""A real engine that cannot start fails at once, says why, and leaves no process behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from sloscale.sandbox.real_vllm import RealVllmServer, VllmFailed

# An engine start can take minutes on two busy cores.
pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]


def processes_mentioning(word: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if word.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_a_failed_start_reports_the_engine_error_and_stops_everything(
    vllm_python: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    # vLLM's own argument parser refuses this, after importing itself (tens of seconds).
    name = f"refused-{tmp_path.name}"
    server = RealVllmServer(
        tiny_model_dir,
        max_num_seqs=2,
        served_model_name=name,
        extra_args=("--dtype", "float3"),
        python=vllm_python,
        log_path=tmp_path / "vllm.log",
    )
    with pytest.raises(VllmFailed, match="float3") as failed:
        server.start()
    assert "exited with" in str(failed.value)
    assert not server.running and server.pid is None
    assert processes_mentioning(name) == []


def test_a_server_needs_the_model_built_first(vllm_python: Path, tmp_path: Path) -> None:
    server = RealVllmServer(
        tmp_path / "empty", max_num_seqs=2, python=vllm_python, log_path=tmp_path / "vllm.log"
    )
    with pytest.raises(VllmFailed, match="no tiny model"):
        server.start()
    assert server.pid is None
