"""Custom resources checked against their CRD: pruning, defaulting, schema and CEL rules.

The order is the real server's: unknown fields are pruned (structural schemas keep only declared
fields unless `x-kubernetes-preserve-unknown-fields`), `null`s in non-nullable fields are dropped,
`default`s are filled in, then the object is validated against the `openAPIV3Schema` (through
`jsonschema`, with errors mapped to apimachinery's field-error types and messages) and against
every `x-kubernetes-validations` CEL rule (through `cel-python`). Transition rules that mention
`oldSelf` run only on updates where the old value exists (unless `optionalOldSelf`). As the real
server does, CEL rules are skipped when the schema already failed with a blocking error (wrong
type, unsupported enum value, missing required field, too long, too many); and on updates errors
in values left unchanged are ratcheted (not reported), so a status write never fails on spec.

Kubernetes CEL's `duration()` takes Go duration strings ("800ms", "1h30m"); a few functions of
Kubernetes' CEL string and list libraries are added. Not emulated: the CEL cost budget, the
`quantity`, `ip`, `cidr`, `url`, `format` and regex-extension libraries, `format` checks other
than `date-time`, `date` and `uuid`, `int-or-string` beyond its type.
"""

from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import celpy
import jsonschema
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError

from sloscale.apiserver.errors import FieldError

JSON = dict[str, Any]
Path = tuple[str | int, ...]
MISSING = object()

OBJECT_META_FIELDS = frozenset({
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
    "annotations", "ownerReferences", "finalizers", "managedFields",
})
_BLOCKING = {"FieldValueNotSupported", "FieldValueRequired", "FieldValueTooLong",
             "FieldValueTooMany", "FieldValueTypeInvalid"}
_GO_DURATION = re.compile(r"^[-+]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h))+$|^0$")


def field_path(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _lookup(obj: Any, path: Path) -> Any:
    for part in path:
        found = (isinstance(part, int) and isinstance(obj, list) and part < len(obj)) or (
            isinstance(part, str) and isinstance(obj, dict) and part in obj)
        if found:
            obj = obj[part]
        else:
            return MISSING
    return obj


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


# --- pruning and defaulting ---------------------------------------------------------------


def prune(value: Any, schema: JSON, path: Path = (), pruned: list[str] | None = None, root: bool = True) -> Any:
    """Drop fields the schema does not declare; `pruned` collects their paths."""
    pruned = pruned if pruned is not None else []
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        keep_unknown = schema.get("x-kubernetes-preserve-unknown-fields") or additional is True
        out = {}
        for key, item in value.items():
            if root and key in ("apiVersion", "kind"):
                out[key] = item
            elif root and key == "metadata" and isinstance(item, dict):
                out[key] = {k: v for k, v in item.items() if k in OBJECT_META_FIELDS}
                pruned += [field_path((*path, "metadata", k)) for k in item if k not in OBJECT_META_FIELDS]
            elif schema.get("x-kubernetes-embedded-resource") and key in ("apiVersion", "kind", "metadata"):
                out[key] = item
            elif key in props:
                out[key] = prune(item, props[key], (*path, key), pruned, False)
            elif isinstance(additional, dict):
                out[key] = prune(item, additional, (*path, key), pruned, False)
            elif keep_unknown:
                out[key] = item
            else:
                pruned.append(field_path((*path, key)))
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(v, schema["items"], (*path, i), pruned, False) for i, v in enumerate(value)]
    return value


def apply_defaults(value: Any, schema: JSON) -> Any:
    """Fill in `default`s of absent (or null, non-nullable) properties, recursively."""
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if value.get(key, MISSING) is None and not sub.get("nullable"):
                del value[key]
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = apply_defaults(value[key], sub)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key in list(value):
                if key not in props:
                    value[key] = apply_defaults(value[key], additional)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(v, schema["items"]) for v in value]
    return value


# --- schema validation ----------------------------------------------------------------------


def _to_jsonschema(schema: Any) -> Any:
    """OpenAPI v3 (Kubernetes flavour) → JSON Schema draft 4: nullable, int-or-string."""
    if isinstance(schema, list):
        return [_to_jsonschema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _to_jsonschema(v) for k, v in schema.items()
           if not k.startswith("x-kubernetes-") and k not in ("default", "description", "example")}
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    out.pop("nullable", None)
    if out.get("format") not in FORMATS.checkers:
        out.pop("format", None)
    return out


FORMATS = jsonschema.FormatChecker(formats=())
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


@FORMATS.checks("date-time")
def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value.upper().replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        return False
    return True


@FORMATS.checks("date")
def _date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


@FORMATS.checks("uuid")
def _uuid(value: object) -> bool:
    return not isinstance(value, str) or re.match(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$", value) is not None


def _field_error(err: jsonschema.ValidationError) -> FieldError | None:
    path: Path = tuple(err.absolute_path)
    where = field_path(path)
    kind: Any = err.validator
    expected: Any = err.validator_value
    value: Any = err.instance
    schema: Any = err.schema
    match kind:
        case "type":
            want = expected if isinstance(expected, str) else expected[0]
            return FieldError("FieldValueTypeInvalid", where, f"{where} in body must be of type {want}: {_quote(_type_name(value))}", _type_name(value))
        case "enum":
            allowed = ", ".join(_quote(v) for v in expected if v is not None)
            return FieldError("FieldValueNotSupported", where, f"supported values: {allowed}", value)
        case "required":
            missing = re.match(r"^'(.*)' is a required property$", err.message)
            name = missing[1] if missing else str(expected)
            return FieldError("FieldValueRequired", field_path((*path, name)))
        case "minimum":
            op = "greater than" if schema.get("exclusiveMinimum") else "greater than or equal to"
            return FieldError("FieldValueInvalid", where, f"{where} in body should be {op} {expected}", value)
        case "maximum":
            op = "less than" if schema.get("exclusiveMaximum") else "less than or equal to"
            return FieldError("FieldValueInvalid", where, f"{where} in body should be {op} {expected}", value)
        case "pattern":
            return FieldError("FieldValueInvalid", where, f"{where} in body should match '{expected}'", value)
        case "minLength":
            return FieldError("FieldValueInvalid", where, f"{where} in body should be at least {expected} chars long", value)
        case "maxLength":
            return FieldError("FieldValueTooLong", where, f"may not be more than {expected} bytes", value)
        case "minItems":
            return FieldError("FieldValueInvalid", where, f"{where} in body should have at least {expected} items", value)
        case "maxItems":
            return FieldError("FieldValueTooMany", where, f"must have at most {expected} items", len(value))
        case "minProperties":
            return FieldError("FieldValueInvalid", where, f"{where} in body should have at least {expected} properties", value)
        case "maxProperties":
            return FieldError("FieldValueTooMany", where, f"must have at most {expected} items", len(value))
        case "uniqueItems":
            return FieldError("FieldValueDuplicate", where, "", value)
        case "multipleOf":
            return FieldError("FieldValueInvalid", where, f"{where} in body should be a multiple of {expected}", value)
        case "format":
            return FieldError("FieldValueInvalid", where, f"{where} in body must be of type {expected}: {_quote(value)}", value)
    return FieldError("FieldValueInvalid", where, err.message, value)


def _quote(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


# --- CEL ----------------------------------------------------------------------------------


_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_GO_MAX_NS = 2**63 - 1


def _duration(value: Any) -> Any:
    """CEL `duration()` as Kubernetes has it: Go's time.ParseDuration grammar and int64 range."""
    if isinstance(value, str):
        if not _GO_DURATION.match(value):
            raise ValueError(f'time: invalid duration "{value}"')
        total = sum(float(n) * _UNIT_NS[u] for n, _, u in re.findall(r"(([0-9]*\.?[0-9]*))(ns|us|µs|ms|s|m|h)", value))
        if total > _GO_MAX_NS:
            raise ValueError(f'time: invalid duration "{value}"')
    return celpy.celtypes.DurationType(value)


def _eval_error(exc: BaseException) -> str:
    """The innermost message of a cel-python evaluation error."""
    args = exc.args
    if len(args) >= 3 and isinstance(args[2], tuple) and args[2]:
        return str(args[2][0])
    return str(args[0]) if args else str(exc)


def _s(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any) -> Any:
        out = fn(*args)
        if isinstance(out, bool):
            return celpy.celtypes.BoolType(out)
        if isinstance(out, int):
            return celpy.celtypes.IntType(out)
        if isinstance(out, str):
            return celpy.celtypes.StringType(out)
        if isinstance(out, list):
            return celpy.celtypes.ListType([celpy.celtypes.StringType(x) for x in out])
        return out
    return wrapped


CEL_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "duration": _duration,
    "lowerAscii": _s(lambda s: str(s).lower()),
    "upperAscii": _s(lambda s: str(s).upper()),
    "trim": _s(lambda s: str(s).strip()),
    "replace": _s(lambda s, a, b, n=-1: str(s).replace(str(a), str(b), int(n))),
    "split": _s(lambda s, sep, n=-1: str(s).split(str(sep), int(n) - 1 if int(n) > 0 else -1)),
    "join": _s(lambda xs, sep="": str(sep).join(str(x) for x in xs)),
    "indexOf": _s(lambda s, sub: str(s).find(str(sub)) if isinstance(s, str) else list(s).index(sub) if sub in s else -1),
    "substring": _s(lambda s, a, b=None: str(s)[int(a):] if b is None else str(s)[int(a):int(b)]),
    "isSorted": _s(lambda xs: list(xs) == sorted(xs)),
}


class CelRuleError(ValueError):
    """A rule that does not compile; the CRD carrying it is rejected."""


@dataclass
class _Rule:
    spec: JSON
    program: Any
    message_program: Any
    transition: bool


@dataclass
class CelRules:
    env: Any = field(default_factory=celpy.Environment)
    _cache: dict[str, Any] = field(default_factory=dict)

    def compile(self, source: str) -> Any:
        if source not in self._cache:
            try:
                ast = self.env.compile(source)
            except CELParseError as exc:
                raise CelRuleError(f"compilation failed: {str(exc).strip()}") from None
            self._cache[source] = self.env.program(ast, functions=CEL_FUNCTIONS)
        return self._cache[source]

    def rule(self, spec: JSON) -> _Rule:
        src = spec["rule"]
        msg = spec.get("messageExpression")
        return _Rule(spec, self.compile(src), self.compile(msg) if msg else None,
                     re.search(r"\boldSelf\b", src) is not None)


def compile_schema_rules(schema: Any, rules: CelRules, path: str = "") -> list[FieldError]:
    """Compile every rule of a schema; CRD validation reports the ones that do not compile."""
    errors: list[FieldError] = []
    if isinstance(schema, dict):
        for i, spec in enumerate(schema.get("x-kubernetes-validations") or []):
            where = f"{path}.x-kubernetes-validations[{i}]"
            if not isinstance(spec, dict) or not isinstance(spec.get("rule"), str):
                errors.append(FieldError("FieldValueRequired", where + ".rule"))
                continue
            try:
                rules.rule(spec)
            except CelRuleError as exc:
                errors.append(FieldError("FieldValueInvalid", where + ".rule", str(exc), spec["rule"]))
        for key, sub in (schema.get("properties") or {}).items():
            errors += compile_schema_rules(sub, rules, f"{path}.properties[{key}]")
        for key in ("items", "additionalProperties"):
            if isinstance(schema.get(key), dict):
                errors += compile_schema_rules(schema[key], rules, f"{path}.{key}")
    return errors


# --- the validator for one CRD version -----------------------------------------------------


@dataclass
class SchemaValidator:
    schema: JSON
    rules: CelRules
    _validator: Any = None

    def __post_init__(self) -> None:
        self._validator = jsonschema.Draft4Validator(_to_jsonschema(self.schema), format_checker=FORMATS)

    def normalize(self, obj: JSON) -> tuple[JSON, list[str]]:
        """Prune and default; returns the object and the paths of the fields pruned."""
        pruned: list[str] = []
        out = prune(obj, self.schema, (), pruned)
        return apply_defaults(out, self.schema), pruned

    def validate(self, obj: JSON, old: JSON | None) -> list[FieldError]:
        body = {k: v for k, v in obj.items() if k != "metadata"}
        found = sorted(self._validator.iter_errors(body), key=lambda e: [str(p) for p in e.absolute_path])
        errors: list[tuple[Path, FieldError]] = []
        for err in found:
            fe = _field_error(err)
            if fe is not None and not (old is not None and _unchanged(obj, old, tuple(err.absolute_path))):
                errors.append((tuple(err.absolute_path), fe))
        out = [fe for _, fe in errors]
        out += [fe for path, fe in _duplicates(body, self.schema, ()) if not (old is not None and _unchanged(obj, old, path))]
        blocking = [fe for fe in out if fe.type in _BLOCKING]
        if blocking:
            if any(self._has_rules(self.schema)):
                out.append(FieldError("FieldValueInvalid", "<nil>", "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation", "null"))
            return out
        out += self._cel(body, {k: v for k, v in old.items() if k != "metadata"} if old else None,
                         self.schema, (), old is not None)
        return out

    def _has_rules(self, schema: Any) -> Any:
        if isinstance(schema, dict):
            if schema.get("x-kubernetes-validations"):
                yield True
            for sub in (schema.get("properties") or {}).values():
                yield from self._has_rules(sub)
            for key in ("items", "additionalProperties"):
                if isinstance(schema.get(key), dict):
                    yield from self._has_rules(schema[key])

    def _cel(self, value: Any, old: Any, schema: JSON, path: Path, has_old: bool) -> list[FieldError]:
        if has_old and value == old:
            return []  # ratcheting: an unchanged value is not checked again
        errors: list[FieldError] = []
        specs = schema.get("x-kubernetes-validations") or []
        if specs:
            errors += self._run_rules(specs, value, old, schema, path, has_old)
        if isinstance(value, dict):
            props = schema.get("properties") or {}
            additional = schema.get("additionalProperties")
            for key, item in value.items():
                sub = props.get(key, additional if isinstance(additional, dict) else None)
                if sub is None:
                    continue
                old_item = old.get(key, MISSING) if isinstance(old, dict) else MISSING
                errors += self._cel(item, old_item, sub, (*path, key), old_item is not MISSING)
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            items = schema["items"]
            for i, item in enumerate(value):
                old_item = _correlate(item, old, schema) if has_old else MISSING
                errors += self._cel(item, old_item, items, (*path, i), old_item is not MISSING)
        return errors

    def _run_rules(self, specs: list[JSON], value: Any, old: Any, schema: JSON, path: Path, has_old: bool) -> list[FieldError]:
        errors = []
        type_name = schema.get("type") or _type_name(value)
        for spec in specs:
            rule = self.rules.rule(spec)
            if rule.transition and not has_old and not spec.get("optionalOldSelf"):
                continue
            where = field_path(path) + (spec.get("fieldPath") or "")
            activation = {"self": json_to_cel(value)}
            if rule.transition:
                activation["oldSelf"] = json_to_cel(old) if has_old else None
            try:
                ok = rule.program.evaluate(activation)
            except Exception as exc:  # noqa: BLE001 - CEL evaluation errors become field errors
                # As upstream: "<error> evaluating rule: <message, or the rule itself>".
                about = (spec.get("message") or spec["rule"]).strip()
                errors.append(FieldError("FieldValueInvalid", where, f"{_eval_error(exc)} evaluating rule: {about}", type_name))
                continue
            if ok is True or (isinstance(ok, celpy.celtypes.BoolType) and bool(ok)):
                continue
            message = spec.get("message") or f"failed rule: {spec['rule']}"
            if rule.message_program is not None:
                with contextlib.suppress(Exception):  # the static message stands in, as upstream
                    message = str(rule.message_program.evaluate(activation)) or message
            errors.append(FieldError(spec.get("reason") or "FieldValueInvalid", where, message, type_name))
        return errors


def _duplicates(value: Any, schema: JSON, path: Path) -> list[tuple[Path, FieldError]]:
    """Entries of `x-kubernetes-list-type: map` lists with the same keys, or repeated in a set."""
    out: list[tuple[Path, FieldError]] = []
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key, additional if isinstance(additional, dict) else None)
            if isinstance(sub, dict):
                out += _duplicates(item, sub, (*path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        list_type = schema.get("x-kubernetes-list-type")
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen: list[Any] = []
        for i, item in enumerate(value):
            ident = {k: item.get(k) for k in keys} if list_type == "map" and isinstance(item, dict) else item
            if list_type in ("map", "set"):
                if ident in seen:
                    out.append(((*path, i), FieldError("FieldValueDuplicate", field_path((*path, i)), "", ident)))
                seen.append(ident)
            out += _duplicates(item, schema["items"], (*path, i))
    return out


def _correlate(item: Any, old: Any, schema: JSON) -> Any:
    """The old element a new list element corresponds to (map and set lists only)."""
    if not isinstance(old, list):
        return MISSING
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "map" and isinstance(item, dict):
        keys = schema.get("x-kubernetes-list-map-keys") or []
        for candidate in old:
            if isinstance(candidate, dict) and all(candidate.get(k) == item.get(k) for k in keys):
                return candidate
    elif list_type == "set" and item in old:
        return item
    return MISSING


def _unchanged(obj: JSON, old: JSON, path: Path) -> bool:
    body_path: Path = path
    before, after = _lookup(old, body_path), _lookup(obj, body_path)
    return before is not MISSING and before == after
