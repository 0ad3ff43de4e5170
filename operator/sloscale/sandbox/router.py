"""A Service's front door in the sandbox: spreads requests over its ready pods, least outstanding.

On a cluster a client reaches vLLM through a Service (kube-proxy) or an inference gateway; here a
`Router` per Service listens on a loopback port and proxies every request to one of the
Service's ready endpoints, which the kubelet stand-in hands it as they change. The backend is the
one with the fewest requests in flight (ties go round-robin) — what an inference-aware gateway
does, and what keeps the per-pod queues that the operator reads comparable.

Responses are streamed through as they arrive, so server-sent events keep their timing. A backend
that refuses the connection (its pod just died) is marked and the request tried once on another;
with no ready backend the router answers 503 in vLLM's error shape, as a Service without
endpoints would fail. Requests already proxied to a pod that then leaves the endpoints (a drain)
run to completion.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import aiohttp
from aiohttp import web

# Hop-by-hop headers (RFC 9110 §7.6.1) and those aiohttp recomputes.
_SKIP_HEADERS = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "content-length", "host", "content-encoding",
}  # fmt: skip


@dataclass
class Backend:
    name: str  # the pod's name
    address: str  # ip:port
    outstanding: int = 0  # requests in flight
    served: int = 0  # requests sent to it so far


class Router:
    """An HTTP proxy for one Service. `start()`, then `set_backends()` whenever endpoints change."""

    def __init__(self, name: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.name = name
        self.host = host
        self.port = port
        self._backends: dict[str, Backend] = {}
        self._turn = itertools.count()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def backends(self) -> list[Backend]:
        return list(self._backends.values())

    def set_backends(self, endpoints: dict[str, str]) -> None:
        """The ready endpoints, pod name → ip:port. Counters of pods that stay are kept."""
        kept = {n: b for n, b in self._backends.items() if n in endpoints and b.address == endpoints[n]}
        self._backends = {n: kept.get(n) or Backend(n, addr) for n, addr in endpoints.items()}

    def drop(self, name: str) -> None:
        """Stop sending new requests to a pod at once (it is being deleted); those in flight go on."""
        self._backends.pop(name, None)

    def pick(self, exclude: frozenset[str] = frozenset()) -> Backend | None:
        """The backend with the fewest requests in flight; among equals, the next in turn."""
        candidates = [b for b in self._backends.values() if b.name not in exclude]
        if not candidates:
            return None
        least = min(b.outstanding for b in candidates)
        tied = [b for b in candidates if b.outstanding == least]
        return tied[next(self._turn) % len(tied)]

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            connector=aiohttp.TCPConnector(limit=0),
            auto_decompress=False,
        )
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_route("*", "/{path:.*}", self._proxy)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _relay(self, request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
        """Copy the pod's answer to the client as it arrives. If the pod dies mid-answer the client's
        connection is cut too, so it sees a broken response rather than a short one."""
        response = web.StreamResponse(
            status=upstream.status,
            headers={k: v for k, v in upstream.headers.items() if k.lower() not in _SKIP_HEADERS},
        )
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        except aiohttp.ClientPayloadError:
            if request.transport is not None:
                request.transport.close()
        except ConnectionResetError:
            pass  # the client went away; releasing the upstream aborts the pod's request
        return response

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _SKIP_HEADERS}
        tried: set[str] = set()
        for _ in range(2):
            backend = self.pick(frozenset(tried))
            if backend is None:
                break
            tried.add(backend.name)
            backend.outstanding += 1
            backend.served += 1
            try:
                upstream = await self._session.request(
                    request.method, f"http://{backend.address}{request.path_qs}", data=body, headers=headers
                )
            except aiohttp.ClientConnectionError:
                backend.outstanding -= 1
                backend.served -= 1
                continue  # the pod went away between the endpoint update and now: try another
            try:
                return await self._relay(request, upstream)
            finally:
                upstream.release()
                backend.outstanding -= 1
        return web.json_response(
            {
                "object": "error",
                "message": f"service {self.name} has no ready endpoints",
                "type": "ServiceUnavailableError",
                "param": None,
                "code": 503,
            },
            status=503,
        )
