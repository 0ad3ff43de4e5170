"""Deletion: finalizers, propagation policies, ownerReference cascading and namespaces.

An object with finalizers (or deleted in the Foreground) is only marked: `deletionTimestamp`,
`deletionGracePeriodSeconds: 0`, a generation bump, and a 202; it goes when its last finalizer is
removed. Otherwise it goes at once (200, with the object or a Success Status). Once something is
gone, what it owned goes too, as the garbage collector would do it: a dependent whose
ownerReferences point at the deleted uid is deleted (Background), unless another owner still
lives, in which case only that reference is dropped; Orphan drops the references instead;
Foreground owners wait (with the `foregroundDeletion` finalizer) until their dependents are gone.
Deleting a namespace marks it Terminating, deletes everything in it, and removes it once empty.
Deleting a CRD removes its resource and every instance.

The real garbage collector and namespace controller run asynchronously; here everything happens
within the request, which is indistinguishable to a client that watches for the outcome.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sloscale.apiserver.errors import FieldError, conflict, invalid
from sloscale.apiserver.resources import Resource

if TYPE_CHECKING:
    from sloscale.apiserver.objects import Objects

JSON = dict[str, Any]


@dataclass
class Collector:
    objects: Objects

    def delete(self, res: Resource, ns: str, name: str, options: JSON, dry_run: bool) -> tuple[int, JSON]:
        current = self.objects.read(res, ns, name)
        meta = current["metadata"]
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != meta["uid"]:
            raise conflict(res.group_resource, res.group, res.plural, name,
                           f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {meta['uid']}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
            raise conflict(res.group_resource, res.group, res.plural, name,
                           f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, ResourceVersion in object meta: {meta['resourceVersion']}")
        policy = options.get("propagationPolicy") or ("Orphan" if options.get("orphanDependents") else "Background")
        if policy not in ("Background", "Foreground", "Orphan"):
            raise invalid("meta.k8s.io", "DeleteOptions", "", [FieldError("FieldValueNotSupported", "propagationPolicy", 'supported values: "Foreground", "Background", "Orphan", "nil"', policy)])
        if dry_run:
            return 200, self.objects.present(res, current)
        if policy == "Orphan":
            self._orphan(meta["uid"])
        namespace = res.plural == "namespaces" and not res.group
        if meta.get("deletionTimestamp"):
            return 202, self.objects.present(res, current)
        if meta.get("finalizers") or policy == "Foreground" or namespace:
            marked = copy.deepcopy(current)
            marked["metadata"]["deletionTimestamp"] = self.objects.now()
            marked["metadata"]["deletionGracePeriodSeconds"] = 0
            if res.generation:
                marked["metadata"]["generation"] = int(meta.get("generation", 1)) + 1
            if policy == "Foreground":
                marked["metadata"]["finalizers"] = [*(meta.get("finalizers") or []), "foregroundDeletion"]
            if namespace:
                marked.setdefault("status", {})["phase"] = "Terminating"
            stored = self.objects.store.put(res.storage, marked)
            if policy == "Foreground":
                self._delete_dependents(meta["uid"])
                stored = self._settle_foreground(res.storage, stored) or stored
            if namespace:
                self._empty_namespace(name)
                stored = self._settle_namespace(name) or stored
            gone_now = self.objects.store.get(res.storage, meta.get("namespace", ""), name) is None
            return (200 if gone_now else 202), self.objects.present(res, stored)
        final = self.objects.store.remove(res.storage, current)
        self.removed(res.storage, final)
        if res.return_deleted:
            return 200, self.objects.present(res, final)
        details = {"name": name, "kind": res.plural, "uid": meta["uid"]}
        if res.group:
            details["group"] = res.group
        return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    def removed(self, storage: str, obj: JSON) -> None:
        """After an object is gone: cascade to dependents, finish waiting owners and namespaces."""
        if storage == "customresourcedefinitions.apiextensions.k8s.io":
            for res in self.objects.registry.unregister_crd(obj["metadata"]["name"]):
                for item in self.objects.store.select(res.storage):
                    self.removed(res.storage, self.objects.store.remove(res.storage, item))
                self.objects.store.drop_storage(res.storage)
        self._delete_dependents(obj["metadata"]["uid"])
        for st, other in list(self.objects.store.all_objects()):
            if "foregroundDeletion" in (other["metadata"].get("finalizers") or []):
                self._settle_foreground(st, other)
        ns = obj["metadata"].get("namespace")
        if ns:
            self._settle_namespace(ns)

    def _dependents(self, uid: str) -> list[tuple[str, JSON]]:
        return [(st, o) for st, o in self.objects.store.all_objects()
                if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or [])]

    def _delete_dependents(self, uid: str) -> None:
        live = {o["metadata"]["uid"] for _, o in self.objects.store.all_objects()}
        for storage, dep in self._dependents(uid):
            current = self.objects.store.get(storage, dep["metadata"].get("namespace", ""), dep["metadata"]["name"])
            if current is None or current["metadata"].get("deletionTimestamp"):
                continue
            refs = current["metadata"].get("ownerReferences") or []
            if any(r.get("uid") != uid and r.get("uid") in live for r in refs):
                updated = copy.deepcopy(current)
                updated["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                self.objects.store.put(storage, updated)
                continue
            res = self.objects.registry.storage_resource(storage)
            self.delete(res, current["metadata"].get("namespace", ""), current["metadata"]["name"], {}, dry_run=False)

    def _orphan(self, uid: str) -> None:
        for storage, dep in self._dependents(uid):
            updated = copy.deepcopy(dep)
            updated["metadata"]["ownerReferences"] = [r for r in updated["metadata"]["ownerReferences"] if r.get("uid") != uid]
            if not updated["metadata"]["ownerReferences"]:
                del updated["metadata"]["ownerReferences"]
            self.objects.store.put(storage, updated)

    def _settle_foreground(self, storage: str, owner: JSON) -> JSON | None:
        if self._dependents(owner["metadata"]["uid"]):
            return None
        updated = copy.deepcopy(owner)
        updated["metadata"]["finalizers"] = [f for f in owner["metadata"]["finalizers"] if f != "foregroundDeletion"]
        if updated["metadata"]["finalizers"]:
            return self.objects.store.put(storage, updated)
        final = self.objects.store.remove(storage, owner)
        self.removed(storage, final)
        return final

    def _empty_namespace(self, ns: str) -> None:
        for storage, obj in list(self.objects.store.all_objects()):
            if obj["metadata"].get("namespace") == ns and not obj["metadata"].get("deletionTimestamp"):
                if self.objects.store.get(storage, ns, obj["metadata"]["name"]) is None:
                    continue
                res = self.objects.registry.storage_resource(storage)
                self.delete(res, ns, obj["metadata"]["name"], {}, dry_run=False)

    def _settle_namespace(self, ns: str) -> JSON | None:
        namespace = self.objects.store.get("namespaces", "", ns)
        if namespace is None or not namespace["metadata"].get("deletionTimestamp"):
            return None
        if any(o["metadata"].get("namespace") == ns for _, o in self.objects.store.all_objects()):
            return None
        final = self.objects.store.remove("namespaces", namespace)
        self.removed("namespaces", final)
        return final
