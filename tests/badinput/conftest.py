"""One Kubernetes API emulator (with the project's CRD) for the bad-input tests, and a client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from badinput_support import CRD
from kubernetes import client, config

from sloscale.apiserver import ApiServer


@pytest.fixture(scope="module")
def custom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[client.CustomObjectsApi]:
    """The official client's custom-objects API, talking HTTP to a fresh emulator."""
    with ApiServer.in_thread(crds=[CRD]) as api:
        kubeconfig = api.write_kubeconfig(tmp_path_factory.mktemp("kube") / "kubeconfig")
        api_client = config.new_client_from_config(str(kubeconfig))
        try:
            yield client.CustomObjectsApi(api_client)
        finally:
            api_client.close()
