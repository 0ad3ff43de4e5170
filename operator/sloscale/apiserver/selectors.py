"""Label and field selectors, parsed and matched as apimachinery does.

Label selectors: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, `a>1`, `a<1`,
comma-separated (all must hold). Field selectors: `path=value`, `path==value`, `path!=value` over
the field labels a resource supports (`metadata.name` and `metadata.namespace` everywhere); any
other field is a 400 "field label not supported", as the real server answers.
`format_selector` turns a `metav1.LabelSelector` into the string form a Scale's
`status.selector` carries.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from sloscale.apiserver.errors import bad_request

JSON = dict[str, Any]
Matcher = Callable[[JSON], bool]

_SET_RE = re.compile(r"^\s*(\S+?)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_OP_RE = re.compile(r"^\s*(!?)([^!=<>\s]+)\s*(?:(==|=|!=|>|<)\s*(\S*))?\s*$")


def _split(selector: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in parts if p.strip()]


def _label_term(term: str) -> Matcher:
    if m := _SET_RE.match(term):
        key, op, values = m[1], m[2], {v.strip() for v in m[3].split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: key not in labels or labels[key] not in values
    m = _OP_RE.match(term)
    if not m or (m[1] and m[3]):
        raise bad_request(f"unable to parse requirement: invalid label selector: {term.strip()!r}")
    neg, key, op, value = m[1], m[2], m[3], m[4] or ""
    if op is None:
        return (lambda labels: key not in labels) if neg else (lambda labels: key in labels)
    if op in ("=", "=="):
        return lambda labels: labels.get(key) == value
    if op == "!=":
        return lambda labels: labels.get(key) != value
    try:
        bound = int(value)
    except ValueError:
        raise bad_request(f"unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer: {term!r}") from None
    if op == ">":
        return lambda labels: _int(labels.get(key)) is not None and _int(labels.get(key)) > bound  # type: ignore[operator]
    return lambda labels: _int(labels.get(key)) is not None and _int(labels.get(key)) < bound  # type: ignore[operator]


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def label_matcher(selector: str | None) -> Matcher:
    """A predicate over an object's labels; an empty selector matches everything."""
    if not selector:
        return lambda obj: True
    terms = [_label_term(t) for t in _split(selector)]
    return lambda obj: all(t(obj.get("metadata", {}).get("labels") or {}) for t in terms)


def field_value(obj: JSON, path: str) -> str:
    """The string a field selector compares against (missing fields read as "")."""
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if part == "source" and isinstance(cur, dict):  # events: source is the component
        return str(cur.get("component", ""))
    return str(cur)


def _field_check(path: str, value: str, negate: bool) -> Matcher:
    def check(obj: JSON) -> bool:
        return (field_value(obj, path) == value) != negate

    return check


def field_matcher(selector: str | None, supported: Iterable[str]) -> Matcher:
    if not selector:
        return lambda obj: True
    allowed = {"metadata.name", "metadata.namespace", *supported}
    checks: list[Matcher] = []
    for term in _split(selector):
        m = re.match(r"^\s*([^!=\s]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if not m:
            raise bad_request(f"invalid selector: '{selector}'; can't understand '{term}'")
        path, op, value = m[1], m[2], m[3]
        if path not in allowed:
            raise bad_request(f'"{path}" is not a known field selector: only "{", ".join(sorted(allowed))}"')
        checks.append(_field_check(path, value, op == "!="))
    return lambda obj: all(c(obj) for c in checks)


def format_selector(selector: JSON | None) -> str:
    """metav1.LabelSelector → its string form, as `status.selector` of a Scale shows it."""
    if not selector:
        return ""
    terms = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], sorted(expr.get("values") or [])
        if op == "In":
            terms.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            terms.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            terms.append(key)
        elif op == "DoesNotExist":
            terms.append(f"!{key}")
    return ",".join(terms)
