"""The chart grants exactly the rules in sloscale.rbac, commented, with no wildcard.

Four installations are rendered — all namespaces or a list, with and without peering — and the
union of the rules each ServiceAccount receives is compared with `rbac.rules_for(...)` in both
directions, scope included (cluster-wide versus per watched namespace).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from chartlib import CHART, Helm, Render, find, one
from kopf._cogs.structs import references as kopf_refs

from sloscale import rbac

Grant = tuple[str, str, str, str]  # (where: "cluster" or a namespace, group, resource, verb)


def granted(docs: list[dict[str, Any]]) -> set[Grant]:
    grants: set[Grant] = set()
    for role in find(docs, "ClusterRole") + find(docs, "Role"):
        where = role["metadata"].get("namespace", "cluster") if role["kind"] == "Role" else "cluster"
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        grants.add((where, group, resource, verb))
    return grants


def expected(namespaces: list[str], peering: bool) -> set[Grant]:
    grants: set[Grant] = set()
    for rule in rbac.rules_for(all_namespaces=not namespaces, peering=peering):
        places = ["cluster"] if rule.scope is rbac.Scope.CLUSTER or not namespaces else namespaces
        for where in places:
            for resource in rule.resources:
                for verb in rule.verbs:
                    grants.add((where, rule.api_group, resource, verb))
    return grants


CASES = [([], False), ([], True), (["inference", "batch"], False), (["inference", "batch"], True)]


@pytest.mark.parametrize(("namespaces", "peering"), CASES)
def test_rendered_rbac_matches_the_rule_list(render: Render, namespaces: list[str], peering: bool) -> None:
    sets = {"peering__enabled": str(peering).lower()}
    if namespaces:
        sets["watch__namespaces"] = "{" + ",".join(namespaces) + "}"
    docs = render(**sets)
    assert granted(docs) == expected(namespaces, peering)
    # Every role is bound to the operator's ServiceAccount, in the release namespace.
    sa = one(docs, "ServiceAccount")["metadata"]
    for binding in find(docs, "ClusterRoleBinding") + find(docs, "RoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": sa["name"], "namespace": sa["namespace"]}
        ]
    assert len(find(docs, "RoleBinding")) == len(namespaces) == len(find(docs, "Role"))


def test_watching_a_list_grants_nothing_namespaced_cluster_wide(render: Render) -> None:
    docs = render(watch__namespaces="{inference}")
    cluster = {g for g in granted(docs) if g[0] == "cluster"}
    assert {resource for _, _, resource, _ in cluster} == {"customresourcedefinitions", "namespaces"}


def test_pods_are_read_and_annotated_and_nothing_is_deleted(render: Render) -> None:
    grants = granted(render())
    # patch: the deletion-cost annotation before a scale-down; pods are never created or deleted.
    assert {verb for _, _, resource, verb in grants if resource == "pods"} == {"get", "list", "watch", "patch"}
    assert not {g for g in grants if g[3] in {"delete", "deletecollection", "escalate", "bind", "impersonate"}}
    assert not {g for g in grants if "*" in g}


def test_every_rule_in_the_rule_list_says_why() -> None:
    for rule in rbac.RULES:
        assert len(rule.why) > 20, rule
        assert "*" not in (rule.api_group, *rule.resources, *rule.verbs)


def test_every_rendered_rule_carries_a_comment(helm: Helm) -> None:
    text = helm.run("template", "sloscale", str(CHART), "--set", "peering.enabled=true",
                    "--set", "watch.namespaces={a}").stdout
    for doc in text.split("\n---"):
        if not re.search(r"^kind: (Cluster)?Role$", doc, re.M):
            continue
        lines = [line.strip() for line in doc.splitlines() if line.strip()]
        for i, line in enumerate(lines):
            if line.startswith("- apiGroups:"):
                assert lines[i - 1].startswith("#"), f"uncommented rule: {line} {lines[i + 1]}"


@pytest.mark.parametrize(
    ("namespaces", "kind", "selector"),
    [([], "ClusterKopfPeering", kopf_refs.CLUSTER_PEERINGS_K),
     (["inference", "batch"], "KopfPeering", kopf_refs.NAMESPACED_PEERINGS_K)],
)
def test_peering_objects_are_the_ones_kopf_looks_for(
    render: Render, namespaces: list[str], kind: str, selector: Any
) -> None:
    """kopf pauses until its peering object exists: the chart creates the ones kopf watches."""
    sets = {"peering__enabled": "true", "peering__name": "sloscale-ha"}
    if namespaces:
        sets["watch__namespaces"] = "{" + ",".join(namespaces) + "}"
    docs = render(include_crds=True, **sets)
    peerings = find(docs, kind)
    assert [p["metadata"].get("namespace") for p in peerings] == (namespaces or [None])
    assert all(p["metadata"]["name"] == "sloscale-ha" for p in peerings)
    assert {p["apiVersion"] for p in peerings} == {f"{selector.group}/{selector.version}"}
    crd = next(d for d in find(docs, "CustomResourceDefinition") if d["spec"]["names"]["kind"] == kind)
    assert crd["spec"]["group"] == selector.group
    assert crd["spec"]["names"]["plural"] == selector.any_name
    assert [v["name"] for v in crd["spec"]["versions"]] == [selector.version]
    # The operator is told the same name.
    args = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--peering=sloscale-ha" in args


def test_no_peering_objects_without_peering(render: Render) -> None:
    docs = render()
    assert not find(docs, "ClusterKopfPeering") and not find(docs, "KopfPeering")
