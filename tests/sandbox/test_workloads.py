"""workloads/ documents the Deployment the operator renders: the two must not drift apart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sloscale.resource import parse_spec
from sloscale.sandbox.vllm_emulator import parse_args
from sloscale.workload import render_deployment, render_service

ROOT = Path(__file__).resolve().parents[2]


def documented() -> dict[str, dict[str, Any]]:
    docs = yaml.safe_load_all((ROOT / "workloads" / "deployment.yaml").read_text())
    return {d["kind"]: d for d in docs}


def rendered() -> dict[str, dict[str, Any]]:
    example = yaml.safe_load((ROOT / "examples" / "chat-p99-ttft.yaml").read_text())
    meta = {"name": example["metadata"]["name"], "namespace": "default", "uid": "u"}
    spec = parse_spec(example["spec"])
    return {
        "Deployment": render_deployment(meta, spec, replicas=1, max_num_seqs=spec.batching.initial_max_num_seqs),
        "Service": render_service(meta, spec),
    }


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return found


@pytest.mark.parametrize(
    "path",
    [
        ("metadata", "labels"),
        ("spec", "selector"),
        ("spec", "strategy"),
        ("spec", "revisionHistoryLimit"),
        ("spec", "template", "metadata"),
        ("spec", "template", "spec", "terminationGracePeriodSeconds"),
        ("spec", "template", "spec", "tolerations"),
    ],
)
def test_the_documented_deployment_has_the_rendered_shape(path: tuple[str, ...]) -> None:
    doc, got = documented()["Deployment"], rendered()["Deployment"]
    for key in path:
        doc, got = doc[key], got[key]
    assert doc == got


@pytest.mark.parametrize(
    "field", ["name", "image", "args", "ports", "startupProbe", "readinessProbe", "livenessProbe", "lifecycle", "resources"]
)
def test_the_documented_container_is_the_rendered_one(field: str) -> None:
    assert container(documented()["Deployment"])[field] == container(rendered()["Deployment"])[field]


def test_the_documented_service_is_the_rendered_one() -> None:
    doc, got = documented()["Service"], rendered()["Service"]
    assert doc["metadata"]["labels"] == got["metadata"]["labels"]
    assert doc["spec"] == got["spec"]


def test_shared_memory_is_mounted_as_in_the_rendered_pod() -> None:
    mounts = {m["name"]: m["mountPath"] for m in container(documented()["Deployment"])["volumeMounts"]}
    volumes = {v["name"]: v for v in documented()["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    assert mounts["dshm"] == "/dev/shm" and volumes["dshm"]["emptyDir"]["medium"] == "Memory"


def test_the_rendered_arguments_run_on_the_emulated_pod() -> None:
    config = parse_args(container(rendered()["Deployment"])["args"])
    assert config.served_model_name == "chat"
    assert config.engine.max_num_seqs == 64
    assert config.engine.max_num_batched_tokens == 8192
