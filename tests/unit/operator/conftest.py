"""The API emulator over real HTTP, with the InferenceService CRD, for the operator's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sloscale.apiserver import ApiServer
from sloscale.kube import KubeApi

ROOT = Path(__file__).parents[3]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[ApiServer, KubeApi]]:
    with ApiServer.in_thread(crds=[ROOT / "crds" / "inferenceservice.yaml"]) as server:
        client = KubeApi.connect(str(server.write_kubeconfig(tmp_path / "kubeconfig")))
        try:
            yield server, client
        finally:
            client.close()
