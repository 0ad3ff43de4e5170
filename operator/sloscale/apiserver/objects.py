"""Object semantics of the API server, apart from HTTP: create, read, update, patch, delete.

This is where the conventions the clients rely on live:

- create: 201 with `uid`, `resourceVersion`, `creationTimestamp`, `generation: 1`; `generateName`
  gets five random characters; the namespace must exist and not be terminating; status is reset
  for kinds that have a status subresource; defaults are filled in and the object is validated.
- update (PUT) and patch: a stale `metadata.resourceVersion` is a 409 Conflict (custom resources
  must send one); `generation` is bumped only when something outside metadata and status changes;
  the main resource ignores status changes and `/status` changes only status; a write that
  changes nothing is not a write (same resourceVersion, no watch event); no new finalizers once
  deletion started.
- delete: handed to `deletion.Collector` (finalizers, propagation, cascading, namespaces); an
  update that removes the last finalizer of an object being deleted deletes it.
- scale: an autoscaling/v1 `Scale` view of `spec.replicas`, `status.replicas` and the selector.

Not emulated: server-side apply and managedFields, admission webhooks, pod graceful termination
(pods go at once unless they carry finalizers), the CRD instance-cleanup finalizer (instances go
with their CRD, finalizers or not), garbage collection of anything but ownerReferences.
"""

from __future__ import annotations

import copy
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sloscale.apiserver import builtins
from sloscale.apiserver.deletion import Collector
from sloscale.apiserver.errors import (
    STALE,
    ApiError,
    FieldError,
    already_exists,
    bad_request,
    conflict,
    invalid,
    not_found,
)
from sloscale.apiserver.patch import apply_patch
from sloscale.apiserver.resources import Registry, Resource
from sloscale.apiserver.selectors import field_matcher, format_selector, label_matcher
from sloscale.apiserver.store import Store
from sloscale.apiserver.validation import CelRules, SchemaValidator

JSON = dict[str, Any]
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _body(obj: JSON) -> JSON:
    """Everything but metadata and status: what a generation counts changes of."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _same(a: JSON, b: JSON) -> bool:
    strip = ("resourceVersion", "managedFields")
    return {**a, "metadata": {k: v for k, v in a["metadata"].items() if k not in strip}} == {
        **b, "metadata": {k: v for k, v in b["metadata"].items() if k not in strip}
    }


def _get_path(obj: JSON, dotted: str) -> Any:
    cur: Any = obj
    for part in dotted.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return cur


def _set_path(obj: JSON, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur = obj
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    cur[parts[-1]] = value


@dataclass
class WriteOptions:
    dry_run: bool = False
    field_validation: str = "Warn"  # Strict | Warn | Ignore


@dataclass
class Objects:
    registry: Registry
    store: Store
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    rules: CelRules = field(default_factory=CelRules)
    rng: random.Random = field(default_factory=random.Random)
    _validators: dict[tuple[str, str, str], SchemaValidator] = field(default_factory=dict)
    _cluster_ips: list[str] = field(default_factory=builtins.cluster_ip_pool)
    warnings: list[str] = field(default_factory=list)
    collector: Collector = field(init=False)

    def __post_init__(self) -> None:
        self.collector = Collector(self)

    def now(self) -> str:
        return rfc3339(self.clock())

    def bootstrap(self) -> None:
        ns = self.registry.get("", "v1", "namespaces")
        assert ns is not None
        for name in ("default", "kube-system", "kube-public"):
            self.create(ns, "", {"metadata": {"name": name}}, WriteOptions())

    # --- versions -------------------------------------------------------------------------

    def present(self, res: Resource, stored: JSON) -> JSON:
        """A stored object as the requested version shows it."""
        out = builtins.event_from_storage(stored) if res.group == "events.k8s.io" else copy.deepcopy(stored)
        out["apiVersion"] = res.api_version
        out["kind"] = res.kind
        return out

    def _to_storage(self, res: Resource, obj: JSON) -> JSON:
        out = builtins.event_to_storage(obj) if res.group == "events.k8s.io" else copy.deepcopy(obj)
        storage_res = self.registry.storage_resource(res.storage)
        out["apiVersion"] = storage_res.api_version
        out["kind"] = storage_res.kind
        return out

    def validator(self, res: Resource) -> SchemaValidator | None:
        if res.schema is None:
            return None
        key = (res.group, res.version, res.plural)
        if key not in self._validators or self._validators[key].schema is not res.schema:
            self._validators[key] = SchemaValidator(res.schema, self.rules)
        return self._validators[key]

    # --- reads ----------------------------------------------------------------------------

    def read(self, res: Resource, ns: str, name: str) -> JSON:
        obj = self.store.get(res.storage, ns if res.namespaced else "", name)
        if obj is None:
            raise not_found(res.group_resource, res.group, res.plural, name)
        return obj

    def get(self, res: Resource, ns: str, name: str) -> JSON:
        return self.present(res, self.read(res, ns, name))

    def matcher(self, res: Resource, ns: str | None, labels: str | None, fields: str | None) -> Callable[[JSON], bool]:
        by_label = label_matcher(labels)
        by_field = field_matcher(fields, res.field_labels)

        def match(stored: JSON) -> bool:
            if res.namespaced and ns and stored["metadata"].get("namespace") != ns:
                return False
            view = self.present(res, stored) if res.group == "events.k8s.io" else stored
            return by_label(view) and by_field(view)

        return match

    def select(self, res: Resource, ns: str | None, labels: str | None, fields: str | None) -> tuple[list[JSON], int]:
        match = self.matcher(res, ns, labels, fields)
        items = [self.present(res, o) for o in self.store.select(res.storage, ns if res.namespaced and ns else None) if match(o)]
        return items, self.store.rv

    # --- create ---------------------------------------------------------------------------

    def create(self, res: Resource, ns: str, body: JSON, opts: WriteOptions) -> JSON:
        obj = copy.deepcopy(body)
        if not isinstance(obj.get("metadata"), dict):
            obj["metadata"] = {}
        meta = obj["metadata"]
        if res.namespaced:
            if meta.get("namespace") and meta["namespace"] != ns:
                raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
            meta["namespace"] = ns
            self._check_namespace(ns)
        else:
            meta.pop("namespace", None)
        if meta.get("resourceVersion"):
            raise bad_request("resourceVersion should not be set on objects to be created")
        for key in ("uid", "deletionTimestamp", "deletionGracePeriodSeconds", "generation", "selfLink", "managedFields"):
            meta.pop(key, None)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise invalid(res.group, res.kind, "", [FieldError("FieldValueRequired", "metadata.name", "name or generateName is required")])
            meta["name"] = self._generate_name(res, ns, meta["generateName"])
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = rfc3339(self.clock())
        if res.generation:
            meta["generation"] = 1
        if res.status:
            builtins.initial_status(res, obj)
        errors = builtins.validate_name(res, meta["name"])
        obj = self._normalize(res, obj, None, opts)
        if res.plural == "customresourcedefinitions" and res.group == "apiextensions.k8s.io":
            builtins.normalize_crd(obj)
            errors += builtins.validate_crd(obj, None, self.rules)
            if not errors:
                obj["status"] = builtins.crd_status(obj, rfc3339(self.clock()))
        if not res.custom:
            builtins.apply_builtin_defaults(res, obj, self._cluster_ips if not opts.dry_run else list(self._cluster_ips))
        errors += self._validate(res, obj, None)
        if errors:
            raise invalid(res.group, res.kind, meta["name"], errors)
        if self.store.get(res.storage, meta.get("namespace", ""), meta["name"]) is not None:
            raise already_exists(res.group_resource, res.group, res.plural, meta["name"])
        stored = self._to_storage(res, obj)
        if opts.dry_run:
            return self.present(res, stored)
        stored = self.store.put(res.storage, stored)
        if res.plural == "customresourcedefinitions" and res.group == "apiextensions.k8s.io":
            self.registry.register_crd(stored)
        return self.present(res, stored)

    def _generate_name(self, res: Resource, ns: str, prefix: str) -> str:
        for _ in range(100):
            name = prefix[:58] + "".join(self.rng.choice(_NAME_CHARS) for _ in range(5))
            if self.store.get(res.storage, ns if res.namespaced else "", name) is None:
                return name
        raise ApiError(500, "failed to generate a unique name", "InternalError")

    def _check_namespace(self, ns: str) -> None:
        if not ns:
            raise bad_request("the namespace of the object is required")
        namespace = self.store.get("namespaces", "", ns)
        if namespace is None:
            raise not_found("namespaces", "", "namespaces", ns)
        if namespace["metadata"].get("deletionTimestamp"):
            raise ApiError(403, f"unable to create new content in namespace {ns} because it is being terminated",
                           "Forbidden", {"name": ns, "kind": "namespaces"})

    def _normalize(self, res: Resource, obj: JSON, old: JSON | None, opts: WriteOptions) -> JSON:
        validator = self.validator(res)
        if validator is None:
            return obj
        obj, pruned = validator.normalize(obj)
        if pruned and opts.field_validation == "Strict":
            unknown = ", ".join(f'unknown field "{p}"' for p in pruned)
            raise bad_request(f"strict decoding error: {unknown}")
        if opts.field_validation == "Warn":
            self.warnings += [f'unknown field "{p}"' for p in pruned]
        return obj

    def _validate(self, res: Resource, obj: JSON, old: JSON | None) -> list[FieldError]:
        validator = self.validator(res)
        if validator is not None:
            return validator.validate(obj, old)
        return builtins.validate_builtin(res, obj, old)

    # --- update and patch -----------------------------------------------------------------

    def update(self, res: Resource, ns: str, name: str, body: JSON, sub: str, opts: WriteOptions) -> JSON:
        current = self.read(res, ns, name)
        if not isinstance(body.get("metadata"), dict):
            body = {**body, "metadata": {}}
        meta: JSON = body["metadata"]
        if meta.get("name", name) != name:
            raise bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})")
        if res.namespaced and meta.get("namespace", ns) != ns:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        rv = meta.get("resourceVersion")
        if not rv and not res.unconditional_update:
            raise invalid(res.group, res.kind, name, [FieldError("FieldValueInvalid", "metadata.resourceVersion", "must be specified for an update", "0x0")])
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise conflict(res.group_resource, res.group, res.plural, name, STALE)
        return self._write(res, current, body, sub, opts)

    def patch(self, res: Resource, ns: str, name: str, content_type: str, patch: Any, sub: str, opts: WriteOptions) -> JSON:
        current = self.read(res, ns, name)
        view = self.present(res, current)
        patched = apply_patch(content_type, view, patch, res.merge_keys)
        raw_meta = patched.get("metadata")
        meta: JSON = raw_meta if isinstance(raw_meta, dict) else {}
        if meta.get("name", name) != name:
            raise bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})")
        rv = meta.get("resourceVersion")
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise conflict(res.group_resource, res.group, res.plural, name, STALE)
        return self._write(res, current, patched, sub, opts)

    def _write(self, res: Resource, current: JSON, body: JSON, sub: str, opts: WriteOptions) -> JSON:
        old = self.present(res, current)
        old_meta = old["metadata"]
        if sub == "status":
            new = copy.deepcopy(old)
            if "status" in body:
                new["status"] = copy.deepcopy(body["status"])
            else:
                new.pop("status", None)
        else:
            new = copy.deepcopy(body)
            new["metadata"] = dict(new.get("metadata") or {})
            if res.status:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
        meta = new["metadata"]
        if meta.get("uid") and meta["uid"] != old_meta["uid"]:
            raise invalid(res.group, res.kind, old_meta["name"], [FieldError("FieldValueInvalid", "metadata.uid", "field is immutable", meta["uid"])])
        for key in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation", "resourceVersion"):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        if old_meta.get("deletionTimestamp"):
            added = [f for f in meta.get("finalizers") or [] if f not in (old_meta.get("finalizers") or [])]
            if added:
                quoted = ", ".join(f'"{f}"' for f in added)
                raise invalid(res.group, res.kind, old_meta["name"], [FieldError(
                    "FieldValueForbidden", "metadata.finalizers",
                    f"no new finalizers can be added if the object is being deleted, found new finalizers []string{{{quoted}}}")])
        new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
        new = self._normalize(res, new, old, opts)
        meta = new["metadata"]
        if not res.custom:
            builtins.apply_builtin_defaults(res, new, [])
        if res.plural == "customresourcedefinitions" and res.group == "apiextensions.k8s.io":
            builtins.normalize_crd(new)
        if res.generation and _body(new) != _body(old):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        errors = self._validate(res, new, old)
        if res.plural == "customresourcedefinitions" and res.group == "apiextensions.k8s.io":
            errors += builtins.validate_crd(new, old, self.rules)
        if errors:
            raise invalid(res.group, res.kind, old_meta["name"], errors)
        if _same(new, old):
            return old
        stored = self._to_storage(res, new)
        if opts.dry_run:
            return self.present(res, stored)
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and not self._has_spec_finalizers(res, new):
            final = self.store.remove(res.storage, current, stored)
            self.collector.removed(res.storage, final)
            return self.present(res, final)
        stored = self.store.put(res.storage, stored)
        if res.plural == "customresourcedefinitions" and res.group == "apiextensions.k8s.io":
            self.registry.register_crd(stored)
        return self.present(res, stored)

    @staticmethod
    def _has_spec_finalizers(res: Resource, obj: JSON) -> bool:
        return res.plural == "namespaces" and not res.group and bool((obj.get("spec") or {}).get("finalizers"))

    # --- delete ---------------------------------------------------------------------------

    def delete(self, res: Resource, ns: str, name: str, options: JSON, opts: WriteOptions) -> tuple[int, JSON]:
        return self.collector.delete(res, ns, name, options, opts.dry_run)

    # --- scale ----------------------------------------------------------------------------

    def get_scale(self, res: Resource, ns: str, name: str) -> JSON:
        assert res.scale is not None
        obj = self.read(res, ns, name)
        selector = _get_path(obj, res.scale.label_selector) if res.scale.label_selector else None
        meta = obj["metadata"]
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta},
            "spec": {"replicas": _get_path(obj, res.scale.spec_replicas) or 0},
            "status": {
                "replicas": _get_path(obj, res.scale.status_replicas) or 0,
                "selector": format_selector(selector) if isinstance(selector, dict) else (selector or ""),
            },
        }

    def update_scale(self, res: Resource, ns: str, name: str, scale: JSON, opts: WriteOptions) -> JSON:
        assert res.scale is not None
        current = self.read(res, ns, name)
        rv = (scale.get("metadata") or {}).get("resourceVersion")
        if rv and rv != current["metadata"]["resourceVersion"]:
            raise conflict(res.group_resource, res.group, res.plural, name, STALE)
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise invalid("autoscaling", "Scale", name, [FieldError("FieldValueInvalid", "spec.replicas", "must be greater than or equal to 0", replicas)])
        updated = self.present(res, current)
        _set_path(updated, res.scale.spec_replicas, replicas)
        self._write(res, current, updated, "", opts)
        if opts.dry_run:
            out = self.get_scale(res, ns, name)
            out["spec"]["replicas"] = replicas
            return out
        return self.get_scale(res, ns, name)

    def patch_scale(self, res: Resource, ns: str, name: str, content_type: str, patch: Any, opts: WriteOptions) -> JSON:
        scale = apply_patch(content_type, self.get_scale(res, ns, name), patch, {})
        return self.update_scale(res, ns, name, scale, opts)
