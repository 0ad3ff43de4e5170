"""HTTP: routes, discovery, OpenAPI, lists, watches and the fault admin endpoint.

Every path the real API server answers for the emulated kinds is parsed here into
(resource, namespace, name, subresource) and handed to `Objects`; errors become `Status` bodies.
Discovery is the legacy form (`/api`, `/apis`, `/apis/G`, `/apis/G/V`, with or without a
trailing slash); clients that ask for aggregated discovery get the legacy documents and fall back, as with
older servers. Responses are JSON only (no protobuf); `kubectl get` gets server-side Tables.

Watch requests are handed to `watch.Watches`.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from typing import Any

import yaml
from aiohttp import web

from sloscale.apiserver import openapi, tables
from sloscale.apiserver.errors import ApiError, bad_request, not_found_path
from sloscale.apiserver.faults import Faults
from sloscale.apiserver.objects import Objects, WriteOptions
from sloscale.apiserver.resources import Registry, Resource
from sloscale.apiserver.store import Store
from sloscale.apiserver.watch import DROP_AFTER, Watches

JSON = dict[str, Any]
VERSION: JSON = {
    "major": "1", "minor": "37", "gitVersion": "v1.37.0-sloscale-emulator", "gitCommit": "",
    "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25",
    "compiler": "gc", "platform": "linux/amd64",
}
_NS_SUBRESOURCES = ("status", "finalize")


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json", headers=headers)


def _error(err: ApiError) -> web.Response:
    return _json(err.status(), err.code, err.headers or None)


@dataclass
class Route:
    res: Resource
    ns: str | None
    name: str | None
    sub: str
    watch_path: bool


@dataclass
class Server:
    objects: Objects
    faults: Faults
    bookmark_interval: float = 60.0
    watch_timeout: float = 1800.0
    host: str = "127.0.0.1"
    port: int = 0
    watches: Watches = field(init=False)

    def __post_init__(self) -> None:
        self.watches = Watches(self.objects, self.faults, self.bookmark_interval, self.watch_timeout)

    @property
    def registry(self) -> Registry:
        return self.objects.registry

    @property
    def store(self) -> Store:
        return self.objects.store

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith("/_emulator"):
            watch = request.query.get("watch") in ("true", "1") or "/watch/" in request.path
            fault = self.faults.pick(request.method, request.path, watch)
            if fault is not None:
                if fault.latency:
                    await asyncio.sleep(fault.latency)
                if fault.status is not None:
                    return _error(fault.error())
                if fault.drop_watch_after is not None:
                    request[DROP_AFTER] = fault.drop_watch_after
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except ApiError as err:
            return _error(err)

    # --- routing --------------------------------------------------------------------------

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if not parts:
            return _json({"paths": sorted(["/api", "/api/v1", "/apis", "/version", "/openapi/v3", "/healthz", "/readyz", "/livez"])})
        head = parts[0]
        if head in ("healthz", "readyz", "livez") and len(parts) == 1:
            return web.Response(text="ok")
        if head == "version" and len(parts) == 1:
            return _json(VERSION)
        if head == "openapi":
            return self._openapi(parts[1:], request)
        if head == "_emulator":
            return await self._admin(parts[1:], request)
        if head == "api":
            if len(parts) == 1:
                return _json({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self.host}:{self.port}"}]})
            if parts[1] != "v1":
                raise not_found_path()
            if len(parts) == 2:
                return _json(self._resource_list("", "v1"))
            return await self._resource(request, "", "v1", parts[2:])
        if head == "apis":
            if len(parts) == 1:
                return _json({"kind": "APIGroupList", "apiVersion": "v1", "groups": [self._group(g) for g in sorted(self.registry.groups()) if g]})
            group = parts[1]
            if group not in self.registry.groups() or not group:
                raise not_found_path()
            if len(parts) == 2:
                return _json(self._group(group))
            if parts[2] not in self.registry.groups()[group]:
                raise not_found_path()
            if len(parts) == 3:
                return _json(self._resource_list(group, parts[2]))
            return await self._resource(request, group, parts[2], parts[3:])
        raise not_found_path()

    def _route(self, group: str, version: str, rest: list[str]) -> Route:
        watch_path = bool(rest) and rest[0] == "watch"
        if watch_path:
            rest = rest[1:]
        ns: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces" and not (len(rest) == 3 and rest[2] in _NS_SUBRESOURCES and not group):
            ns, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise not_found_path()
        res = self.registry.get(group, version, rest[0])
        if res is None or (ns is not None and not res.namespaced):
            raise not_found_path()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else ""
        if sub and not ((sub == "status" and res.status) or (sub == "scale" and res.scale)):
            raise not_found_path()
        return Route(res, ns, name, sub, watch_path)

    # --- discovery ------------------------------------------------------------------------

    def _group(self, group: str) -> JSON:
        versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in self.registry.groups()[group]]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": versions, "preferredVersion": versions[0]}

    def _resource_list(self, group: str, version: str) -> JSON:
        resources: list[JSON] = []
        for res in sorted(self.registry.in_version(group, version), key=lambda r: r.plural):
            entry: JSON = {"name": res.plural, "singularName": res.singular, "namespaced": res.namespaced,
                           "kind": res.kind, "verbs": list(res.verbs)}
            if res.short_names:
                entry["shortNames"] = list(res.short_names)
            if res.categories:
                entry["categories"] = list(res.categories)
            resources.append(entry)
            if res.status:
                resources.append({"name": f"{res.plural}/status", "singularName": "", "namespaced": res.namespaced,
                                  "kind": res.kind, "verbs": ["get", "patch", "update"]})
            if res.scale:
                resources.append({"name": f"{res.plural}/scale", "singularName": "", "namespaced": res.namespaced,
                                  "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]})
        gv = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}

    def _openapi(self, parts: list[str], request: web.Request) -> web.Response:
        if parts == ["v3"]:
            index = {}
            for group, versions in self.registry.groups().items():
                for version in versions:
                    path = f"apis/{group}/{version}" if group else "api/v1"
                    doc = openapi.group_version_doc(self.registry.in_version(group, version))
                    index[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={openapi.doc_hash(doc)}"}
            return _json({"paths": index})
        if len(parts) >= 3 and parts[0] == "v3":
            rest = parts[1:]
            if rest[0] == "api" and rest[1:] == ["v1"]:
                group, version = "", "v1"
            elif rest[0] == "apis" and len(rest) == 3:
                group, version = rest[1], rest[2]
            else:
                raise not_found_path()
            resources = self.registry.in_version(group, version)
            if not resources:
                raise not_found_path()
            return _json(openapi.group_version_doc(resources))
        raise not_found_path()

    # --- admin ----------------------------------------------------------------------------

    async def _admin(self, parts: list[str], request: web.Request) -> web.Response:
        if not parts or parts[0] != "faults":
            raise not_found_path()
        if parts[1:] == ["drop-watches"] and request.method == "POST":
            body = await request.json() if request.can_read_body else {}
            return _json({"dropped": self.faults.drop_watches(body.get("path", ".*"))})
        if len(parts) == 1:
            if request.method == "GET":
                return _json({"faults": [f.to_json() for f in self.faults.current()], "openWatches": self.faults.open_watches()})
            if request.method == "POST":
                try:
                    fault = self.faults.add_json(await request.json())
                except (ValueError, TypeError) as exc:
                    raise bad_request(str(exc)) from None
                return _json(fault.to_json(), 201)
            if request.method == "DELETE":
                self.faults.clear()
                return _json({"faults": []})
        if len(parts) == 2 and request.method == "DELETE" and parts[1].isdigit():
            self.faults.remove(int(parts[1]))
            return _json({"faults": [f.to_json() for f in self.faults.current()]})
        raise not_found_path()

    # --- resources ------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        ctype = request.content_type
        if "protobuf" in ctype:
            raise ApiError(415, "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml", "UnsupportedMediaType")
        try:
            return yaml.safe_load(raw) if "yaml" in ctype else json.loads(raw or b"null")
        except (ValueError, yaml.YAMLError) as exc:
            raise bad_request(f"the object provided is unrecognized: {exc}") from None

    def _opts(self, request: web.Request) -> WriteOptions:
        dry = request.query.getall("dryRun", [])
        if any(d != "All" for d in dry):
            raise bad_request(f"Invalid dry run value: {dry}")
        fv = request.query.get("fieldValidation", "Warn")
        if fv not in ("Strict", "Warn", "Ignore"):
            raise bad_request(f"fieldValidation parameter unsupported: {fv}")
        return WriteOptions(dry_run=bool(dry), field_validation=fv)

    def _reply(self, body: JSON, status: int = 200) -> web.Response:
        headers = {}
        warnings = self.objects.warnings
        if warnings:
            headers["Warning"] = ", ".join(f'299 - {json.dumps(w)}' for w in warnings)
        return _json(body, status, headers)

    async def _resource(self, request: web.Request, group: str, version: str, rest: list[str]) -> web.StreamResponse:
        route = self._route(group, version, rest)
        res, ns, name, sub = route.res, route.ns or "", route.name, route.sub
        method = request.method
        self.objects.warnings = []
        q = request.query
        watch = route.watch_path or q.get("watch") in ("true", "1")
        if method == "GET" and watch:
            fields = q.get("fieldSelector")
            if name:
                fields = ",".join(f for f in (fields, f"metadata.name={name}") if f)
            return await self.watches.stream(request, res, route.ns, q.get("labelSelector"), fields)
        if route.watch_path:
            raise ApiError(405, f"{method} is not supported for watch paths", "MethodNotAllowed")
        if name is None:
            if method == "GET":
                return self._list(request, res, route.ns)
            if method == "POST":
                if res.namespaced and route.ns is None:
                    raise ApiError(405, "the server does not allow this method on the requested resource", "MethodNotAllowed")
                body = await self._body(request)
                if not isinstance(body, dict):
                    raise bad_request("the body of the request must be an object")
                self._check_kind(res, body)
                return self._reply(self.objects.create(res, ns, body, self._opts(request)), 201)
            if method == "DELETE":
                return await self._delete_collection(request, res, route.ns)
            raise ApiError(405, "the server does not allow this method on the requested resource", "MethodNotAllowed")
        if method == "GET":
            if sub == "scale":
                return self._reply(self.objects.get_scale(res, ns, name))
            obj = self.objects.get(res, ns, name)
            if self._wants_table(request):
                return _json(tables.table(res, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]}, q.get("includeObject", "Metadata"), self.objects.clock()))
            return self._reply(obj)
        if method == "PUT":
            body = await self._body(request)
            if not isinstance(body, dict):
                raise bad_request("the body of the request must be an object")
            if sub == "scale":
                return self._reply(self.objects.update_scale(res, ns, name, body, self._opts(request)))
            self._check_kind(res, body)
            return self._reply(self.objects.update(res, ns, name, body, sub, self._opts(request)))
        if method == "PATCH":
            body = await self._body(request)
            if sub == "scale":
                return self._reply(self.objects.patch_scale(res, ns, name, request.content_type, body, self._opts(request)))
            return self._reply(self.objects.patch(res, ns, name, request.content_type, body, sub, self._opts(request)))
        if method == "DELETE":
            if sub:
                raise ApiError(405, "the server does not allow this method on the requested resource", "MethodNotAllowed")
            options = (await self._body(request) if request.can_read_body else None) or {}
            for key in ("propagationPolicy", "orphanDependents"):
                if key in q:
                    options[key] = q[key] if key != "orphanDependents" else q[key] == "true"
            code, body = self.objects.delete(res, ns, name, options, self._opts(request))
            return self._reply(body, code)
        raise ApiError(405, "the server does not allow this method on the requested resource", "MethodNotAllowed")

    @staticmethod
    def _check_kind(res: Resource, body: JSON) -> None:
        kind, api_version = body.get("kind"), body.get("apiVersion")
        if kind and kind != res.kind:
            raise bad_request(f"the API version in the data ({api_version}) does not match the expected API version ({res.api_version})" if api_version != res.api_version else f"the kind in the data ({kind}) does not match the expected kind ({res.kind})")
        if api_version and api_version != res.api_version:
            raise bad_request(f"the API version in the data ({api_version}) does not match the expected API version ({res.api_version})")

    @staticmethod
    def _wants_table(request: web.Request) -> bool:
        return "as=Table" in request.headers.get("Accept", "")

    def _list(self, request: web.Request, res: Resource, ns: str | None) -> web.Response:
        q = request.query
        items, rv = self.objects.select(res, ns, q.get("labelSelector"), q.get("fieldSelector"))
        meta: JSON = {"resourceVersion": str(rv)}
        token = q.get("continue")
        if token:
            try:
                start = json.loads(base64.urlsafe_b64decode(token.encode()))["start"]
            except (ValueError, KeyError, TypeError):
                raise bad_request("continue key is not valid") from None
            items = [i for i in items if [i["metadata"].get("namespace", ""), i["metadata"]["name"]] > start]
        limit = int(q.get("limit", "0") or 0)
        if limit > 0 and len(items) > limit:
            last = items[limit - 1]["metadata"]
            meta["continue"] = base64.urlsafe_b64encode(json.dumps({"rv": rv, "start": [last.get("namespace", ""), last["name"]]}).encode()).decode()
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        if self._wants_table(request):
            return _json(tables.table(res, items, meta, q.get("includeObject", "Metadata"), self.objects.clock()))
        if not res.custom:
            items = [{k: v for k, v in i.items() if k not in ("apiVersion", "kind")} for i in items]
        return _json({"kind": res.list_kind, "apiVersion": res.api_version, "metadata": meta, "items": items})

    async def _delete_collection(self, request: web.Request, res: Resource, ns: str | None) -> web.Response:
        q = request.query
        opts = self._opts(request)
        options = (await self._body(request) if request.can_read_body else None) or {}
        items, _ = self.objects.select(res, ns, q.get("labelSelector"), q.get("fieldSelector"))
        deleted = []
        for item in items:
            meta = item["metadata"]
            try:
                deleted.append(self.objects.delete(res, meta.get("namespace", ""), meta["name"], options, opts)[1])
            except ApiError as err:
                if err.code != 404:
                    raise
        return _json({"kind": res.list_kind, "apiVersion": res.api_version, "metadata": {"resourceVersion": str(self.store.rv)}, "items": deleted})
