"""The pydantic models must say exactly what the CRD says: a drift in either fails here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from sloscale.resource import InferenceService, InferenceServiceSpec

CRD_PATH = Path(__file__).parents[3] / "crds" / "inferenceservice.yaml"
# Keywords that describe a field's shape; descriptions, CEL rules and list-map hints are not compared.
SHAPE_KEYS = (
    "type",
    "enum",
    "default",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "maxItems",
    "pattern",
    "format",
)


def crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_PATH.read_text())
    (version,) = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def canonical_crd(node: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: node[k] for k in SHAPE_KEYS if k in node}
    if "enum" in out:
        out["enum"] = sorted(out["enum"])
    if node.get("x-kubernetes-preserve-unknown-fields"):
        out["open"] = True
    if "properties" in node:
        out["properties"] = {name: canonical_crd(sub) for name, sub in node["properties"].items()}
    out["required"] = sorted(node.get("required", []))
    if "items" in node:
        out["items"] = canonical_crd(node["items"])
    return out


def canonical_pydantic(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    default = node.get("default")
    if "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in node:  # `X | None`: the API has no null, an absent field means the same
        (node,) = [branch for branch in node["anyOf"] if branch.get("type") != "null"]
        if "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[1]]
    out: dict[str, Any] = {k: node[k] for k in SHAPE_KEYS if k in node and k != "default"}
    if default is not None:
        out["default"] = default
    if "const" in node:  # a one-value Literal
        out["enum"] = [node["const"]]
    if "enum" in out:
        out["enum"] = sorted(out["enum"])
    if node.get("additionalProperties") is True or node.get("extra") == "allow":
        out["open"] = True
    if "properties" in node:
        out["properties"] = {
            name: canonical_pydantic(sub, defs) for name, sub in node["properties"].items()
        }
    out["required"] = sorted(node.get("required", []))
    if "items" in node:
        out["items"] = canonical_pydantic(node["items"], defs)
    return out


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return canonical_pydantic(schema, schema.get("$defs", {}))


def differences(crd: Any, models: Any, path: str = "") -> list[str]:
    """Every place the two canonical trees disagree, by field path."""
    if isinstance(crd, dict) and isinstance(models, dict):
        found = []
        for key in sorted(set(crd) | set(models)):
            if key not in models:
                found.append(f"{path}.{key}: in the CRD, not in the models")
            elif key not in crd:
                found.append(f"{path}.{key}: in the models, not in the CRD")
            else:
                found += differences(crd[key], models[key], f"{path}.{key}")
        return found
    return [] if crd == models else [f"{path}: CRD {crd!r} != models {models!r}"]


def without_metadata(tree: dict[str, Any]) -> dict[str, Any]:
    # metadata is the API server's ObjectMeta; the CRD may not describe it, the models keep it whole.
    props = {k: v for k, v in tree["properties"].items() if k != "metadata"}
    return {**tree, "properties": props}


def test_models_mirror_the_crd_schema() -> None:
    crd = without_metadata(canonical_crd(crd_schema()))
    models = without_metadata(model_schema(InferenceService))
    assert differences(crd, models) == []


def test_drift_is_detected() -> None:
    """The comparison itself must notice a renamed field, a changed default and a lost enum value."""
    crd = canonical_crd(crd_schema())["properties"]["spec"]
    models = model_schema(InferenceServiceSpec)
    assert differences(crd, models) == []
    renamed = {**models, "properties": {**models["properties"]}}
    renamed["properties"]["coldStartTime"] = renamed["properties"].pop("coldStart")
    assert any("coldStart" in d for d in differences(crd, renamed))
    changed = yaml.safe_load(yaml.safe_dump(models))
    changed["properties"]["replicas"]["properties"]["min"]["default"] = 2
    assert differences(crd, changed) == [
        ".properties.replicas.properties.min.default: CRD 1 != models 2"
    ]
    changed = yaml.safe_load(yaml.safe_dump(models))
    changed["properties"]["mode"]["enum"] = ["Enforce"]
    assert len(differences(crd, changed)) == 1


@pytest.mark.parametrize("field", ["spec", "status"])
def test_every_crd_field_has_a_description(field: str) -> None:
    """`kubectl explain` prints descriptions; a field without one is a documentation hole."""
    missing: list[str] = []

    def walk(node: dict[str, Any], path: str, described: bool = True) -> None:
        if described and "description" not in node:
            missing.append(path)
        for name, sub in node.get("properties", {}).items():
            walk(sub, f"{path}.{name}")
        if "items" in node:  # explain shows the list's own description; item fields need theirs
            walk(node["items"], f"{path}[]", described=False)

    walk(crd_schema()["properties"][field], field)
    assert missing == []
