"""Object storage with one resourceVersion counter and a bounded event log per storage.

Like etcd behind the real API server, every write gets the next value of a single counter, which
becomes the object's `metadata.resourceVersion` and the position of the change in its storage's
event log. A watch that starts at resourceVersion N replays the logged changes after N and then
follows new ones; replay and subscription happen in one step on the event loop, so no change
between a list and the watch that follows it can be lost or delivered twice. The log keeps the
most recent `history` changes of each storage; a watch from before the oldest one kept gets
410 Gone ("too old resource version"), as a compacted etcd answers.

Objects are stored as plain JSON dicts and never mutated once stored, so events can share them.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sloscale.apiserver.errors import gone

JSON = dict[str, Any]
Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects


@dataclass(frozen=True)
class Change:
    """One logged change: `prev` is the object before it (None for ADDED)."""

    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    obj: JSON
    prev: JSON | None


@dataclass(eq=False)
class Subscription:
    """A live watch's inbox: changes are pushed as they are committed."""

    storage: str
    queue: asyncio.Queue[Change | None] = field(default_factory=asyncio.Queue)
    aborted: bool = False

    def close(self, abort: bool = False) -> None:
        """Wake the reader with an end-of-stream marker; `abort` cuts the connection instead."""
        self.aborted = self.aborted or abort
        self.queue.put_nowait(None)


def key_of(obj: JSON) -> Key:
    meta = obj["metadata"]
    return (meta.get("namespace", ""), meta["name"])


@dataclass
class Store:
    history: int = 1000
    rv: int = 1
    _objects: dict[str, dict[Key, JSON]] = field(default_factory=dict)
    _logs: dict[str, deque[Change]] = field(default_factory=dict)
    _floor: dict[str, int] = field(default_factory=dict)
    _subs: dict[str, set[Subscription]] = field(default_factory=dict)
    listeners: list[Callable[[str, Change], None]] = field(default_factory=list)

    def get(self, storage: str, ns: str, name: str) -> JSON | None:
        return self._objects.get(storage, {}).get((ns, name))

    def select(self, storage: str, ns: str | None = None) -> list[JSON]:
        objs = self._objects.get(storage, {})
        keys = sorted(k for k in objs if ns is None or k[0] == ns)
        return [objs[k] for k in keys]

    def all_objects(self) -> Iterable[tuple[str, JSON]]:
        for storage, objs in list(self._objects.items()):
            for obj in list(objs.values()):
                yield storage, obj

    def put(self, storage: str, obj: JSON) -> JSON:
        """Store a new or changed object; it gets the next resourceVersion. Returns the copy kept."""
        self.rv += 1
        stored = copy.deepcopy(obj)
        stored["metadata"]["resourceVersion"] = str(self.rv)
        objs = self._objects.setdefault(storage, {})
        prev = objs.get(key_of(stored))
        objs[key_of(stored)] = stored
        self._commit(storage, Change(self.rv, "MODIFIED" if prev else "ADDED", stored, prev))
        return stored

    def remove(self, storage: str, obj: JSON, last: JSON | None = None) -> JSON:
        """Delete an object; the DELETED event carries the deletion's resourceVersion.

        `last` is the object's final state when the deletion is the effect of an update (the
        last finalizer removed); otherwise the stored object is reported.
        """
        self.rv += 1
        objs = self._objects.get(storage, {})
        prev = objs.pop(key_of(obj))
        final = copy.deepcopy(last if last is not None else prev)
        final["metadata"]["resourceVersion"] = str(self.rv)
        self._commit(storage, Change(self.rv, "DELETED", final, prev))
        return final

    def drop_storage(self, storage: str) -> None:
        """Forget a storage entirely (its CRD is gone); open watches end."""
        self._objects.pop(storage, None)
        self._logs.pop(storage, None)
        self._floor.pop(storage, None)
        for sub in self._subs.pop(storage, set()):
            sub.close()

    def _commit(self, storage: str, change: Change) -> None:
        log = self._logs.setdefault(storage, deque())
        log.append(change)
        while len(log) > self.history:
            self._floor[storage] = log.popleft().rv
        for sub in list(self._subs.get(storage, ())):
            sub.queue.put_nowait(change)
        for listener in list(self.listeners):
            listener(storage, change)

    def subscribe(self, storage: str, since: int) -> tuple[list[Change], Subscription]:
        """Changes after `since`, then a subscription to the ones that follow.

        Raises 410 Gone when changes after `since` have already left the log.
        """
        floor = self._floor.get(storage, 0)
        if since < floor:
            raise gone(f"too old resource version: {since} ({floor + 1})")
        replay = [c for c in self._logs.get(storage, ()) if c.rv > since]
        sub = Subscription(storage)
        self._subs.setdefault(storage, set()).add(sub)
        return replay, sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.get(sub.storage, set()).discard(sub)

    def subscriptions(self) -> list[Subscription]:
        return [s for subs in self._subs.values() for s in subs]
