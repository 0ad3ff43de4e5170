"""Which pods the sandbox runs as the real vLLM engine, and with which command line.

The real engine itself runs in `tests/vllm` (it needs `.venv-vllm`); here are the rules the
kubelet stand-in applies before starting it: only pods of vLLM's server image, the template's
arguments kept (the batch cap above all), the model, host and parallelism mapped to what runs on
this machine, and a sandbox asked for real engines without the engine installed refusing to start
with the way to install it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sloscale.resource import parse_spec
from sloscale.sandbox.real_vllm import SERVER_MODULE, PodEngine, is_vllm_server_image, set_flag
from sloscale.sandbox.sandbox import SandboxConfig, SandboxError, up
from sloscale.workload import render_pod_template

ENGINE = PodEngine(Path("/venv/bin/python"), Path("/models/tiny"))


@pytest.mark.parametrize(
    ("image", "real"),
    [
        ("vllm/vllm-openai:v0.11.0", True),
        ("docker.io/vllm/vllm-openai:latest", True),
        ("registry.example:5000/mirror/vllm-openai@sha256:0123abcd", True),
        ("vllm/vllm-openai", True),
        ("vllm/vllm-openai-cpu:v0.11.0", False),
        ("ghcr.io/example/sglang:v1", False),
        ("", False),
    ],
)
def test_only_pods_of_vllms_server_image_run_the_real_engine(image: str, real: bool) -> None:
    assert is_vllm_server_image(image) is real


def test_the_operators_rendered_pod_runs_with_its_own_batch_cap_and_port() -> None:
    spec = parse_spec(
        {
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "engine": {"gpus": 2, "args": ["--shutdown-timeout=100"]},
            "objective": {
                "type": "Latency",
                "latency": {"metric": "TimeToFirstToken", "target": "1s"},
            },
            "replicas": {"min": 1, "max": 2},
        }
    )
    container = render_pod_template("chat", spec, max_num_seqs=48)["spec"]["containers"][0]
    assert is_vllm_server_image(container["image"])

    argv = ENGINE.argv(container["args"], "127.9.0.2")

    assert argv[:3] == ["/venv/bin/python", "-m", SERVER_MODULE]
    args = argv[3:]
    assert "--max-num-seqs=48" in args and "--served-model-name=chat" in args
    assert "--shutdown-timeout=100" in args and "--port=8000" in args
    assert "--model=/models/tiny" in args and "--host=127.9.0.2" in args
    assert "--tensor-parallel-size=1" in args  # one CPU device, whatever the GPU count
    assert not any("Llama-3.1" in a or "0.0.0.0" in a for a in args)
    assert args[-5:] == ["--max-model-len", "256", "--dtype", "bfloat16", "--enforce-eager"]


def test_settings_the_template_makes_are_kept() -> None:
    args = ["--model", "org/m", "--max-model-len", "128", "--dtype=float32", "--max-num-seqs", "3"]

    compiled = PodEngine(ENGINE.python, ENGINE.model_dir, compile_model=True).argv(
        args, "127.9.0.3"
    )

    assert compiled[3:] == [
        "--model", "/models/tiny", "--max-model-len", "128", "--dtype=float32",
        "--max-num-seqs", "3", "--host", "127.9.0.3",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--host=0.0.0.0", "--port=1"], ["--host=10.0.0.1", "--port=1"]),
        (["--host", "0.0.0.0"], ["--host", "10.0.0.1"]),
        (["--port=1"], ["--port=1", "--host", "10.0.0.1"]),
        (["--hostname=x"], ["--hostname=x", "--host", "10.0.0.1"]),  # another flag's prefix
    ],
)
def test_a_flag_keeps_its_spelling(args: list[str], expected: list[str]) -> None:
    assert set_flag(args, "--host", "10.0.0.1") == expected


def test_a_sandbox_asked_for_real_engines_without_vllm_says_how_to_install_it(
    tmp_path: Path,
) -> None:
    config = SandboxConfig(
        tmp_path / "sandbox",
        operator=False,
        real_engine=True,
        vllm_python=tmp_path / "no-venv" / "bin" / "python",
    )
    with pytest.raises(SandboxError, match="setup-vllm-cpu"):
        up(config, timeout_s=60)
    assert not (tmp_path / "sandbox" / "sandbox.pid").exists()  # nothing left running
