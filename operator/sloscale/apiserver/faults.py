"""Fault injection: make the API server slow, failing or forgetful on purpose.

A `Fault` matches requests by HTTP method and a regular expression searched in the path, and
then adds latency, answers with an error status (409 Conflict, 429, 500, 503 … as Status bodies
the real server would send), or, for watches, cuts the stream after a delay, as a restarted API
server or a load balancer would. It fires for `times` requests (or until cleared), each with
`probability` (from a seeded generator, so a test is repeatable). `drop_watches()` cuts the open
watches at once.

Tests and the sandbox drive it through the Python API (`api.faults.add(...)`) or, without
touching the process, through the admin endpoint `/_emulator/faults` (GET lists, POST adds a
fault given as JSON, DELETE clears; POST `/_emulator/faults/drop-watches` cuts open watches).
The admin path itself is never subject to faults.
"""

from __future__ import annotations

import itertools
import random
import re
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from sloscale.apiserver.errors import ApiError

JSON = dict[str, Any]
_MESSAGES = {
    409: ("Conflict", "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again"),
    429: ("TooManyRequests", "the server has received too many requests and has asked us to try again later"),
    500: ("InternalError", "Internal error occurred: injected fault"),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
    504: ("Timeout", "the server was unable to return a response in the time allotted"),
}


@dataclass
class Fault:
    method: str = "*"
    path: str = ".*"
    status: int | None = None
    latency: float = 0.0
    times: int | None = None
    probability: float = 1.0
    drop_watch_after: float | None = None
    id: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.method in ("*", method.upper())) and re.search(self.path, path) is not None

    def error(self) -> ApiError:
        assert self.status is not None
        reason, message = _MESSAGES.get(self.status, ("", f"injected fault: HTTP {self.status}"))
        headers = {"Retry-After": "1"} if self.status in (429, 503) else {}
        return ApiError(self.status, message, reason, {}, headers)

    def to_json(self) -> JSON:
        return asdict(self)


@dataclass
class _Watch:
    path: str
    cut: Callable[[], None]


@dataclass
class Faults:
    seed: int = 0
    _faults: list[Fault] = field(default_factory=list)
    _watches: dict[int, _Watch] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _rng: random.Random = field(init=False)
    hits: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def add(
        self,
        method: str = "*",
        path: str = ".*",
        *,
        status: int | None = None,
        latency: float = 0.0,
        times: int | None = None,
        probability: float = 1.0,
        drop_watch_after: float | None = None,
    ) -> Fault:
        """Add a fault; returns it (its `id` removes it)."""
        re.compile(path)
        if status is not None and not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error code, not {status}")
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        with self._lock:
            fault = Fault(method.upper(), path, status, latency, times, probability, drop_watch_after, next(self._ids))
            self._faults.append(fault)
            return fault

    def add_json(self, spec: JSON) -> Fault:
        allowed = {"method", "path", "status", "latency", "times", "probability", "drop_watch_after"}
        unknown = set(spec) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        return self.add(**spec)

    def remove(self, fault_id: int) -> None:
        with self._lock:
            self._faults = [f for f in self._faults if f.id != fault_id]

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def current(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def pick(self, method: str, path: str, watch: bool) -> Fault | None:
        """The fault that fires for this request, if any (its count is spent)."""
        with self._lock:
            for fault in self._faults:
                if not fault.matches(method, path):
                    continue
                if fault.drop_watch_after is not None and not watch:
                    continue
                if fault.probability < 1.0 and self._rng.random() >= fault.probability:
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                self.hits += 1
                return fault
        return None

    # --- open watches ---------------------------------------------------------------------

    def track_watch(self, path: str, cut: Callable[[], None]) -> int:
        with self._lock:
            key = next(self._ids)
            self._watches[key] = _Watch(path, cut)
            return key

    def untrack_watch(self, key: int) -> None:
        with self._lock:
            self._watches.pop(key, None)

    def open_watches(self) -> int:
        with self._lock:
            return len(self._watches)

    def drop_watches(self, path: str = ".*") -> int:
        """Cut every open watch whose path matches; returns how many were cut."""
        with self._lock:
            hit = [w for w in self._watches.values() if re.search(path, w.path)]
        for watch in hit:
            watch.cut()
        return len(hit)
