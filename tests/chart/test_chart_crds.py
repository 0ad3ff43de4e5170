"""The chart's CRDs are the project's CRDs, and custom resources validate against them.

The API server prunes fields a structural schema does not declare, silently; here an unknown
field is an error instead, so a misspelt field in an example or a chart template cannot ship.
CEL rules (x-kubernetes-validations) are checked by the API emulator's tests, not here.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from chartlib import CHART, ROOT, Render, find

SOURCE_CRD = ROOT / "crds" / "inferenceservice.yaml"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def strict_schema(schema: Any) -> Any:
    """openAPIV3Schema → JSON Schema that rejects undeclared fields (pruned by a real server)."""
    if isinstance(schema, list):
        return [strict_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict_schema(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if schema.get("type") == "object" and "properties" in schema and not schema.get(
        "x-kubernetes-preserve-unknown-fields"
    ):
        out["additionalProperties"] = False
    return out


def crd_validator(crd: dict[str, Any]) -> jsonschema.protocols.Validator:
    version = next(v for v in crd["spec"]["versions"] if v["storage"])
    schema = strict_schema(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    # Every object has these; ObjectMeta itself is checked by the server, not by the CRD.
    schema["properties"].update(
        apiVersion={"type": "string"}, kind={"type": "string"}, metadata={"type": "object"}
    )
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def errors(validator: jsonschema.protocols.Validator, obj: dict[str, Any]) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


def inference_crd() -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(SOURCE_CRD.read_text())
    return crd


def test_chart_crd_is_a_byte_identical_copy() -> None:
    copy_ = CHART / "crds" / "inferenceservice.yaml"
    assert copy_.read_bytes() == SOURCE_CRD.read_bytes(), (
        "charts/sloscale/crds/inferenceservice.yaml differs from crds/inferenceservice.yaml: run `make sync-crds`"
    )


def test_chart_installs_the_crds_it_needs(render: Render) -> None:
    names = {d["metadata"]["name"] for d in find(render(include_crds=True), "CustomResourceDefinition")}
    assert names == {"inferenceservices.sloscale.dev", "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}


def test_every_example_validates_against_the_crd() -> None:
    validator = crd_validator(inference_crd())
    problems = {}
    count = 0
    for path in EXAMPLES:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "InferenceService":
                count += 1
                if found := errors(validator, doc):
                    problems[f"{path.name}/{doc['metadata']['name']}"] = found
    assert not problems
    # The README's own example is checked too (it is what users copy first).
    readme = (ROOT / "README.md").read_text()
    snippet = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert errors(validator, yaml.safe_load(snippet)) == []
    assert count >= len(EXAMPLES)  # every example file holds at least one InferenceService


BASE = {
    "apiVersion": "sloscale.dev/v1alpha1",
    "kind": "InferenceService",
    "metadata": {"name": "chat"},
    "spec": {
        "model": "m",
        "objective": {"type": "Latency", "latency": {"metric": "TimeToFirstToken", "target": "1s"}},
        "replicas": {"max": 4},
    },
}


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        (("spec", "replicas", "maxx"), 4, "maxx"),  # a typo the server would silently prune
        (("spec", "objective", "latency", "metric"), "TTFT", "TTFT"),
        (("spec", "objective", "latency", "target"), "1 second", "does not match"),
        (("spec", "replicas", "max"), 0, "minimum"),
    ],
)
def test_the_validator_rejects_what_the_server_would(path: tuple[str, ...], value: Any, complaint: str) -> None:
    validator = crd_validator(inference_crd())
    assert errors(validator, BASE) == []
    bad = copy.deepcopy(BASE)
    node: dict[str, Any] = bad
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    found = errors(validator, bad)
    assert found and any(complaint in e for e in found), found


def test_chart_peering_objects_validate_against_their_crds(render: Render) -> None:
    docs = render(include_crds=True, peering__enabled="true", watch__namespaces="{a,b}", replicaCount="2")
    docs += render(include_crds=True, peering__enabled="true")
    crds = {d["spec"]["names"]["kind"]: d for d in find(docs, "CustomResourceDefinition")}
    checked = 0
    for kind in ("KopfPeering", "ClusterKopfPeering"):
        validator = crd_validator(crds[kind])
        for obj in find(docs, kind):
            assert errors(validator, obj) == []
            checked += 1
    assert checked == 3  # two namespaces, then one cluster-wide


def test_crd_copy_check_is_what_make_sync_crds_fixes() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "sync-crds:" in makefile
    assert "cp crds/inferenceservice.yaml charts/sloscale/crds/inferenceservice.yaml" in makefile


def test_api_reference_is_generated_from_the_current_crd() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sloscale.docs_gen", "crds/inferenceservice.yaml", "--check", "docs/api-reference.md"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


def test_api_reference_check_notices_a_changed_description(tmp_path: Path) -> None:
    crd = inference_crd()
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["mode"][
        "description"] = "Something new."
    (tmp_path / "crds").mkdir()
    (tmp_path / "crds" / "inferenceservice.yaml").write_text(yaml.safe_dump(crd))
    command = [sys.executable, "-m", "sloscale.docs_gen", "crds/inferenceservice.yaml"]
    proc = subprocess.run([*command, "--check", str(ROOT / "docs" / "api-reference.md")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "python -m sloscale.docs_gen crds/inferenceservice.yaml > " in proc.stderr
    page = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=True, timeout=60).stdout
    # Only the changed description differs from the committed page.
    committed = (ROOT / "docs" / "api-reference.md").read_text().splitlines()
    assert [line for line in page.splitlines() if line not in committed] == [
        "| `spec.mode` | string | `Enforce` | one of `Enforce`, `Advisory` | Something new. |"
    ]
