"""`ApiServer`: start the emulator in-process, in a background thread, or from the CLI.

    async with ApiServer(port=0, crds=[Path("crds/inferenceservice.yaml")]) as api:
        api.write_kubeconfig(tmp / "kubeconfig")
        ...  # kopf, kubectl, the official client against api.url

    with ApiServer.in_thread(crds=[...]) as api:   # for synchronous tests and fixtures
        ...

CRDs given at start are created as if applied (multi-document YAML files are fine) before the
server accepts connections. `faults` injects failures (from any thread); `store` and `objects`
are the server's state, to be touched only on the server's own event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from aiohttp import web

from sloscale.apiserver.faults import Faults
from sloscale.apiserver.kubeconfig import write_kubeconfig
from sloscale.apiserver.objects import Objects, WriteOptions
from sloscale.apiserver.resources import Registry
from sloscale.apiserver.server import Server
from sloscale.apiserver.store import Store


def load_manifests(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if isinstance(doc, dict)]


class ApiServer:
    """The Kubernetes API emulator on loopback HTTP."""

    def __init__(
        self,
        port: int = 0,
        crds: Sequence[Path | str] = (),
        *,
        host: str = "127.0.0.1",
        history: int = 1000,
        bookmark_interval: float = 60.0,
        watch_timeout: float = 1800.0,
        fault_seed: int = 0,
    ) -> None:
        self.host = host
        self.port = port
        self.crds = [Path(c) for c in crds]
        self.store = Store(history=history)
        self.objects = Objects(Registry(), self.store)
        self.faults = Faults(seed=fault_seed)
        self.server = Server(self.objects, self.faults, bookmark_interval, watch_timeout, host)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def write_kubeconfig(self, path: Path | str, namespace: str = "default") -> Path:
        return write_kubeconfig(path, self.url, namespace)

    def apply_crd(self, manifest: dict[str, Any]) -> None:
        res = self.objects.registry.get("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        assert res is not None
        self.objects.create(res, "", manifest, WriteOptions())

    async def start(self) -> None:
        self.objects.bootstrap()
        for path in self.crds:
            for doc in load_manifests(path):
                if doc.get("kind") == "CustomResourceDefinition":
                    self.apply_crd(doc)
        self.server.watches.loop = asyncio.get_running_loop()
        self._runner = web.AppRunner(self.server.app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self.server.port = self.port

    async def stop(self) -> None:
        self.server.watches.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ApiServer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    @classmethod
    @contextmanager
    def in_thread(cls, *args: Any, **kwargs: Any) -> Iterator[ApiServer]:
        """Run the server on its own event loop in a daemon thread for the `with` block."""
        api = cls(*args, **kwargs)
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(api.start())
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(api.stop())
            loop.close()

        thread = threading.Thread(target=run, name="sloscale-apiserver", daemon=True)
        thread.start()
        ready.wait(30)
        if failure:
            thread.join(5)
            raise failure[0]
        try:
            yield api
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(30)
