"""`sloscale sandbox demo`: what it applies, the plots it writes, and that it leaves nothing running.

The whole demo takes minutes (its wall time is measured in docs/demo.md); here its parts run on
their own, and the command itself runs until its sandbox serves the example and is then
interrupted as a user would with Ctrl-C: everything it started must be gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import yaml
from e2e_support import AZURE_CONV

from sloscale.resource import parse_spec, resolve_policy
from sloscale.sandbox.demo import EXAMPLE, Plan, demo_spec, write_plots
from sloscale.sandbox.loadgen import RequestRecord
from sloscale.sandbox.scenario import Sample


def test_the_demo_applies_the_example_with_sandbox_timings() -> None:
    example = yaml.safe_load(EXAMPLE.read_text())
    doc = demo_spec(example, Plan())
    spec = doc["spec"]
    assert doc["metadata"] == {"name": example["metadata"]["name"], "namespace": "default"}
    # The objective itself is the example's; only its window is shortened.
    assert {
        **spec["objective"]["latency"],
        "window": example["spec"]["objective"]["latency"]["window"],
    } == example["spec"]["objective"]["latency"]
    assert spec["objective"]["latency"]["window"] == "30s"
    assert spec["replicas"] == example["spec"]["replicas"]
    assert spec["engine"]["gpuProfile"] == Plan().gpu_profile
    assert spec["engine"]["args"] == example["spec"]["engine"]["args"]
    assert spec["coldStart"] == "10s"
    policy = resolve_policy(parse_spec(spec))  # the operator accepts it
    assert policy.objective.latency.window_s == 30.0
    assert policy.batching.cooldown_s == 30.0 and policy.scale_down.stabilization_s == 20.0
    assert example["spec"]["objective"]["latency"]["window"] == "5m"  # the file itself is untouched


def test_the_plan_names_its_phases_in_order() -> None:
    plan = Plan()
    assert plan.load_s == len(plan.rates) * plan.window_s
    assert [plan.phase_at(t) for t in (0.0, 50.0, 100.0, 125.0, 170.0, 1e6)] == [
        "steady", "rising", "burst", "falling", "quiet", "after the load",
    ]  # fmt: skip
    assert plan.span("burst") == (90.0, 120.0)
    assert max(plan.rates) == plan.phases[2][2]


def test_the_rise_climbs_window_by_window_from_the_steady_rate_to_the_burst() -> None:
    plan = Plan()
    rising = plan.rates[2:6]  # after two steady windows
    assert rising == sorted(rising) and len(set(rising)) == 4
    assert plan.rates[1] == 1.5 < rising[0] and rising[-1] == plan.rates[6] == 8.0


def test_the_plots_are_written_as_images(tmp_path: Path) -> None:
    plan = Plan()
    rng = np.random.default_rng(1)
    records = [
        RequestRecord(
            index=i,
            scheduled_s=t,
            sent_s=t,
            status=200,
            ttft_s=float(rng.uniform(0.1, 0.6)),
            e2e_s=3.0,
            output_tokens=100,
        )
        for i, t in enumerate(np.arange(0.0, plan.load_s, 0.5))
    ]
    samples = [
        Sample(
            t, replicas=r, ready=r, desired=r, batch=16 if t < 30 else 32, observed="480ms", pods=r
        )
        for t, r in ((float(t), 1 + int(60 <= t < 140)) for t in range(-10, 200, 2))
    ]
    written = write_plots(
        tmp_path, plan, samples, records, target_s=1.0, load_start_s=0.0, objective="p99 TTFT ≤ 1s"
    )
    assert [p.name for p in written] == ["latency.png", "levers.png"]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        height, width, _ = matplotlib.image.imread(path).shape
        assert width == 1100 and height >= 500


def test_a_missing_trace_is_refused_before_anything_starts(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sloscale", "sandbox", "demo", "--out", str(tmp_path), "--trace", str(tmp_path / "none.csv")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "no trace at" in done.stdout
    assert not (tmp_path / "sandbox").exists()


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.e2e
@pytest.mark.prometheus
@pytest.mark.timeout(180)
def test_ctrl_c_during_the_demo_leaves_nothing_running(tmp_path: Path, prometheus_binary: str) -> None:
    if not AZURE_CONV.is_file():
        pytest.skip(f"{AZURE_CONV} is missing")
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    demo = subprocess.Popen(
        [sys.executable, "-m", "sloscale", "sandbox", "demo", "--out", str(tmp_path), "--trace", str(AZURE_CONV)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    state_file = tmp_path / "sandbox" / "sandbox.json"
    pids: list[int] = []
    output: list[str] = []
    try:
        assert demo.stdout is not None
        deadline = time.monotonic() + 120
        for line in demo.stdout:  # the load starts once a pod serves the example
            output.append(line)
            if line.startswith("t=") or time.monotonic() > deadline:
                break
        assert any(line.startswith("t=") for line in output), "".join(output)
        state = json.loads(state_file.read_text())
        pids = [state["pid"], state["prometheus"]["pid"], state["operator"]["pid"]]
        pids += [pod["pid"] for pod in state["pods"].values()]
        assert all(map(alive, pids)) and len(pids) >= 4
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=90)
        output.append(rest)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "sloscale",
                    "sandbox",
                    "down",
                    "--dir",
                    str(tmp_path / "sandbox"),
                ],
                timeout=90,
            )
    text = "".join(output)
    assert demo.returncode == 130, text
    assert "interrupted" in text and "stopped: nothing left running" in text
    assert not [pid for pid in pids if alive(pid)]
    assert not state_file.exists()
