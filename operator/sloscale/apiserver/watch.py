"""Watch streams: newline-delimited JSON events over chunked HTTP.

A watch without
resourceVersion (or with "0", or with `sendInitialEvents=true`) starts with synthetic ADDED
events for what exists; with a resourceVersion it replays what changed after it, or sends one
ERROR event with a 410 Expired Status when that is older than the log keeps. Filtered watches
turn changes that enter or leave the selection into ADDED and DELETED, as the watch cache does.
Bookmarks (`allowWatchBookmarks=true`) are sent every `bookmark_interval` seconds and just before
a `timeoutSeconds` deadline closes the stream.

Each stream reads a `Subscription` of the store; a stream cut by fault injection is aborted
(the client sees a broken connection, not a clean end), and `close()` ends every stream when the
server stops.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sloscale.apiserver import tables
from sloscale.apiserver.errors import ApiError, bad_request
from sloscale.apiserver.faults import Faults
from sloscale.apiserver.objects import Objects
from sloscale.apiserver.resources import Resource
from sloscale.apiserver.store import Change, Store, Subscription

JSON = dict[str, Any]
DROP_AFTER = web.RequestKey("drop_after", float)


@dataclass
class Watches:
    objects: Objects
    faults: Faults
    bookmark_interval: float = 60.0
    timeout: float = 1800.0
    loop: asyncio.AbstractEventLoop | None = None
    _subs: set[Subscription] = field(default_factory=set)

    @property
    def store(self) -> Store:
        return self.objects.store

    def close(self) -> None:
        """End every open stream (the server is stopping)."""
        for sub in list(self._subs):
            sub.close()

    async def stream(self, request: web.Request, res: Resource, ns: str | None, labels: str | None, fields: str | None) -> web.StreamResponse:
        q = request.query
        match = self.objects.matcher(res, ns, labels, fields)
        rv_param = q.get("resourceVersion", "")
        send_initial = q.get("sendInitialEvents") == "true"
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else self.timeout
        table = "as=Table" in request.headers.get("Accept", "")
        initial: list[JSON] = []
        gone: ApiError | None = None
        sub: Subscription | None = None
        replay: list[Change] = []
        if rv_param in ("", "0") or send_initial:
            initial = [o for o in self.store.select(res.storage, ns if res.namespaced and ns else None) if match(o)]
            replay, sub = self.store.subscribe(res.storage, self.store.rv)
        else:
            try:
                since = int(rv_param)
            except ValueError:
                raise bad_request(f"invalid resource version: {rv_param}") from None
            try:
                replay, sub = self.store.subscribe(res.storage, since)
            except ApiError as err:
                gone = err
        start_rv = self.store.rv
        response = web.StreamResponse(headers={"Content-Type": "application/json", "Cache-Control": "no-cache, private"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        if gone is not None or sub is None:
            status = gone.status() if gone else {}
            await response.write(json.dumps({"type": "ERROR", "object": status}).encode() + b"\n")
            await response.write_eof()
            return response
        self._subs.add(sub)
        key = self.faults.track_watch(request.path, lambda: self._cut(sub))
        drop_after = request.get(DROP_AFTER)
        deadline = time.monotonic() + timeout
        cut_at = time.monotonic() + drop_after if drop_after is not None else None
        first = True

        async def send(kind: str, obj: JSON) -> None:
            nonlocal first
            view = self.objects.present(res, obj)
            if table:
                view = tables.table(res, [view], {"resourceVersion": view["metadata"]["resourceVersion"]}, q.get("includeObject", "Metadata"), self.objects.clock(), first)
                first = False
            await response.write(json.dumps({"type": kind, "object": view}).encode() + b"\n")

        async def bookmark(annotate: bool = False) -> None:
            meta: JSON = {"resourceVersion": str(self.store.rv if not annotate else start_rv)}
            if annotate:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            await response.write(json.dumps({"type": "BOOKMARK", "object": {"kind": res.kind, "apiVersion": res.api_version, "metadata": meta}}).encode() + b"\n")

        try:
            for obj in initial:
                await send("ADDED", obj)
            if send_initial and bookmarks:
                await bookmark(annotate=True)
            for change in replay:
                await self._emit(change, match, send)
            next_bookmark = time.monotonic() + self.bookmark_interval
            while True:
                now = time.monotonic()
                if cut_at is not None and now >= cut_at:
                    sub.aborted = True
                    break
                if now >= deadline:
                    # Deliver what is already queued first: a bookmark promises that every
                    # change up to its resourceVersion has been sent.
                    while not sub.queue.empty() and (pending := sub.queue.get_nowait()) is not None:
                        await self._emit(pending, match, send)
                    if bookmarks:
                        await bookmark()
                    break
                if bookmarks and now >= next_bookmark and sub.queue.empty():
                    await bookmark()
                    next_bookmark = now + self.bookmark_interval
                if request.transport is None or request.transport.is_closing():
                    return response
                wake = min(deadline, next_bookmark if bookmarks else deadline, cut_at or deadline, now + 1.0)
                try:
                    item: Change | None = await asyncio.wait_for(sub.queue.get(), max(0.0, wake - now))
                except TimeoutError:
                    continue
                if item is None:
                    break
                await self._emit(item, match, send)
            if sub.aborted:
                if request.transport is not None:
                    request.transport.abort()
                return response
            await response.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            self.store.unsubscribe(sub)
            self._subs.discard(sub)
            self.faults.untrack_watch(key)
        return response

    def _cut(self, sub: Subscription) -> None:
        """Cut a watch from any thread (the fault API may be driven from a test's thread)."""
        assert self.loop is not None
        self.loop.call_soon_threadsafe(sub.close, True)

    @staticmethod
    async def _emit(change: Change, match: Any, send: Any) -> None:
        now_in = change.type != "DELETED" and match(change.obj)
        was_in = change.prev is not None and match(change.prev)
        if change.type == "ADDED":
            if now_in:
                await send("ADDED", change.obj)
        elif change.type == "MODIFIED":
            if now_in and was_in:
                await send("MODIFIED", change.obj)
            elif now_in:
                await send("ADDED", change.obj)
            elif was_in:
                await send("DELETED", change.obj)
        elif match(change.obj) or was_in:
            await send("DELETED", change.obj)
