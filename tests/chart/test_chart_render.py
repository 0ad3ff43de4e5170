"""The chart lints, renders valid Kubernetes objects and refuses values it does not know.

Built-in kinds are checked by `kubernetes-validate --strict` (Kubernetes 1.37 schemas, unknown
fields rejected); the CRDs are rendered too (--include-crds) so their own manifests are checked.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from chartlib import CHART, CI_VALUES, ROOT, Helm, Render, find, one

VALUE_SETS = [None, *CI_VALUES]
IDS = ["default", *(p.stem for p in CI_VALUES)]


@pytest.mark.parametrize("values", VALUE_SETS, ids=IDS)
def test_lint_strict(helm: Helm, values: Path | None) -> None:
    args = ["lint", "--strict", str(CHART)] + (["-f", str(values)] if values else [])
    proc = helm.run(*args, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("values", VALUE_SETS, ids=IDS)
def test_rendered_builtin_kinds_validate_strictly(helm: Helm, values: Path | None) -> None:
    args = ["template", "sloscale", str(CHART), "--include-crds", "-n", "sloscale-system"]
    manifests = helm.run(*args + (["-f", str(values)] if values else [])).stdout
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", "--quiet", "-"],
        input=manifests, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    kinds = {d["kind"] for d in yaml.safe_load_all(manifests) if d}
    assert {"Deployment", "ServiceAccount", "ClusterRole", "Service", "CustomResourceDefinition"} <= kinds


def test_kubernetes_validate_rejects_an_unknown_field() -> None:
    """The validator used above is strict: a misspelt field fails (so a pass means something)."""
    bad = "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  prots: [{port: 80}]\n"
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", "--quiet", "-"],
        input=bad, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    assert "prots" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "setting",
    [
        "unknownTopLevel=1",
        "metrics.serviceMonitor.intervall=30s",
        "prometheusRule.alerts.objectiveViolated.severity=page",
        "operator.tickInterval=fast",
        "prometheus.rateWindow=1 minute",
        "prometheus.rateWindow=1d",  # Prometheus would take it; the operator's flags do not
        "operator.tickInterval=0s",
        "operator.logLevel=verbose",
        "watch.namespaces[0]=Not_A_Namespace",
        "replicaCount=0",
    ],
)
def test_schema_rejects_unknown_or_malformed_values(helm: Helm, setting: str) -> None:
    proc = helm.run("template", "sloscale", str(CHART), "--set", setting, check=False)
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr or "schema" in proc.stderr


def test_two_replicas_without_peering_are_refused(helm: Helm) -> None:
    proc = helm.run("template", "sloscale", str(CHART), "--set", "replicaCount=2", check=False)
    assert proc.returncode != 0
    assert "peering.enabled" in proc.stderr


def documented_keys(text: str) -> dict[str, bool]:
    """Each key path of values.yaml → whether a `# --` comment block sits right above it."""
    found: dict[str, bool] = {}
    stack: list[tuple[int, str]] = []
    comment: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped)
            continue
        if not stripped or stripped.startswith("-") or ":" not in stripped:
            comment = []
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = stripped.split(":", 1)[0]
        stack.append((indent, key))
        found[".".join(k for _, k in stack)] = bool(comment) and comment[0].startswith("# --")
        comment = []
    return found


# Values whose content is a Kubernetes object or a map passed through as is: documented as one.
FREE_FORM = {"podSecurityContext", "securityContext", "resources", "dashboard.labels"}


def test_every_value_is_documented_in_values_yaml_and_install_md() -> None:
    """Each leaf of values.yaml has a `# --` comment and a row in docs/install.md."""
    text = (CHART / "values.yaml").read_text()
    documented = documented_keys(text)
    install = (ROOT / "docs" / "install.md").read_text()

    def leaves(node: object, prefix: str) -> list[str]:
        if isinstance(node, dict) and node and prefix not in FREE_FORM:
            return [leaf for k, v in node.items() for leaf in leaves(v, f"{prefix}.{k}" if prefix else k)]
        return [prefix]

    paths = leaves(yaml.safe_load(text), "")
    assert len(paths) > 50
    undocumented = [p for p in paths if not documented.get(p)]
    assert not undocumented, f"values without a `# --` comment: {undocumented}"
    missing = [p for p in paths if f"`{p}`" not in install]
    assert not missing, f"values missing from docs/install.md: {missing}"


def test_the_documentation_check_notices_a_missing_comment() -> None:
    assert documented_keys("a:\n  # -- documented\n  b: 1\n  c: 2\n") == {
        "a": False, "a.b": True, "a.c": False,
    }


def test_notes_tell_how_to_upgrade_crds_and_check_the_install(helm: Helm) -> None:
    proc = helm.run("install", "sloscale", str(CHART), "--dry-run=client", "-n", "ops",
                    "--set", "watch.namespaces={a,b}")
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "the namespaces a, b" in notes
    assert "helm test sloscale -n ops" in notes
    assert "kubectl apply --server-side -f" in notes


def test_defaults_render_only_the_operator_and_its_access(render: Render) -> None:
    docs = render()
    assert sorted(d["kind"] for d in docs) == sorted(
        ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service", "Deployment", "Pod"]
    )
    # Monitoring objects need the Prometheus Operator's CRDs: never rendered unless asked for.
    assert not find(docs, "ServiceMonitor") and not find(docs, "PrometheusRule")
    test_pod = one(docs, "Pod")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
