"""The cluster for the end-to-end tests: the local sandbox, or the real cluster `KUBECONFIG` names.

One sandbox serves every test here: emulated A100 pods at speed-up 1 (so targets, cold starts
and the capacity figures in the tests read as the modelled A100's; at a speed-up X the operator
would see a GPU X times faster, see docs/sandbox.md — time is compressed in the trace instead),
a 5 s cold start and a 2 s operator tick. It is brought down whatever the tests did, as soon as the last test of this directory has
run (a session-scoped fixture alone would keep it running through the rest of `make test`).

On a real cluster (`KUBECONFIG` set) the operator and Prometheus must already run there (the Helm
chart), the pods pull the real vLLM image and model, and load phases and waits are stretched by
`SLOSCALE_E2E_TIME_SCALE` (default 10) so that bursts outlast cold starts. Load reaches a Service
through `kubectl port-forward` (one pod), or through `SLOSCALE_E2E_ENDPOINT` (a loopback URL
template with `{namespace}` and `{service}`, e.g. a gateway you forwarded); the scale-out test
needs the latter and skips without it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import AZURE_CONV, Cluster, real_cluster_time_scale

from sloscale.kube import KubeApi
from sloscale.sandbox.prometheus import PrometheusNotInstalled, find_binary
from sloscale.sandbox.sandbox import SandboxConfig, SandboxError, down, up

COLD_START_S = 5
HERE = Path(__file__).parent
_running: list[Path] = []  # the sandbox directory while one runs


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop the sandbox once no test of this directory is left to run."""
    if _running and (nextitem is None or HERE not in nextitem.path.parents):
        down(_running.pop())


def _require(what: str, problem: str | None) -> None:
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the end-to-end tests: {problem}")
    pytest.skip(f"{what}: {problem}")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    _require(
        "the Azure trace",
        None if AZURE_CONV.is_file() else f"{AZURE_CONV} is missing (set SLOSCALE_E2E_TRACE)",
    )
    real = os.environ.get("KUBECONFIG")
    if real:
        api = KubeApi.connect(real)
        try:
            yield Cluster(
                Path(real),
                api,
                emulated=False,
                sandbox_dir=None,
                cold_start="5m",
                time_scale=real_cluster_time_scale(),
            )
        finally:
            api.close()
        return
    try:
        find_binary()
        missing = None
    except PrometheusNotInstalled as err:
        missing = str(err)
    _require("Prometheus", missing)
    directory = tmp_path_factory.mktemp("sandbox")
    config = SandboxConfig(
        directory, speedup=1.0, cold_start_s=COLD_START_S, gpu_profile="A100", operator_tick="2s"
    )
    try:
        state = up(config, timeout_s=120)
    except SandboxError as err:
        pytest.fail(str(err))
    _running.append(directory)
    try:
        api = KubeApi.connect(state["kubeconfig"])
        try:
            yield Cluster(
                Path(state["kubeconfig"]), api, emulated=True, sandbox_dir=directory,
                cold_start=f"{COLD_START_S}s", time_scale=1.0,
            )  # fmt: skip
        finally:
            api.close()
    finally:
        if directory in _running:
            _running.remove(directory)
            down(directory)
