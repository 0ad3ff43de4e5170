"""What the real API server does for the built-in kinds on write: names, defaults, validation.

Only what the operator, kopf, kubectl and the sandbox meet is emulated: object names (RFC 1123
subdomains; DNS labels for namespaces and services), the defaults the real server fills into
Deployments, Pods and Services (so that a client comparing what it wrote with what it reads back
sees what it would see on a cluster), the checks that matter for them (Deployment selector and
template labels, replicas ≥ 0, containers with a name and an image, immutable selectors), the
conversion between core/v1 Events and events.k8s.io/v1 Events (one storage, two shapes), and the
checks and status of CustomResourceDefinitions.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from typing import Any

from sloscale.apiserver.errors import FieldError
from sloscale.apiserver.resources import Resource
from sloscale.apiserver.validation import CelRules, compile_schema_rules

JSON = dict[str, Any]

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_LABEL_1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)


def validate_name(res: Resource, name: str) -> list[FieldError]:
    if res.plural == "namespaces":
        ok, limit, msg = _LABEL.match(name), 63, _LABEL_MSG
    elif res.plural == "services" and not res.group:
        ok, limit, msg = _LABEL_1035.match(name), 63, _LABEL_1035_MSG
    elif res.plural == "events":
        return []  # event names are free-form (involved object name + a suffix)
    else:
        ok, limit, msg = _SUBDOMAIN.match(name), 253, _SUBDOMAIN_MSG
    errors = []
    if not ok:
        errors.append(FieldError("FieldValueInvalid", "metadata.name", msg, name))
    if len(name) > limit:
        errors.append(FieldError("FieldValueInvalid", "metadata.name", f"must be no more than {limit} characters", name))
    return errors


# --- defaults -------------------------------------------------------------------------------


def _container_defaults(c: JSON) -> None:
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    image = str(c.get("image", ""))
    tag = image.rsplit("/", 1)[-1]
    latest = "@" not in image and (":" not in tag or tag.endswith(":latest"))
    c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    c.setdefault("resources", {})
    for port in c.get("ports") or []:
        port.setdefault("protocol", "TCP")


def _pod_spec_defaults(spec: JSON) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or []:
            _container_defaults(c)


def apply_builtin_defaults(res: Resource, obj: JSON, cluster_ips: list[str]) -> None:
    """Defaults on create (and on update for nested templates), as the real defaulters set them."""
    spec = obj.get("spec")
    if res.group == "apps" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        if res.plural == "deployments":
            spec.setdefault("progressDeadlineSeconds", 600)
            strategy = spec.setdefault("strategy", {})
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                rolling = strategy.setdefault("rollingUpdate", {})
                rolling.setdefault("maxUnavailable", "25%")
                rolling.setdefault("maxSurge", "25%")
        template = spec.get("template")
        if isinstance(template, dict):
            template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
            if isinstance(template.get("spec"), dict):
                _pod_spec_defaults(template["spec"])
    elif res.plural == "pods" and not res.group and isinstance(spec, dict):
        _pod_spec_defaults(spec)
        spec.setdefault("enableServiceLinks", True)
    elif res.plural == "services" and not res.group:
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
        if spec.get("clusterIP") != "None" and not spec.get("clusterIP"):
            spec["clusterIP"] = cluster_ips.pop(0) if cluster_ips else ""
        if spec.get("clusterIP"):
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    elif res.plural == "namespaces" and not res.group:
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]


def initial_status(res: Resource, obj: JSON) -> None:
    """The status a new object starts with when status is written only through `/status`."""
    if res.group == "apps":
        obj["status"] = {}
    elif res.plural == "pods" and not res.group:
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    elif res.plural == "services" and not res.group:
        obj["status"] = {"loadBalancer": {}}
    elif res.plural == "namespaces" and not res.group:
        obj["status"] = {"phase": "Active"}
    elif res.custom:
        obj.pop("status", None)


def cluster_ip_pool() -> list[str]:
    net = ipaddress.ip_network("10.96.0.0/20")
    return [str(ip) for ip in list(net.hosts())[9:]]


# --- validation -----------------------------------------------------------------------------


def _matches(selector: JSON, labels: JSON) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values):
            return False
        if (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def _go_map(labels: JSON) -> str:
    inner = ", ".join(f'"{k}":"{v}"' for k, v in sorted(labels.items()))
    return f"map[string]string{{{inner}}}"


def _containers(spec: Any, where: str) -> list[FieldError]:
    if not isinstance(spec, dict):
        return [FieldError("FieldValueRequired", where)]
    containers = spec.get("containers")
    if not containers:
        return [FieldError("FieldValueRequired", f"{where}.containers")]
    errors = []
    for i, c in enumerate(containers):
        for key in ("name", "image"):
            if not isinstance(c, dict) or not c.get(key):
                errors.append(FieldError("FieldValueRequired", f"{where}.containers[{i}].{key}"))
    return errors


def validate_builtin(res: Resource, obj: JSON, old: JSON | None) -> list[FieldError]:
    spec = obj.get("spec")
    errors: list[FieldError] = []
    if res.group == "apps" and res.plural in ("deployments", "replicasets"):
        if not isinstance(spec, dict):
            return [FieldError("FieldValueRequired", "spec")]
        replicas = spec.get("replicas", 0)
        if not isinstance(replicas, int) or replicas < 0:
            errors.append(FieldError("FieldValueInvalid", "spec.replicas", "must be greater than or equal to 0", replicas))
        selector = spec.get("selector")
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not selector:
            errors.append(FieldError("FieldValueRequired", "spec.selector"))
        elif not (selector.get("matchLabels") or selector.get("matchExpressions")):
            errors.append(FieldError("FieldValueInvalid", "spec.selector", "empty selector is invalid for deployment", selector))
        elif not _matches(selector, labels):
            errors.append(FieldError("FieldValueInvalid", "spec.template.metadata.labels", "`selector` does not match template `labels`", _go_map(labels)))
        errors += _containers((spec.get("template") or {}).get("spec"), "spec.template.spec")
        if old is not None and selector != (old.get("spec") or {}).get("selector"):
            errors.append(FieldError("FieldValueInvalid", "spec.selector", "field is immutable", selector))
    elif res.plural == "pods" and not res.group:
        errors += _containers(spec, "spec")
    elif res.plural == "events" and res.group == "events.k8s.io":
        for key in ("eventTime", "reportingController", "reportingInstance", "action", "reason"):
            if not obj.get(key):
                errors.append(FieldError("FieldValueRequired", key))
    return errors


# --- events: core/v1 ↔ events.k8s.io/v1 -----------------------------------------------------

_EVENT_FIELDS = (
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
)


def event_to_storage(obj: JSON) -> JSON:
    """events.k8s.io/v1 → core/v1 (the storage shape)."""
    out = copy.deepcopy(obj)
    for core, new in _EVENT_FIELDS:
        if new in out:
            out[core] = out.pop(new)
    out["apiVersion"] = "v1"
    return out


def event_from_storage(obj: JSON) -> JSON:
    """core/v1 → events.k8s.io/v1."""
    out = copy.deepcopy(obj)
    for core, new in _EVENT_FIELDS:
        if core in out:
            out[new] = out.pop(core)
    out["apiVersion"] = "events.k8s.io/v1"
    return out


# --- CustomResourceDefinitions --------------------------------------------------------------


def normalize_crd(crd: JSON) -> None:
    spec = crd.setdefault("spec", {})
    names = spec.setdefault("names", {})
    if names.get("kind"):
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", names["kind"] + "List")
    spec.setdefault("conversion", {"strategy": "None"})
    for ver in spec.get("versions") or []:
        ver.setdefault("served", True)


def validate_crd(crd: JSON, old: JSON | None, rules: CelRules) -> list[FieldError]:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    errors: list[FieldError] = []
    for key in ("group", "scope"):
        if not spec.get(key):
            errors.append(FieldError("FieldValueRequired", f"spec.{key}"))
    for key in ("plural", "kind"):
        if not names.get(key):
            errors.append(FieldError("FieldValueRequired", f"spec.names.{key}"))
    if spec.get("scope") not in (None, "", "Namespaced", "Cluster"):
        errors.append(FieldError("FieldValueNotSupported", "spec.scope", 'supported values: "Cluster", "Namespaced"', spec["scope"]))
    name = crd["metadata"]["name"]
    if names.get("plural") and spec.get("group") and name != f"{names['plural']}.{spec['group']}":
        errors.append(FieldError("FieldValueInvalid", "metadata.name", 'must be spec.names.plural+"."+spec.group', name))
    versions = spec.get("versions") or []
    if not versions:
        errors.append(FieldError("FieldValueInvalid", "spec.versions", "must have exactly one version marked as storage version", versions))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        errors.append(FieldError("FieldValueInvalid", "spec.versions", "must have exactly one version marked as storage version", "[]"))
    for i, ver in enumerate(versions):
        schema = (ver.get("schema") or {}).get("openAPIV3Schema")
        if schema is None:
            errors.append(FieldError("FieldValueRequired", f"spec.versions[{i}].schema.openAPIV3Schema", "schemas are required"))
            continue
        if schema.get("type") != "object":
            errors.append(FieldError("FieldValueRequired", f"spec.versions[{i}].schema.openAPIV3Schema.type", "must not be empty at the root"))
        for err in compile_schema_rules(schema, rules, f"spec.versions[{i}].schema.openAPIV3Schema"):
            errors.append(err)
    if old is not None:
        for key in ("group", "scope"):
            if spec.get(key) != old["spec"].get(key):
                errors.append(FieldError("FieldValueInvalid", f"spec.{key}", "field is immutable", spec.get(key)))
    return errors


def crd_status(crd: JSON, now: str) -> JSON:
    spec = crd["spec"]
    return {
        "acceptedNames": copy.deepcopy(spec["names"]),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": now},
        ],
        "storedVersions": [v["name"] for v in spec["versions"] if v.get("storage")],
    }
