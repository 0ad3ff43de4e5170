"""`sloscale sandbox apiserver` as a subprocess: prints its URL, serves the CRDs, stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from apiserver_support import KUBECTL, ROOT


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    kubeconfig = tmp_path / "kubeconfig"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sloscale", "sandbox", "apiserver", "--kubeconfig", str(kubeconfig)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        yield proc, url, kubeconfig
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_the_command_serves_the_project_crds_and_stops_on_sigterm(served: tuple[subprocess.Popen[str], str, Path]) -> None:
    proc, url, kubeconfig = served
    assert url.startswith("http://127.0.0.1:")
    assert requests.get(url + "/apis/sloscale.dev/v1alpha1", timeout=5).status_code == 200
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    out = subprocess.run([str(KUBECTL), "get", "infsvc"], capture_output=True, text=True, env=env, timeout=30)
    assert out.returncode == 0 and "No resources found" in out.stderr
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0


def test_sigint_also_stops_it_cleanly(tmp_path: Path) -> None:
    # The command's body without the CLI around it, which imports the whole product.
    code = f"from pathlib import Path; from sloscale.apiserver.main import serve; serve(Path({str(tmp_path / 'kc')!r}))"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        _check_and_interrupt(proc, url)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def _check_and_interrupt(proc: subprocess.Popen[str], url: str) -> None:
    assert requests.get(url + "/apis/sloscale.dev/v1alpha1", timeout=5).status_code == 200
    proc.send_signal(signal.SIGINT)
    assert proc.wait(15) == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/version", timeout=2)
