"""An emulated vLLM pod: vLLM's OpenAI server and metrics, with modelled GPU time instead of a GPU.

The sandbox runs a Deployment's pods as processes of this module, started with the pod template's
arguments unchanged (`--model`, `--served-model-name`, `--port`, `--max-num-seqs`, …; vLLM
arguments the emulator has no use for are accepted and ignored with a note). It serves what the
operator, Prometheus and clients touch on a real pod:

- `POST /v1/completions` and `POST /v1/chat/completions`, streaming (server-sent events) and not,
  in vLLM's response shapes, with `usage` (and `stream_options.include_usage` /
  `continuous_usage_stats`);
- `GET /v1/models`, `GET /health` (503 while the model "loads" and while draining), `GET /metrics`
  (vLLM's metric families, names, types, labels and buckets, from
  `sloscale.sandbox.vllm_metrics.VllmMetrics`).

Requests are not computed: `RealtimeEngine` schedules them through the step-level engine model
(`sloscale.engine`) and releases each token when its modelled step ends. A request generates
exactly `max_tokens` tokens (there is no end-of-sequence); prompt length is the number of
whitespace-separated words of the prompt (or the length of a token-id list).

Time: see `realtime_engine` — with `--speedup X` the pod is the modelled GPU made X times faster:
model time runs X times faster than the wall clock, and every latency the pod reports is the real
time it took (model seconds / X), so latencies and counter rates agree as on a real pod.
`--startup-delay` is given in model seconds (it lasts /X real seconds); `--shutdown-grace` is real
seconds, like Kubernetes' termination grace period.

On SIGTERM the pod stops admitting (503 on new requests and on /health), finishes the requests in
flight within the grace period (and within vLLM's `--shutdown-timeout` when the command line gives
one), and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sloscale.sandbox.realtime_engine import EngineSettings, RealtimeEngine, RequestHandle

DEFAULT_MAX_TOKENS = 16
OUTPUT_WORD = " token"


@dataclass(frozen=True)
class EmulatorConfig:
    """What a pod is started with: the vLLM arguments it honours plus the emulator's own."""

    model: str
    served_model_names: tuple[str, ...]
    host: str
    port: int
    engine: EngineSettings
    speedup: float
    startup_delay_s: float  # model seconds before /health answers 200
    shutdown_grace_s: float  # real seconds to finish in-flight requests after SIGTERM
    ignored_args: tuple[str, ...] = ()

    @property
    def served_model_name(self) -> str:
        return self.served_model_names[0]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sloscale.sandbox.vllm_emulator",
        description="Emulated vLLM OpenAI server (modelled GPU time). Accepts vLLM's arguments.",
        allow_abbrev=False,
    )
    p.add_argument("model_tag", nargs="?", help="the model, as in `vllm serve MODEL`")
    p.add_argument("--model", default=None)
    p.add_argument("--served-model-name", nargs="+", default=None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-num-seqs", type=int, default=None)
    p.add_argument("--max-num-batched-tokens", type=int, default=None)
    p.add_argument("--max-model-len", type=int, default=131072)
    p.add_argument("--block-size", type=int, default=16)
    p.add_argument("--num-gpu-blocks-override", type=int, default=None, help="KV capacity in blocks")
    p.add_argument("--gpu-profile", default="H100", help="engine timing profile: H100 or A100")
    p.add_argument("--speedup", type=float, default=1.0, help="model seconds per real second")
    p.add_argument("--startup-delay", type=float, default=0.0, help="model load time, model seconds")
    p.add_argument("--shutdown-grace", type=float, default=30.0, help="drain budget, real seconds")
    p.add_argument(
        "--shutdown-timeout", type=float, default=None,
        help="vLLM's drain on SIGTERM, seconds; caps --shutdown-grace when given",
    )
    return p


def _split_unknown(parser: argparse.ArgumentParser, argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separate the options this parser knows from other vLLM options (and their values).

    argparse's own `parse_known_args` would take the value of an unknown `--dtype bfloat16` for the
    positional model, so unknown options are removed first: an unknown `--x` takes the next word as
    its value unless that word is itself an option.
    """
    known_flags = {s for a in parser._actions for s in a.option_strings}
    kept: list[str] = []
    ignored: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        flag = word.split("=", 1)[0]
        if word.startswith("-") and flag not in known_flags:
            ignored.append(word)
            if "=" not in word and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                ignored.append(argv[i + 1])
                i += 1
        else:
            kept.append(word)
        i += 1
    return kept, ignored


def parse_args(argv: Sequence[str]) -> EmulatorConfig:
    """Read a pod's command line as vLLM would; raise SystemExit (status 2) on invalid values."""
    parser = _parser()
    kept, ignored = _split_unknown(parser, argv)
    ns = parser.parse_args(kept)
    model = ns.model or ns.model_tag
    if not model:
        parser.error("a model is required (--model or the positional MODEL)")
    if ns.speedup <= 0:
        parser.error("--speedup must be positive")
    try:
        engine = EngineSettings.from_vllm_args(
            profile=ns.gpu_profile,
            max_num_seqs=ns.max_num_seqs,
            max_num_batched_tokens=ns.max_num_batched_tokens,
            max_model_len=ns.max_model_len,
            block_size=ns.block_size,
            num_gpu_blocks=ns.num_gpu_blocks_override,
        )
    except ValueError as err:
        parser.error(str(err))
    return EmulatorConfig(
        model=model,
        served_model_names=tuple(ns.served_model_name or [model]),
        host=ns.host,
        port=ns.port,
        engine=engine,
        speedup=ns.speedup,
        startup_delay_s=max(0.0, ns.startup_delay),
        shutdown_grace_s=max(0.0, min(ns.shutdown_grace, ns.shutdown_timeout)
                             if ns.shutdown_timeout is not None else ns.shutdown_grace),
        ignored_args=tuple(ignored),
    )


class RequestError(Exception):
    """An OpenAI-style error answer (vLLM's `{"object": "error", …}` body)."""

    def __init__(self, status: int, message: str, kind: str = "BadRequestError") -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind

    def response(self) -> web.Response:
        body = {"object": "error", "message": self.message, "type": self.kind, "param": None, "code": self.status}
        return web.json_response(body, status=self.status)


def _count_words(text: str) -> int:
    return len(text.split())


def prompt_tokens_of(body: dict[str, Any], chat: bool) -> int:
    """The prompt length in tokens: words of the text, or the length of a token-id list."""
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError(400, "messages must be a non-empty list")
        total = 0
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                total += _count_words(content)
            elif isinstance(content, list):
                total += sum(_count_words(str(part.get("text", ""))) for part in content if isinstance(part, dict))
        return max(1, total)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        return max(1, _count_words(prompt))
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return len(prompt)
    raise RequestError(400, "prompt must be a string or a list of token ids (batches of several prompts are not supported)")


class EmulatorServer:
    """The HTTP side of one emulated pod: OpenAI routes, health and metrics over a RealtimeEngine."""

    def __init__(self, config: EmulatorConfig, engine: RealtimeEngine) -> None:
        self.config = config
        self.engine = engine
        self.created = int(time.time())
        self.ready_at = time.monotonic() + config.startup_delay_s / config.speedup
        self.draining = False
        self._active = 0  # completion handlers running; the drain waits for them
        self._idle = asyncio.Event()
        self._idle.set()
        self.app = web.Application()
        self.app.add_routes(
            [
                web.post("/v1/completions", self.completions),
                web.post("/v1/chat/completions", self.chat_completions),
                web.get("/v1/models", self.models),
                web.get("/health", self.health),
                web.get("/metrics", self.metrics),
            ]
        )

    @property
    def loading(self) -> bool:
        return time.monotonic() < self.ready_at

    async def health(self, request: web.Request) -> web.Response:
        if self.loading or self.draining:
            return web.Response(status=503, text="loading" if self.loading else "shutting down")
        return web.Response(status=200)

    async def metrics(self, request: web.Request) -> web.Response:
        self.engine.refresh_gauges()
        body, content_type = self.engine.metrics.render(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def models(self, request: web.Request) -> web.Response:
        data = [
            {
                "id": name,
                "object": "model",
                "created": self.created,
                "owned_by": "vllm",
                "root": self.config.model,
                "parent": None,
                "max_model_len": self.config.engine.max_model_len,
            }
            for name in self.config.served_model_names
        ]
        return web.json_response({"object": "list", "data": data})

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=False)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=True)

    def _admit(self, body: dict[str, Any], chat: bool) -> RequestHandle:
        if self.draining:
            raise RequestError(503, "the server is shutting down", "ServiceUnavailableError")
        if self.loading:
            raise RequestError(503, "the model is still loading", "ServiceUnavailableError")
        model = body.get("model")
        if model is not None and model not in self.config.served_model_names:
            raise RequestError(404, f"The model `{model}` does not exist.", "NotFoundError")
        if body.get("n", 1) != 1:
            raise RequestError(400, "only n=1 is supported")
        prompt_tokens = prompt_tokens_of(body, chat)
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens")) if chat else body.get("max_tokens")
        max_tokens = DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise RequestError(400, "max_tokens must be a positive integer")
        limit = self.config.engine.max_model_len
        if prompt_tokens + max_tokens > limit:
            raise RequestError(
                400,
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, {max_tokens} in the completion).",
            )
        try:
            return self.engine.submit(prompt_tokens, max_tokens)
        except ValueError as err:
            raise RequestError(400, str(err)) from None

    async def drain(self, grace_s: float) -> bool:
        """Stop admitting and wait up to `grace_s` real seconds for the requests in flight to be
        answered in full; True if all were."""
        self.draining = True
        try:
            await asyncio.wait_for(self._idle.wait(), grace_s)
        except TimeoutError:
            return False
        return True

    async def _serve(self, request: web.Request, chat: bool) -> web.StreamResponse:
        self._active += 1
        self._idle.clear()
        try:
            return await self._answer(request, chat)
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    async def _answer(self, request: web.Request, chat: bool) -> web.StreamResponse:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise RequestError(400, "the request body must be a JSON object")
            handle = self._admit(body, chat)
        except json.JSONDecodeError:
            return RequestError(400, "the request body is not valid JSON").response()
        except RequestError as err:
            return err.response()
        shape = _Shape(chat, self.config.served_model_name, handle.prompt_tokens, self.created)
        try:
            if body.get("stream"):
                return await self._stream(request, body, handle, shape)
            await handle.done()
            return web.json_response(shape.full(handle.max_tokens))
        finally:
            handle.abort()  # no-op once finished; frees the engine slot when the client went away

    async def _stream(
        self, request: web.Request, body: dict[str, Any], handle: RequestHandle, shape: _Shape
    ) -> web.StreamResponse:
        options = body.get("stream_options") or {}
        include_usage = bool(options.get("include_usage"))
        continuous = include_usage and bool(options.get("continuous_usage_stats"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        if shape.chat:
            await _send(response, shape.chunk(None, role=True, usage_tokens=0 if continuous else None))
        sent = 0
        while sent < handle.max_tokens:
            produced = await handle.progress(sent)
            final = produced >= handle.max_tokens
            await _send(response, shape.chunk(produced - sent, final=final, usage_tokens=produced if continuous else None))
            sent = produced
        if include_usage:
            await _send(response, shape.usage_chunk(sent))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


async def _send(response: web.StreamResponse, payload: dict[str, Any]) -> None:
    await response.write(b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n")


@dataclass(frozen=True)
class _Shape:
    """vLLM's response bodies for one request (completion or chat, whole or as stream chunks)."""

    chat: bool
    model: str
    prompt_tokens: int
    created: int
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def id(self) -> str:
        return f"{'chatcmpl' if self.chat else 'cmpl'}-{self.uid}"

    def usage(self, completion_tokens: int) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
            "completion_tokens": completion_tokens,
        }

    def _envelope(self, kind: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model, "choices": choices}

    def full(self, tokens: int) -> dict[str, Any]:
        text = OUTPUT_WORD * tokens
        if self.chat:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "length",
            }
            body = self._envelope("chat.completion", [choice])
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "length", "stop_reason": None}
            body = self._envelope("text_completion", [choice])
        body["usage"] = self.usage(tokens)
        return body

    def chunk(
        self, tokens: int | None, final: bool = False, role: bool = False, usage_tokens: int | None = None
    ) -> dict[str, Any]:
        text = OUTPUT_WORD * (tokens or 0)
        reason = "length" if final else None
        if self.chat:
            delta = {"role": "assistant", "content": ""} if role else {"content": text}
            body = self._envelope("chat.completion.chunk", [{"index": 0, "delta": delta, "finish_reason": reason}])
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason, "stop_reason": None}
            body = self._envelope("text_completion", [choice])
        if usage_tokens is not None:
            body["usage"] = self.usage(usage_tokens)
        return body

    def usage_chunk(self, tokens: int) -> dict[str, Any]:
        body = self._envelope("chat.completion.chunk" if self.chat else "text_completion", [])
        body["usage"] = self.usage(tokens)
        return body


async def serve(config: EmulatorConfig) -> None:
    """Run one pod until SIGTERM/SIGINT, then drain within the grace period and return."""
    engine = RealtimeEngine(config.engine, config.speedup, config.served_model_name)
    server = EmulatorServer(config, engine)
    runner = web.AppRunner(server.app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    engine_task = asyncio.create_task(engine.run())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await site.start()
        host, port = runner.addresses[0][:2]  # the port the OS chose for --port 0
        print(f"emulated vLLM serving {config.served_model_name} on http://{host}:{port}", flush=True)
        await stop.wait()
        drained = await server.drain(config.shutdown_grace_s)
        print(f"shutting down: {'drained' if drained else 'grace period over'}, {engine.in_flight} in flight", flush=True)
    finally:
        engine_task.cancel()
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> None:
    config = parse_args(sys.argv[1:] if argv is None else argv)
    if config.ignored_args:
        print(f"note: ignoring vLLM arguments the emulator does not model: {' '.join(config.ignored_args)}", file=sys.stderr)
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
