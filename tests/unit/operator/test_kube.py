"""The API port: credentials shared with kopf, and the server's own words in errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from sloscale.kube import KubeApi, error_message


def kubeconfig(tmp_path: Path, user: dict[str, str]) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": "https://10.0.0.1:6443",
                            "insecure-skip-tls-verify": True,
                        },
                    }
                ],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


def test_kopf_gets_the_same_server_and_token(tmp_path: Path) -> None:
    api = KubeApi.connect(str(kubeconfig(tmp_path, {"token": "s3cret"})))
    info = api.connection_info()
    assert info["server"] == "https://10.0.0.1:6443"
    assert (info["scheme"], info["token"]) == ("Bearer", "s3cret")
    assert info["insecure"] is True
    api.close()


def test_a_kubeconfig_without_a_token_gives_none(tmp_path: Path) -> None:
    api = KubeApi.connect(str(kubeconfig(tmp_path, {})))
    info = api.connection_info()
    assert (info["scheme"], info["token"]) == (None, None)
    api.close()


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (ApiException(status=422, reason="Unprocessable", body='{"kind":"Status","message":"spec.replicas: Invalid"}'),
         "422: spec.replicas: Invalid"),
        (ApiException(status=503, reason="Service Unavailable", body="<html>"), "503: Service Unavailable"),
        (ConnectionRefusedError("refused"), "ConnectionRefusedError: refused"),
    ],
)  # fmt: skip
def test_error_message_quotes_the_server(exc: Exception, text: str) -> None:
    assert error_message(exc) == text
