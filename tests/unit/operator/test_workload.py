"""Rendering the owned vLLM workload and reading any workload back, without an API server."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sloscale.resource import InferenceServiceSpec
from sloscale.workload import (
    TEMPLATE_HASH_ANNOTATION,
    WorkloadError,
    container_batch,
    find_container,
    observe,
    pod_start_durations,
    render_deployment,
    render_pod_template,
    render_service,
    rollout_in_progress,
    template_hash,
    with_batch,
)

META = {"name": "chat", "namespace": "team-a", "uid": "1234-abcd"}


def spec(**overrides: Any) -> InferenceServiceSpec:
    body: dict[str, Any] = {
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "objective": {"type": "Latency", "latency": {"metric": "TimeToFirstToken", "target": "1s"}},
        "replicas": {"min": 1, "max": 8},
        "engine": {"gpus": 2, "args": ["--max-num-batched-tokens=8192"], "startupTimeout": "20m"},
    }
    body.update(overrides)
    return InferenceServiceSpec.model_validate(body)


def container_of(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_deployment_is_owned_selected_by_the_service_label_and_never_drops_capacity() -> None:
    d = render_deployment(META, spec(), replicas=3, max_num_seqs=64)
    assert d["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "sloscale.dev/v1alpha1",
            "kind": "InferenceService",
            "name": "chat",
            "uid": "1234-abcd",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert d["spec"]["replicas"] == 3
    assert d["spec"]["selector"] == {"matchLabels": {"sloscale.dev/service": "chat"}}
    assert d["spec"]["template"]["metadata"]["labels"]["sloscale.dev/service"] == "chat"
    assert d["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert d["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION] == template_hash(
        d["spec"]["template"]
    )


def test_vllm_args_carry_the_managed_flags_then_the_users() -> None:
    args = container_of(render_deployment(META, spec(), replicas=1, max_num_seqs=48))["args"]
    assert args == [
        "--model=meta-llama/Llama-3.1-8B-Instruct",
        "--served-model-name=chat",
        "--host=0.0.0.0",
        "--port=8000",
        "--max-num-seqs=48",
        "--tensor-parallel-size=2",
        "--shutdown-timeout=100",
        "--max-num-batched-tokens=8192",
    ]


@pytest.mark.parametrize(
    ("image", "drains"),
    [
        ("vllm/vllm-openai:v0.32.0", True),
        ("vllm/vllm-openai:v0.18.0", True),
        ("registry.example:5000/vllm/vllm-openai:v1.2", True),
        ("vllm/vllm-openai:latest", True),
        ("vllm/vllm-openai:v0.17.1", False),
        ("registry.example:5000/vllm/vllm-openai:v0.11.0", False),
        # Not known to be a vLLM that takes the flag: none is added (engine.args can set it).
        ("vllm/vllm-openai@sha256:0123abcd", False),
        ("my/vllm:prod", False),
        ("nvcr.io/nvidia/vllm:25.09-py3", False),
        ("lmcache/vllm-openai:2025-05-27-v1", False),
    ],
)
def test_running_requests_finish_on_sigterm_where_the_image_can(image: str, drains: bool) -> None:
    """vLLM aborts in-flight requests on SIGTERM unless told to drain (v0.18+); an older vLLM
    would refuse the flag and never start, so only images known to take it get it."""
    template = render_pod_template("chat", spec(engine={"image": image}), 64)
    (container,) = template["spec"]["containers"]
    drain = [a for a in container["args"] if a.startswith("--shutdown-timeout")]
    if not drains:
        assert drain == []
        return
    assert drain == ["--shutdown-timeout=100"]
    prestop_s = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert prestop_s + 100 < template["spec"]["terminationGracePeriodSeconds"]


@pytest.mark.parametrize("given", [["--shutdown-timeout=30"], ["--shutdown-timeout", "30"]])
def test_the_users_drain_timeout_replaces_the_operators(given: list[str]) -> None:
    args = render_pod_template("chat", spec(engine={"args": given}), 64)["spec"]["containers"][0]["args"]
    assert args[-len(given) :] == given
    assert sum(a.startswith("--shutdown-timeout") for a in args) == 1


def test_pod_suits_minutes_long_loads_gpus_shared_memory_and_scraping() -> None:
    template = render_pod_template("chat", spec(), 64)
    c = template["spec"]["containers"][0]
    startup = c["startupProbe"]
    assert startup["httpGet"]["path"] == "/health"
    assert (
        startup["periodSeconds"] * startup["failureThreshold"] == 20 * 60
    )  # engine.startupTimeout
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    assert c["livenessProbe"]["failureThreshold"] * c["livenessProbe"]["periodSeconds"] >= 60
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert {"name": "dshm", "emptyDir": {"medium": "Memory"}} in template["spec"]["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    assert template["spec"]["terminationGracePeriodSeconds"] >= 60
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8000",
        "prometheus.io/path": "/metrics",
    }


def test_user_resources_and_env_are_kept_and_cpu_pods_get_no_gpu() -> None:
    s = spec(
        engine={
            "gpus": 0,
            "resources": {"requests": {"cpu": "4"}, "limits": {"memory": "8Gi"}},
            "env": [
                {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}
            ],
        }
    )
    c = render_pod_template("chat", s, 8)["spec"]["containers"][0]
    assert c["resources"] == {"requests": {"cpu": "4"}, "limits": {"memory": "8Gi"}}
    assert c["env"] == [
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}
    ]
    assert "--tensor-parallel-size=1" in c["args"]


def test_template_hash_changes_with_the_spec_and_the_batch_only() -> None:
    base = template_hash(render_pod_template("chat", spec(), 64))
    assert template_hash(render_pod_template("chat", spec(), 64)) == base
    assert template_hash(render_pod_template("chat", spec(), 128)) != base
    assert (
        template_hash(
            render_pod_template("chat", spec(engine={"image": "vllm/vllm-openai:v0.12.0"}), 64)
        )
        != base
    )


def test_service_targets_the_pods_on_the_engine_port() -> None:
    svc = render_service(META, spec(engine={"port": 9000}))
    assert svc["spec"]["selector"] == {"sloscale.dev/service": "chat"}
    assert svc["spec"]["ports"] == [{"name": "http", "port": 9000, "targetPort": "http"}]
    assert svc["metadata"]["ownerReferences"][0]["uid"] == "1234-abcd"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model", "m", "--max-num-seqs", "32"], ["--model", "m", "--max-num-seqs", "128"]),
        (["--max-num-seqs=32", "--port=8000"], ["--max-num-seqs=128", "--port=8000"]),
        (["--model=m"], ["--model=m", "--max-num-seqs=128"]),
    ],
)
def test_with_batch_rewrites_either_spelling_or_appends(
    args: list[str], expected: list[str]
) -> None:
    assert with_batch(args, 128) == expected
    assert container_batch({"args": expected}) == 128


def test_batch_is_read_from_the_command_when_args_do_not_set_it() -> None:
    c = {"command": ["python3", "-m", "vllm.entrypoints.openai.api_server", "--max-num-seqs", "16"]}
    assert container_batch(c) == 16
    assert container_batch({"args": ["--model=m"]}) is None


def attached(ready: int = 2, replicas: int = 3, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "llm", "namespace": "team-a", "generation": 4},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "llm"}},
            "template": {
                "spec": {
                    "containers": [
                        {"name": "proxy", "args": []},
                        {"name": "engine", "args": ["--max-num-seqs=96"]},
                    ]
                }
            },
        },
        "status": {
            "observedGeneration": 4,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
            **status,
        },
    }


def test_find_container_by_name_or_first_and_a_clear_error_otherwise() -> None:
    d = attached()
    assert find_container(d, "engine")[0] == 1
    assert find_container(d, None)[0] == 0
    with pytest.raises(WorkloadError) as err:
        find_container(d, "vllm")
    assert err.value.reason == "ContainerNotFound"
    assert "proxy, engine" in err.value.message


def test_observe_counts_requested_but_unready_replicas_as_starting() -> None:
    seen = observe(attached(ready=2, replicas=3), [], "engine")
    assert (seen.replicas, seen.ready, seen.starting, seen.max_num_seqs) == (3, 2, 1, 96)
    assert not seen.rollout_in_progress


@pytest.mark.parametrize(
    "status",
    [
        {"observedGeneration": 3},  # the controller has not seen the new template yet
        {"updatedReplicas": 1},  # old pods still serve
        {"replicas": 4, "updatedReplicas": 3},  # a surge pod is up, an old one not yet gone
    ],
)
def test_rollout_in_progress(status: dict[str, Any]) -> None:
    d = attached()
    d["status"].update(status)
    assert rollout_in_progress(d)


def pod(
    created: str, ready_at: str | None, restarts: int = 0, deleting: bool = False
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p", "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = ready_at
    conditions = (
        [{"type": "Ready", "status": "True", "lastTransitionTime": ready_at}] if ready_at else []
    )
    return {
        "metadata": meta,
        "status": {"conditions": conditions, "containerStatuses": [{"restartCount": restarts}]},
    }


def test_cold_start_comes_from_pods_that_became_ready_without_restarting() -> None:
    pods = [
        pod("2026-01-01T10:00:00Z", "2026-01-01T10:02:30Z"),
        pod("2026-01-01T10:00:00Z", "2026-01-01T10:01:00Z"),
        pod("2026-01-01T10:00:00Z", None),  # still loading
        pod(
            "2026-01-01T10:00:00Z", "2026-01-01T10:30:00Z", restarts=2
        ),  # restarted: not a cold start
        pod("2026-01-01T10:00:00Z", "2026-01-01T10:00:30Z", deleting=True),
    ]
    assert sorted(pod_start_durations(pods)) == [60.0, 150.0]


def test_rendering_does_not_mutate_the_spec() -> None:
    s = spec()
    before = copy.deepcopy(s.model_dump())
    render_deployment(META, s, replicas=2, max_num_seqs=8)
    assert s.model_dump() == before
