"""GPU profiles for the engine model: the presets of `sloscale.scaling.policy` and custom ones.

The numbers live in one place (`sloscale.scaling.policy.PROFILES`); this module only looks them
up by name and derives variants, e.g. a measured `a` for a slower CPU path.
"""

from __future__ import annotations

import dataclasses

from sloscale.scaling.policy import H100, PROFILES, EngineProfile

# Short names accepted on the command line, mapped to EngineProfile fields.
_FIELDS = {
    "a": "a_ms",
    "s": "s_ms_per_token",
    "k": "k_tokens",
    "d": "d_ms_per_ctx_token",
    "e": "e_ms_per_pair",
    "kv": "kv_capacity_tokens",
    "mnbt": "max_num_batched_tokens",
}


def custom_profile(name: str, base: EngineProfile = H100, **overrides: float) -> EngineProfile:
    """A profile equal to `base` except for `overrides` (EngineProfile field names or the short
    names a, s, k, d, e, kv, mnbt)."""
    changes: dict[str, float | int] = {}
    for key, value in overrides.items():
        field = _FIELDS.get(key, key)
        if field not in {f.name for f in dataclasses.fields(EngineProfile)} or field == "name":
            raise ValueError(f"unknown profile parameter {key!r}; use one of {', '.join(_FIELDS)}")
        if value < 0 or (field in ("kv_capacity_tokens", "max_num_batched_tokens") and value < 1):
            raise ValueError(f"profile parameter {key!r} must be positive, got {value}")
        is_int = field in ("kv_capacity_tokens", "max_num_batched_tokens")
        changes[field] = int(value) if is_int else float(value)
    return dataclasses.replace(base, name=name, **changes)  # type: ignore[arg-type]


def resolve_profile(spec: str) -> EngineProfile:
    """`h100`, `a100`, or `h100:a=8.5,s=0.02` (a preset with overrides). Case-insensitive."""
    base_name, _, rest = spec.partition(":")
    presets = {name.lower(): p for name, p in PROFILES.items()}
    base = presets.get(base_name.strip().lower())
    if base is None:
        raise ValueError(f"unknown GPU profile {base_name!r}; known: {', '.join(sorted(presets))}")
    if not rest.strip():
        return base
    overrides: dict[str, float] = {}
    for item in rest.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"profile override {item!r} is not key=value")
        try:
            overrides[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"profile override {item!r}: {value!r} is not a number") from None
    return custom_profile(f"{base.name}-custom", base, **overrides)
