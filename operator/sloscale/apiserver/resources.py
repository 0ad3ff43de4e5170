"""The resource kinds the emulator serves: the built-in table and those CRDs register.

A `Resource` carries everything the server needs to treat one REST resource the way the real
API server does: its group/version/kind names for discovery, scope, subresources, whether
spec changes bump `metadata.generation`, the strategic-merge list keys kubectl relies on, the
field labels its field selectors accept, and for custom resources the CRD version's schema and
printer columns. Several versions can share one storage (events in core/v1 and events.k8s.io/v1,
the versions of one CRD): `storage` names it, and objects are kept in one canonical version.

`Registry` indexes them for the router and for discovery; a CRD's create, update and delete
change it at run time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

POD_KEYS: Mapping[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "ports": "containerPort",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
    "conditions": "type",
}
META_KEYS: Mapping[str, str] = {"ownerReferences": "uid", "finalizers": "", "managedFields": ""}
SERVICE_KEYS: Mapping[str, str] = {"ports": "port"}


@dataclass(frozen=True)
class ScaleSpec:
    """Where a scale subresource reads and writes: dotted paths into the object."""

    spec_replicas: str = "spec.replicas"
    status_replicas: str = "status.replicas"
    label_selector: str | None = "spec.selector"


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status: bool = False
    scale: ScaleSpec | None = None
    generation: bool = False
    return_deleted: bool = False
    unconditional_update: bool = True
    merge_keys: Mapping[str, str] | None = None
    field_labels: tuple[str, ...] = ()
    storage_name: str = ""
    schema: JSON | None = None
    printer_columns: tuple[JSON, ...] = ()
    storage_version: bool = True
    verbs: tuple[str, ...] = (
        "create", "delete", "deletecollection", "get", "list", "patch", "update", "watch",
    )

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """`pods`, `deployments.apps`: how the real server names the resource in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def storage(self) -> str:
        return self.storage_name or self.group_resource

    @property
    def custom(self) -> bool:
        return self.schema is not None

    @property
    def list_kind(self) -> str:
        return self.kind + "List"


def _core(plural: str, singular: str, kind: str, namespaced: bool = True, **kw: Any) -> Resource:
    return Resource("", "v1", plural, singular, kind, namespaced, **kw)


BUILTINS: tuple[Resource, ...] = (
    _core("namespaces", "namespace", "Namespace", False, short_names=("ns",), status=True,
          return_deleted=True, merge_keys={}, field_labels=("status.phase",)),
    _core("pods", "pod", "Pod", short_names=("po",), categories=("all",), status=True,
          return_deleted=True, merge_keys=POD_KEYS,
          field_labels=("spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                        "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
                        "status.podIP", "status.nominatedNodeName")),
    _core("services", "service", "Service", short_names=("svc",), categories=("all",), status=True,
          return_deleted=True, merge_keys=SERVICE_KEYS),
    _core("endpoints", "endpoints", "Endpoints", short_names=("ep",), merge_keys={}),
    _core("events", "event", "Event", short_names=("ev",), merge_keys={}, storage_name="events",
          field_labels=("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                        "involvedObject.uid", "involvedObject.apiVersion",
                        "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
                        "reportingComponent", "source", "type")),
    _core("configmaps", "configmap", "ConfigMap", short_names=("cm",), merge_keys={}),
    _core("secrets", "secret", "Secret", merge_keys={}, field_labels=("type",)),
    _core("serviceaccounts", "serviceaccount", "ServiceAccount", short_names=("sa",), merge_keys={}),
    Resource("events.k8s.io", "v1", "events", "event", "Event", True, short_names=("ev",),
             merge_keys={}, storage_name="events", storage_version=False,
             field_labels=("regarding.kind", "regarding.namespace", "regarding.name",
                           "regarding.uid", "reason", "reportingController", "type")),
    Resource("apps", "v1", "deployments", "deployment", "Deployment", True, short_names=("deploy",),
             categories=("all",), status=True, scale=ScaleSpec(), generation=True,
             merge_keys=POD_KEYS),
    Resource("apps", "v1", "replicasets", "replicaset", "ReplicaSet", True, short_names=("rs",),
             categories=("all",), status=True, scale=ScaleSpec(), generation=True,
             merge_keys=POD_KEYS),
    Resource("coordination.k8s.io", "v1", "leases", "lease", "Lease", True, merge_keys={}),
    Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "customresourcedefinition",
             "CustomResourceDefinition", False, short_names=("crd", "crds"),
             categories=("api-extensions",), status=True, generation=True, return_deleted=True,
             merge_keys={}),
)


def crd_resources(crd: JSON) -> list[Resource]:
    """The resources one CustomResourceDefinition serves, one per served version."""
    spec = crd["spec"]
    names = spec["names"]
    storage_version = next(v["name"] for v in spec["versions"] if v.get("storage"))
    out = []
    for ver in spec["versions"]:
        if not ver.get("served", True):
            continue
        subresources = ver.get("subresources") or {}
        scale = subresources.get("scale")
        schema = (ver.get("schema") or {}).get("openAPIV3Schema") or {
            "type": "object", "x-kubernetes-preserve-unknown-fields": True,
        }
        out.append(
            Resource(
                group=spec["group"],
                version=ver["name"],
                plural=names["plural"],
                singular=names.get("singular") or names["kind"].lower(),
                kind=names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                status="status" in subresources,
                scale=None if scale is None else ScaleSpec(
                    _dotted(scale["specReplicasPath"]),
                    _dotted(scale["statusReplicasPath"]),
                    _dotted(scale["labelSelectorPath"]) if scale.get("labelSelectorPath") else None,
                ),
                generation=True,
                return_deleted=True,
                unconditional_update=False,
                merge_keys=None,
                field_labels=tuple(_dotted(f["jsonPath"]) for f in ver.get("selectableFields") or ()),
                schema=schema,
                printer_columns=tuple(ver.get("additionalPrinterColumns") or ()),
                storage_version=ver["name"] == storage_version,
            )
        )
    return out


def _dotted(json_path: str) -> str:
    return json_path.lstrip(".")


@dataclass
class Registry:
    """The resources served now, indexed for routing and discovery."""

    _by_gvr: dict[tuple[str, str, str], Resource] = field(default_factory=dict)
    _crds: dict[str, list[Resource]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for res in BUILTINS:
            self.add(res)

    def add(self, res: Resource) -> None:
        self._by_gvr[(res.group, res.version, res.plural)] = res

    def get(self, group: str, version: str, plural: str) -> Resource | None:
        return self._by_gvr.get((group, version, plural))

    def register_crd(self, crd: JSON) -> None:
        self.unregister_crd(crd["metadata"]["name"])
        resources = crd_resources(crd)
        self._crds[crd["metadata"]["name"]] = resources
        for res in resources:
            self.add(res)

    def unregister_crd(self, name: str) -> list[Resource]:
        resources = self._crds.pop(name, [])
        for res in resources:
            self._by_gvr.pop((res.group, res.version, res.plural), None)
        return resources

    def crd_of(self, res: Resource) -> str | None:
        for name, resources in self._crds.items():
            if any(r.group == res.group and r.plural == res.plural for r in resources):
                return name
        return None

    def storage_resource(self, storage: str) -> Resource:
        """The version objects of this storage are kept in."""
        return next(r for r in self if r.storage == storage and r.storage_version)

    def versions_of(self, storage: str) -> list[Resource]:
        return [r for r in self if r.storage == storage]

    def __iter__(self) -> Iterator[Resource]:
        return iter(list(self._by_gvr.values()))

    def groups(self) -> dict[str, list[str]]:
        """Group name → versions served, preferred (storage, else first) version first."""
        out: dict[str, list[str]] = {}
        for res in self:
            versions = out.setdefault(res.group, [])
            if res.version not in versions:
                if res.storage_version:
                    versions.insert(0, res.version)
                else:
                    versions.append(res.version)
        return out

    def in_version(self, group: str, version: str) -> list[Resource]:
        return [r for r in self if r.group == group and r.version == version]
