"""A small asynchronous Kubernetes API client for the sandbox's controllers, over aiohttp.

The kubelet stand-in talks to the API emulator exactly as a kubelet or a controller talks to a
real API server: HTTP requests built from a kubeconfig, JSON bodies, explicit patch types, and
watches read as newline-delimited JSON events. The official `kubernetes` client is synchronous;
the stand-in runs dozens of pods, probes and watches on one event loop, so it uses this instead.
Only what the stand-in needs: the kubeconfig's current cluster (server URL, bearer token if any),
get/list/create/patch/delete, and a watch that reconnects.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import yaml

JSON = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    """A non-2xx answer; `status` is the HTTP status, `body` the server's Status object."""

    def __init__(self, status: int, body: Any) -> None:
        message = body.get("message") if isinstance(body, dict) else str(body)
        super().__init__(f"{status}: {message}")
        self.status = status
        self.body = body


def server_of(kubeconfig: Path) -> tuple[str, str | None]:
    """The current context's API server URL and bearer token (None when there is none)."""
    doc = yaml.safe_load(kubeconfig.read_text())
    context_name = doc.get("current-context")
    context = next(c["context"] for c in doc.get("contexts", []) if c["name"] == context_name)
    cluster = next(c["cluster"] for c in doc.get("clusters", []) if c["name"] == context["cluster"])
    user = next((u.get("user") or {} for u in doc.get("users", []) if u["name"] == context.get("user")), {})
    return str(cluster["server"]).rstrip("/"), user.get("token")


class KubeClient:
    """JSON over HTTP to one API server. Use inside `async with` (or call `close()`)."""

    def __init__(self, server: str, token: str | None = None) -> None:
        self.server = server
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._session = aiohttp.ClientSession(
            headers=headers, timeout=aiohttp.ClientTimeout(total=30, sock_connect=5)
        )

    @classmethod
    def from_kubeconfig(cls, path: Path) -> KubeClient:
        return cls(*server_of(path))

    async def close(self) -> None:
        await self._session.close()

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> JSON:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if body is not None else {}
        async with self._session.request(method, self.server + path, data=data, headers=headers) as resp:
            text = await resp.text()
            try:
                answer = json.loads(text) if text else {}
            except json.JSONDecodeError:
                answer = text
            if not 200 <= resp.status < 300:
                raise ApiError(resp.status, answer)
            return answer if isinstance(answer, dict) else {}

    async def list(self, path: str) -> list[JSON]:
        items: list[JSON] = (await self.request("GET", path)).get("items") or []
        return items

    async def create(self, path: str, body: JSON) -> JSON:
        return await self.request("POST", path, body)

    async def merge_patch(self, path: str, patch: JSON) -> JSON:
        return await self.request("PATCH", path, patch, MERGE_PATCH)

    async def delete(self, path: str) -> None:
        try:
            await self.request("DELETE", path)
        except ApiError as err:
            if err.status != 404:
                raise

    async def watch(self, path: str) -> AsyncIterator[JSON]:
        """Watch events of a collection forever; reconnects (from a fresh listing) when the stream
        ends or fails. Suits level-triggered controllers that re-read state on every event."""
        while True:
            try:
                async with self._session.get(
                    self.server + path,
                    params={"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": "300"},
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
                ) as resp:
                    if resp.status != 200:
                        raise ApiError(resp.status, await resp.text())
                    async for line in resp.content:
                        if line.strip():
                            yield json.loads(line)
            except (aiohttp.ClientError, ApiError, json.JSONDecodeError):
                await asyncio.sleep(0.5)  # the server is restarting or going away
