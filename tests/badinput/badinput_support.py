"""Shared by the bad-input tests: a valid InferenceService to break, and the CRD on disk.

`valid_spec()` is the smallest spec the API accepts; each invalid case is that spec with one
thing broken, so a rejection can only come from the one change the case makes.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "inferenceservice.yaml"
GROUP, VERSION, PLURAL, KIND = "sloscale.dev", "v1alpha1", "inferenceservices", "InferenceService"

_VALID: dict[str, Any] = {
    "model": "meta-llama/Llama-3.1-8B-Instruct",
    "objective": {
        "type": "Latency",
        "latency": {"metric": "TimeToFirstToken", "percentile": "p99", "target": "1s"},
    },
    "replicas": {"min": 1, "max": 4},
}


def valid_spec() -> dict[str, Any]:
    return copy.deepcopy(_VALID)


def manifest(name: str, spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name},
        "spec": spec,
    }
