"""The OpenAPI documents kubectl reads: `/openapi/v3` and one document per group-version.

`kubectl explain` finds a kind's schema through its `x-kubernetes-group-version-kind`, and
`kubectl apply`/`create` check from the operations' parameters whether the server validates
fields itself (`fieldValidation`). Custom resources are described by their CRD's schema, with
`metadata` pointing at ObjectMeta as the real server publishes them; built-in kinds get a
skeleton (apiVersion, kind, metadata, open spec and status) since the emulator does not carry
the upstream schemas.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from sloscale.apiserver.resources import Resource

JSON = dict[str, Any]
META_REF = "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

OBJECT_META: JSON = {
    "description": "ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.",
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "Name must be unique within a namespace."},
        "generateName": {"type": "string", "description": "An optional prefix used by the server to generate a unique name when name is not provided."},
        "namespace": {"type": "string", "description": "Namespace defines the space within which each name must be unique."},
        "uid": {"type": "string", "description": "UID is the unique in time and space value for this object."},
        "resourceVersion": {"type": "string", "description": "An opaque value that represents the internal version of this object."},
        "generation": {"type": "integer", "format": "int64", "description": "A sequence number representing a specific generation of the desired state."},
        "creationTimestamp": {"type": "string", "format": "date-time", "description": "A timestamp representing the server time when this object was created."},
        "deletionTimestamp": {"type": "string", "format": "date-time", "description": "RFC 3339 date and time at which this resource will be deleted."},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Map of string keys and values that can be used to organize and categorize objects."},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Annotations is an unstructured key value map stored with a resource."},
        "finalizers": {"type": "array", "items": {"type": "string"}, "description": "Must be empty before the object is deleted from the registry."},
        "ownerReferences": {"type": "array", "items": {"type": "object"}, "description": "List of objects depended by this object."},
    },
}


def schema_name(res: Resource) -> str:
    if res.custom:
        reverse = ".".join(reversed(res.group.split(".")))
        return f"{reverse}.{res.version}.{res.kind}"
    group = res.group.split(".")[0] if res.group else "core"
    return f"io.k8s.api.{group}.{res.version}.{res.kind}"


def _gvk(res: Resource, kind: str | None = None) -> list[JSON]:
    return [{"group": res.group, "version": res.version, "kind": kind or res.kind}]


def _kind_schema(res: Resource) -> JSON:
    if res.schema is not None:
        schema = copy.deepcopy(res.schema)
        props = schema.setdefault("properties", {})
        props["metadata"] = {"allOf": [{"$ref": META_REF}], "description": "Standard object's metadata."}
    else:
        schema = {
            "type": "object",
            "description": f"{res.kind} ({res.api_version}).",
            "properties": {
                "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
                "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."},
                "metadata": {"allOf": [{"$ref": META_REF}], "description": "Standard object's metadata."},
                "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        }
    schema["x-kubernetes-group-version-kind"] = _gvk(res)
    return schema


def _list_schema(res: Resource) -> JSON:
    return {
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{schema_name(res)}"}},
            "metadata": {"type": "object"},
        },
        "x-kubernetes-group-version-kind": _gvk(res, res.list_kind),
    }


_QUERY = [
    {"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
    for n in ("dryRun", "fieldManager", "fieldValidation", "pretty")
]


def _operation(res: Resource, action: str, verb: str, ref: str) -> JSON:
    op: JSON = {
        "operationId": f"{verb}{res.kind}",
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": _gvk(res)[0],
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": ref}}}}},
    }
    if action in ("post", "put", "patch"):
        op["parameters"] = copy.deepcopy(_QUERY)
        body_types = ["application/json"] if action != "patch" else [
            "application/json-patch+json", "application/merge-patch+json"]
        if action == "patch" and not res.custom:
            # kubectl apply sends a strategic merge patch only where the server lists it.
            body_types.append("application/strategic-merge-patch+json")
        op["requestBody"] = {"content": {t: {"schema": {"$ref": ref}} for t in body_types}, "required": True}
    return op


def group_version_doc(resources: list[Resource]) -> JSON:
    schemas: JSON = {"io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": OBJECT_META}
    paths: JSON = {}
    for res in resources:
        ref = f"#/components/schemas/{schema_name(res)}"
        if res.custom:
            # Built-in kinds get no schema: kubectl then computes strategic merge patches from
            # its compiled-in types instead of a skeleton that lacks the merge keys.
            schemas[schema_name(res)] = _kind_schema(res)
            schemas[schema_name(res) + "List"] = _list_schema(res)
        prefix = f"/apis/{res.group}/{res.version}" if res.group else "/api/v1"
        base = f"{prefix}/namespaces/{{namespace}}/{res.plural}" if res.namespaced else f"{prefix}/{res.plural}"
        paths[base] = {
            "get": _operation(res, "list", "list", ref + "List"),
            "post": _operation(res, "post", "create", ref),
        }
        paths[base + "/{name}"] = {
            "get": _operation(res, "get", "read", ref),
            "put": _operation(res, "put", "replace", ref),
            "patch": _operation(res, "patch", "patch", ref),
            "delete": _operation(res, "delete", "delete", ref),
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.37.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def doc_hash(doc: JSON) -> str:
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:64].upper()
