"""Fixtures of the fault suite: one sandbox for the whole suite, operators and gates per test.

`box` brings the sandbox up once (API emulator, Prometheus, kubelet stand-in; no operator of its
own) and takes it down as soon as the last test of this directory has run (a session-scoped
fixture alone would keep it running through the rest of `make test`), whatever the tests did. Each test then starts the operators it needs (`operators`) in a
namespace of its own, so tests do not see each other's services; everything a test started is
stopped when it ends, whether it passed or not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from faults_support import COLD_START_S, GPU_PROFILE, SPEEDUP, Box, OperatorProcess, PrometheusGate

from sloscale.kube import KubeApi
from sloscale.sandbox.sandbox import SandboxConfig, down, up

HERE = Path(__file__).parent
_running: list[Path] = []  # the sandbox directory while one runs


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop the sandbox once no test of this directory is left to run."""
    if _running and (nextitem is None or HERE not in nextitem.path.parents):
        down(_running.pop())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here is a fault test on the sandbox, which needs the prometheus binary."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.faults)
            item.add_marker(pytest.mark.prometheus)


@pytest.fixture(scope="session")
def box(tmp_path_factory: pytest.TempPathFactory, prometheus_binary: str) -> Iterator[Box]:
    directory = tmp_path_factory.mktemp("faults-sandbox")
    config = SandboxConfig(
        directory,
        speedup=SPEEDUP,
        cold_start_s=COLD_START_S,
        gpu_profile=GPU_PROFILE,
        operator=False,
    )
    _running.append(directory)
    try:
        up(config, timeout_s=120)
        api = KubeApi.connect(str(directory / "kubeconfig"))
        try:
            yield Box(directory, api)
        finally:
            api.close()
    finally:
        if directory in _running:
            _running.remove(directory)
            down(directory)


@pytest.fixture
def namespace(box: Box, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace for this test; deleted afterwards (its pods drain and stop)."""
    name = box.namespace(request.node.name.removeprefix("test_")[:20].replace("_", "-").rstrip("-"))
    try:
        yield name
    finally:
        box.delete_namespace(name)


@pytest.fixture
def operators(box: Box, tmp_path: Path) -> Iterator[Callable[..., OperatorProcess]]:
    """Start `sloscale run` processes; every one is stopped when the test ends."""
    started: list[OperatorProcess] = []

    def start(name: str, namespace: str, *, prometheus_url: str | None = None, kubeconfig: Path | None = None,
              wait_healthy: bool = True, **kwargs: Any) -> OperatorProcess:  # fmt: skip
        op = OperatorProcess(
            name,
            kubeconfig or box.kubeconfig,
            prometheus_url or box.prometheus_url,
            namespace,
            tmp_path,
            **kwargs,
        )
        started.append(op)
        return op.start(wait_healthy)

    try:
        yield start
    finally:
        for op in started:
            op.stop()


@pytest.fixture
def gate(box: Box) -> Iterator[PrometheusGate]:
    """A fault-injecting gate in front of the sandbox's Prometheus."""
    g = PrometheusGate(box.prometheus_url)
    try:
        yield g
    finally:
        g.close()
