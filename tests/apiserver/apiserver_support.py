"""Helpers for the emulator's conformance tests: a running emulator with its clients, manifests.

The `kubernetes` package reads $KUBECONFIG at import, so clients here are built from the file
explicitly (`new_client_from_config`), and kubectl gets KUBECONFIG in its own environment.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from kubernetes import client, config

from sloscale.apiserver import ApiServer

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "inferenceservice.yaml"
KUBECTL = Path(sys.executable).parent / "kubectl"
GROUP, VERSION, PLURAL = "sloscale.dev", "v1alpha1", "inferenceservices"
_names = itertools.count(1)


@dataclass
class Cluster:
    """One running emulator and the ways to talk to it."""

    api: ApiServer
    kubeconfig: Path
    client: client.ApiClient

    @property
    def url(self) -> str:
        return self.api.url

    def http(self, method: str, path: str, body: Any = None, content_type: str = "application/json", **kw: Any) -> requests.Response:
        data = None if body is None else (body if isinstance(body, str | bytes) else json.dumps(body))
        headers = {"Content-Type": content_type, **kw.pop("headers", {})}
        return requests.request(method, self.url + path, data=data, headers=headers, timeout=kw.pop("timeout", 10), **kw)

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HOME": str(self.kubeconfig.parent)}
        proc = subprocess.run([str(KUBECTL), *args], capture_output=True, text=True, input=stdin, env=env, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr}")
        return proc

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.client)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.client)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.client)

    @property
    def crds(self) -> client.ApiextensionsV1Api:
        return client.ApiextensionsV1Api(self.client)

    def namespace(self) -> str:
        name = f"t{next(_names)}-{os.getpid()}"
        self.core.create_namespace({"metadata": {"name": name}})
        return name


def start_cluster(tmp: Path, **kwargs: Any) -> Iterator[Cluster]:
    kwargs.setdefault("crds", [CRD])
    kwargs.setdefault("bookmark_interval", 0.3)
    with ApiServer.in_thread(**kwargs) as api:
        kubeconfig = api.write_kubeconfig(tmp / "kubeconfig")
        api_client = config.new_client_from_config(str(kubeconfig))
        try:
            yield Cluster(api, kubeconfig, api_client)
        finally:
            api_client.close()


def isvc(name: str, **spec: Any) -> dict[str, Any]:
    """A valid InferenceService; keyword arguments replace top-level spec fields."""
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "objective": {"type": "Latency", "latency": {"metric": "TimeToFirstToken", "target": "1s"}},
            "replicas": {"min": 1, "max": 4},
        },
    }
    body["spec"].update(spec)
    return body


def deployment(name: str, replicas: int = 1, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, **meta},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.11.0",
                                         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]},
            },
        },
    }


def watch_events(cluster: Cluster, path: str, max_events: int = 100, timeout: float = 10) -> list[dict[str, Any]]:
    """Read a watch stream until it ends (timeoutSeconds) or `max_events` arrive."""
    events: list[dict[str, Any]] = []
    with requests.get(cluster.url + path, stream=True, timeout=timeout) as resp:
        assert resp.status_code == 200, resp.text
        for line in resp.iter_lines():
            if line:
                events.append(json.loads(line))
                if len(events) >= max_events:
                    break
    return events
