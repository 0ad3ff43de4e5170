"""The operator's Deployment: hardened, probed, and started with the flags `sloscale run` takes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from chartlib import CI_VALUES, Render, find, one
from typer.testing import CliRunner

from sloscale.cli import app


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    c: dict[str, Any] = pod["containers"][0]
    return c


def test_pod_runs_non_root_read_only_without_privileges(render: Render) -> None:
    docs = render()
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532  # the image's user
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(docs)["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    # The only writable place is a bounded scratch volume.
    mounts = {m["mountPath"]: m["name"] for m in container(docs)["volumeMounts"]}
    assert mounts == {"/tmp": "tmp"}
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]


def test_resources_are_requested_and_limited(render: Render) -> None:
    resources = container(render())["resources"]
    assert set(resources) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"])


def test_probes_hit_healthz_on_the_metrics_port(render: Render) -> None:
    c = container(render(operator__metricsPort="9100"))
    assert c["ports"] == [{"name": "metrics", "containerPort": 9100, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert "--metrics-port=9100" in c["args"]


def test_default_arguments_follow_the_run_command(render: Render) -> None:
    docs = render()
    c = container(docs)
    assert c["image"] == "sloscale/sloscale:0.1.0"  # the chart's appVersion
    assert "command" not in c  # the image's entrypoint is `sloscale run`
    assert c["args"] == [
        "--prometheus-url=http://prometheus-operated.monitoring.svc:9090",
        "--rate-window=1m",
        "--tick-interval=15s",
        "--metrics-port=8080",
        "--log-level=info",
    ]
    # One operator at a time without peering: a rolling update would briefly run two.
    assert one(docs, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}


def test_full_values_turn_into_flags_and_mounts(render: Render) -> None:
    docs = render(*[v for v in CI_VALUES if v.stem == "full-values"])
    c = container(docs)
    assert c["image"].endswith("@sha256:" + "0123456789abcdef" * 4)
    assert c["args"] == [
        "--namespace=inference",
        "--namespace=batch",
        "--prometheus-url=https://prometheus.monitoring.svc:9091",
        "--prometheus-bearer-token-file=/etc/sloscale/prometheus-token/token",
        "--prometheus-ca-file=/etc/sloscale/prometheus-ca/ca.crt",
        "--rate-window=2m",
        "--tick-interval=30s",
        "--metrics-port=8080",
        "--log-level=debug",
        "--peering=sloscale",
    ]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/etc/sloscale/prometheus-token"]["readOnly"] is True
    assert mounts["/etc/sloscale/prometheus-ca"]["readOnly"] is True
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["prometheus-token"]["secret"]["secretName"] == "prometheus-reader"
    assert volumes["prometheus-ca"]["configMap"]["name"] == "prometheus-ca"
    deployment = one(docs, "Deployment")["spec"]
    assert deployment["replicas"] == 2
    assert deployment["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert {"name": "TZ", "value": "UTC"} in c["env"]
    pdb = one(docs, "PodDisruptionBudget")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= deployment["template"]["metadata"]["labels"].items()


def test_insecure_skip_verify_and_a_token_file_path(render: Render) -> None:
    args = container(render(prometheus__insecureSkipVerify="true",
                            prometheus__bearerTokenFile="/var/run/secrets/tokens/prom"))["args"]
    assert "--prometheus-insecure-skip-verify" in args
    assert "--prometheus-bearer-token-file=/var/run/secrets/tokens/prom" in args


def test_operator_pods_carry_the_name_label_the_metrics_service_selects(render: Render) -> None:
    docs = render()
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "sloscale"
    service = find(docs, "Service", "sloscale-metrics")[0]["spec"]
    assert service["selector"].items() <= labels.items()
    assert service["ports"][0]["targetPort"] == "metrics"


def test_helm_test_pod_probes_the_metrics_service(render: Render) -> None:
    docs = render(metrics__service__port="9999")
    pod = one(docs, "Pod")
    script = pod["spec"]["containers"][0]["args"][0]
    assert "http://sloscale-metrics:9999/healthz" in script
    assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert not find(render(tests__enabled="false"), "Pod")


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=["default", *(p.stem for p in CI_VALUES)])
def test_sloscale_run_accepts_the_rendered_arguments(render: Render, values: Path | None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The real `sloscale run` parses every flag the chart passes. Outside a cluster it then stops
    at its first check after parsing — no in-cluster service account — so it never starts kopf."""
    args = container(render(*([values] if values else [])))["args"]
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    result = CliRunner().invoke(app, ["run", *args])
    assert result.exit_code == 2, result.output
    assert "not running in a cluster" in result.output, result.output
