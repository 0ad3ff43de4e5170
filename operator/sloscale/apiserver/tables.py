"""Server-side printing: `meta.k8s.io/v1` Tables for `kubectl get`.

kubectl asks for `application/json;as=Table;v=v1;g=meta.k8s.io` and prints what the server
returns. Custom resources get their CRD's `additionalPrinterColumns` (kubectl-style JSONPath via
`jsonpath-ng`; `date` columns rendered as ages, missing values as `<none>`), built-in kinds the
columns the real server prints for them, anything else Name and Age. Rows carry the object's
metadata (`includeObject=Metadata`, the default) or the whole object (`Object`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from jsonpath_ng.ext.parser import parse as jsonpath

from sloscale.apiserver.resources import Resource

JSON = dict[str, Any]
Column = tuple[JSON, Callable[[JSON], Any]]


def human_duration(seconds: float) -> str:
    """apimachinery's `duration.HumanDuration`: 45s, 3m20s, 5h, 3d4h, 2y…"""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24
        return f"{days // 365}y{days % 365}d" if days % 365 else f"{days // 365}y"
    return f"{hours // 24 // 365}y"


def age(timestamp: Any, now: datetime) -> str:
    if not timestamp:
        return "<unknown>"
    when = datetime.strptime(str(timestamp)[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return human_duration((now - when).total_seconds())


def _col(name: str, type_: str = "string", fmt: str = "", priority: int = 0, description: str = "") -> JSON:
    col: JSON = {"name": name, "type": type_, "format": fmt, "description": description, "priority": priority}
    return col


def _jsonpath_cell(path: str, type_: str, now: datetime) -> Callable[[JSON], Any]:
    try:
        expr = jsonpath("$" + path if path.startswith((".", "[")) else "$." + path)
    except Exception:  # noqa: BLE001 - a bad column prints <none>, as kubectl does
        return lambda obj: None

    def cell(obj: JSON) -> Any:
        found = [m.value for m in expr.find(obj)]
        if not found or found[0] is None:
            return None
        value = found[0] if len(found) == 1 else ",".join(str(v) for v in found)
        if type_ == "date":
            return age(value, now)
        if type_ == "integer" and isinstance(value, int | float):
            return int(value)
        if type_ == "boolean" and isinstance(value, bool):
            return value
        if type_ == "number" and isinstance(value, int | float):
            return value
        return value if isinstance(value, str) else _go_string(value)

    return cell


def _go_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _ready(obj: JSON) -> str:
    statuses = (obj.get("status") or {}).get("containerStatuses") or []
    total = len((obj.get("spec") or {}).get("containers") or [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _ports(obj: JSON) -> str:
    ports = (obj.get("spec") or {}).get("ports") or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports) or "<none>"


def _builtin_columns(res: Resource, now: datetime) -> list[Column]:
    def created(o: JSON) -> str:
        return age(o["metadata"].get("creationTimestamp"), now)

    def spec(o: JSON) -> JSON:
        return o.get("spec") or {}

    def status(o: JSON) -> JSON:
        return o.get("status") or {}

    age_col = (_col("Age", description="CreationTimestamp is a timestamp representing the server time when this object was created."), created)
    name_col = (_col("Name", fmt="name", description="Name must be unique within a namespace."), lambda o: o["metadata"]["name"])
    match (res.group, res.plural):
        case ("apps", "deployments"):
            return [name_col,
                    (_col("Ready"), lambda o: f"{status(o).get('readyReplicas', 0)}/{spec(o).get('replicas', 0)}"),
                    (_col("Up-to-date", "integer"), lambda o: status(o).get("updatedReplicas", 0)),
                    (_col("Available", "integer"), lambda o: status(o).get("availableReplicas", 0)),
                    age_col]
        case ("apps", "replicasets"):
            return [name_col,
                    (_col("Desired", "integer"), lambda o: spec(o).get("replicas", 0)),
                    (_col("Current", "integer"), lambda o: status(o).get("replicas", 0)),
                    (_col("Ready", "integer"), lambda o: status(o).get("readyReplicas", 0)),
                    age_col]
        case ("", "pods"):
            return [name_col, (_col("Ready"), _ready),
                    (_col("Status"), lambda o: status(o).get("phase", "Unknown") if not o["metadata"].get("deletionTimestamp") else "Terminating"),
                    (_col("Restarts", "string"), lambda o: str(sum(s.get("restartCount", 0) for s in status(o).get("containerStatuses") or []))),
                    age_col,
                    (_col("IP", priority=1), lambda o: status(o).get("podIP") or "<none>"),
                    (_col("Node", priority=1), lambda o: spec(o).get("nodeName") or "<none>")]
        case ("", "services"):
            return [name_col, (_col("Type"), lambda o: spec(o).get("type", "ClusterIP")),
                    (_col("Cluster-IP"), lambda o: spec(o).get("clusterIP") or "<none>"),
                    (_col("External-IP"), lambda o: ",".join(spec(o).get("externalIPs") or []) or "<none>"),
                    (_col("Port(s)"), _ports), age_col]
        case ("", "namespaces"):
            return [name_col, (_col("Status"), lambda o: status(o).get("phase", "")), age_col]
        case (_, "events"):
            return [(_col("Last Seen"), lambda o: age(o.get("lastTimestamp") or o.get("deprecatedLastTimestamp") or o.get("eventTime") or o["metadata"].get("creationTimestamp"), now)),
                    (_col("Type"), lambda o: o.get("type", "")),
                    (_col("Reason"), lambda o: o.get("reason", "")),
                    (_col("Object"), lambda o: _involved(o)),
                    (_col("Message"), lambda o: str(o.get("message", o.get("note", ""))).strip())]
        case ("apiextensions.k8s.io", "customresourcedefinitions"):
            return [name_col, (_col("Created At", "date"), lambda o: o["metadata"].get("creationTimestamp"))]
    return [name_col, age_col]


def _involved(obj: JSON) -> str:
    ref = obj.get("involvedObject") or obj.get("regarding") or {}
    return f"{str(ref.get('kind', '')).lower()}/{ref.get('name', '')}"


def columns(res: Resource, now: datetime) -> list[Column]:
    if not res.custom:
        return _builtin_columns(res, now)
    cols: list[Column] = [(_col("Name", fmt="name", description="Name must be unique within a namespace."), lambda o: o["metadata"]["name"])]
    printer = res.printer_columns or ({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},)
    for pc in printer:
        cols.append((
            _col(pc["name"], pc.get("type", "string"), pc.get("format", ""), int(pc.get("priority", 0)), pc.get("description", "")),
            _jsonpath_cell(pc["jsonPath"], pc.get("type", "string"), now),
        ))
    return cols


def table(res: Resource, items: list[JSON], meta: JSON, include: str, now: datetime, headers: bool = True) -> JSON:
    cols = columns(res, now)
    rows = []
    for obj in items:
        row: JSON = {"cells": [fn(obj) for _, fn in cols]}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": [c for c, _ in cols] if headers else [],
        "rows": rows,
    }
