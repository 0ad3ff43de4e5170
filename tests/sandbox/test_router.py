"""The Service router in front of real emulated pods: least outstanding, failover, no endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from sloscale.sandbox.router import Router

Start = Callable[..., Any]  # the `emulator` fixture


@pytest.fixture
async def router() -> AsyncIterator[Router]:
    r = Router("default/chat")
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


def address(pod: Any) -> str:
    return pod.url.removeprefix("http://")


async def complete(session: aiohttp.ClientSession, url: str, max_tokens: int, stream: bool = False) -> tuple[int, str]:
    body = {"prompt": "hello there", "max_tokens": max_tokens, "stream": stream}
    async with session.post(url + "/v1/completions", json=body) as resp:
        return resp.status, await resp.text()


async def test_requests_go_to_the_pod_with_fewest_in_flight(emulator: Start, router: Router) -> None:
    a, b = (emulator("--model", "m", "--speedup", "1", "--shutdown-grace", "0") for _ in range(2))
    router.set_backends({"a": address(a), "b": address(b)})
    async with aiohttp.ClientSession() as s:
        long = asyncio.create_task(complete(s, router.url, 400))  # ~3 s of decoding on one pod
        while sum(x.outstanding for x in router.backends) == 0:
            await asyncio.sleep(0.01)
        busy = next(x for x in router.backends if x.outstanding)
        for _ in range(4):
            status, _ = await complete(s, router.url, 2)
            assert status == 200
        idle = next(x for x in router.backends if x is not busy)
        assert idle.served == 4 and busy.served == 1
        long.cancel()


async def test_equal_load_alternates_between_pods(emulator: Start, router: Router) -> None:
    a, b = emulator("--model", "m", "--speedup", "20"), emulator("--model", "m", "--speedup", "20")
    router.set_backends({"a": address(a), "b": address(b)})
    async with aiohttp.ClientSession() as s:
        for _ in range(6):
            assert (await complete(s, router.url, 2))[0] == 200
    assert sorted(x.served for x in router.backends) == [3, 3]


async def test_streams_pass_through_while_the_pod_is_still_generating(emulator: Start, router: Router) -> None:
    pod = emulator("--model", "m", "--speedup", "1")
    router.set_backends({"a": address(pod)})
    events: list[str] = []
    async with aiohttp.ClientSession() as s:
        body = {"prompt": "hello", "max_tokens": 200, "stream": True}  # ~1.3 s of decoding
        async with s.post(router.url + "/v1/completions", json=body) as resp:
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            async for line in resp.content:
                if line.startswith(b"data: "):
                    events.append(line.decode())
                if len(events) == 1:  # the first event is here: the pod must still be running it
                    async with s.get(f"http://{address(pod)}/metrics") as metrics:
                        assert 'vllm:num_requests_running{engine="0",model_name="m"} 1.0' in await metrics.text()
        async with s.get(router.url + "/v1/models") as resp:
            models = await resp.json()
    assert events[-1].strip() == "data: [DONE]"
    assert models["data"][0]["id"] == "m"


async def test_a_refused_connection_is_retried_on_another_pod(emulator: Start, router: Router) -> None:
    dead, alive = emulator("--model", "m"), emulator("--model", "m", "--speedup", "20")
    dead.stop()
    router.set_backends({"dead": address(dead), "alive": address(alive)})
    async with aiohttp.ClientSession() as s:
        for _ in range(3):
            assert (await complete(s, router.url, 2))[0] == 200


async def test_without_ready_endpoints_the_router_answers_503(router: Router) -> None:
    async with aiohttp.ClientSession() as s:
        status, text = await complete(s, router.url, 2)
    assert status == 503 and "no ready endpoints" in text


def test_endpoint_updates_keep_the_counters_of_pods_that_stay() -> None:
    r = Router("x")
    r.set_backends({"a": "127.0.0.1:1", "b": "127.0.0.1:2"})
    a = r.backends[0]
    a.outstanding = 3
    r.set_backends({"a": "127.0.0.1:1", "c": "127.0.0.1:3"})
    assert [x.name for x in r.backends] == ["a", "c"]
    assert r.backends[0] is a and a.outstanding == 3
    assert r.pick() is r.backends[1]  # c has nothing in flight
