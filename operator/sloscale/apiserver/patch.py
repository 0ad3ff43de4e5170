"""The three patch formats the API server accepts for PATCH.

- `application/merge-patch+json` (RFC 7386): objects merge key by key, `null` deletes, any other
  value (lists included) replaces.
- `application/strategic-merge-patch+json` (built-in kinds only; custom resources answer 415, as
  the real server does): like a merge patch, except that lists with a merge key (containers, env,
  ports, volumes … by name; ownerReferences by uid) merge element by element, `finalizers` merge
  as a set, and the directives kubectl writes are honoured: `$patch: replace|delete|merge`,
  `$deleteFromPrimitiveList/<field>`, `$setElementOrder/<field>` and `$retainKeys`.
- `application/json-patch+json` (RFC 6902) through the `jsonpatch` library; a failed `test`
  operation (kopf's optimistic lock on resourceVersion) or a bad path is a 422.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import jsonpatch
import jsonpointer

from sloscale.apiserver.errors import ApiError, bad_request
from sloscale.apiserver.resources import META_KEYS

JSON = dict[str, Any]

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def strategic_merge(target: Any, patch: Any, keys: Mapping[str, str]) -> Any:
    """Kubernetes strategic merge patch for the list keys in `keys` (plus metadata's)."""
    all_keys = {**META_KEYS, **keys}
    return _smp(target, patch, all_keys)


def _smp(target: Any, patch: Any, keys: Mapping[str, str]) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            out[name] = [v for v in out.get(name) or [] if v not in value]
            continue
        if value is None:
            out.pop(key, None)
        elif isinstance(value, list) and key in keys:
            out[key] = _merge_list(out.get(key) or [], value, keys[key], keys)
        else:
            merged = _smp(out.get(key), value, keys)
            if merged is None:
                out.pop(key, None)
            else:
                out[key] = merged
    if "$retainKeys" in patch:
        out = {k: v for k, v in out.items() if k in patch["$retainKeys"]}
    return out


def _merge_list(current: list[Any], patch: list[Any], merge_key: str, keys: Mapping[str, str]) -> list[Any]:
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [copy.deepcopy(p) for p in patch if not (isinstance(p, dict) and "$patch" in p)]
    if not merge_key:  # a list of primitives merged as a set (finalizers)
        out = list(current)
        out += [copy.deepcopy(p) for p in patch if p not in out]
        return out
    out = [copy.deepcopy(c) for c in current]
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise bad_request(f"map: {item} does not contain declared merge key: {merge_key}")
        idx = next((i for i, c in enumerate(out) if isinstance(c, dict) and c.get(merge_key) == item[merge_key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
        elif idx is None:
            out.append({k: v for k, v in copy.deepcopy(item).items() if k != "$patch"})
        else:
            out[idx] = _smp(out[idx], item, keys)
    return out


def json_patch(target: JSON, ops: Any) -> JSON:
    if not isinstance(ops, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    try:
        result = jsonpatch.JsonPatch(ops).apply(target)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise _unprocessable(f"the server rejected our request due to an error in our request: {exc}") from None
    except (jsonpatch.JsonPatchConflict, jsonpointer.JsonPointerException, jsonpatch.InvalidJsonPatch) as exc:
        raise _unprocessable(f"the server rejected our request due to an error in our request: {exc}") from None
    if not isinstance(result, dict):
        raise _unprocessable("the patched document is not an object")
    return result


def _unprocessable(message: str) -> ApiError:
    return ApiError(422, message, "Invalid", {})


def apply_patch(content_type: str, target: JSON, patch: Any, merge_keys: Mapping[str, str] | None) -> JSON:
    """Apply a PATCH body of the given content type; 415 for formats the resource does not take."""
    kind = content_type.split(";")[0].strip()
    if kind == MERGE:
        if not isinstance(patch, dict):
            raise bad_request("a merge patch must be a JSON object")
        result = merge_patch(target, patch)
    elif kind == JSON_PATCH:
        result = json_patch(target, patch)
    elif kind == STRATEGIC and merge_keys is not None:
        if not isinstance(patch, dict):
            raise bad_request("a strategic merge patch must be a JSON object")
        result = strategic_merge(target, patch, merge_keys)
    else:
        accepted = [JSON_PATCH, MERGE] + ([STRATEGIC] if merge_keys is not None else [])
        raise ApiError(
            415,
            f"the body of the request was in an unknown format - accepted media types include: {', '.join(accepted)}",
            "UnsupportedMediaType",
        )
    assert isinstance(result, dict)
    return result
