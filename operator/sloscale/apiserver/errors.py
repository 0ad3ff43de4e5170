"""API errors shaped like the real API server's `Status` objects.

Clients branch on `reason` and `code` (kopf retries on 409, kubectl prints `message` and the
`details.causes`), so every failure the emulator reports goes through `ApiError`, which renders
the same `kind: Status` body the real server sends. Field errors follow apimachinery's
`field.Error`: a type (the cause's `reason`), a field path and a body such as
`Invalid value: "object": replicas.min must be …`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

_REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def _go_value(value: Any) -> str:
    """Render a value the way apimachinery's `field.Invalid` does in messages."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


@dataclass(frozen=True)
class FieldError:
    """One field error: `type` is the cause reason (FieldValueInvalid, FieldValueRequired, …)."""

    type: str
    field: str
    detail: str = ""
    value: Any = None

    def body(self) -> str:
        """The message without the field path, as the cause's `message` carries it."""
        match self.type:
            case "FieldValueRequired":
                head = "Required value"
            case "FieldValueNotSupported":
                head = f"Unsupported value: {_go_value(self.value)}"
            case "FieldValueTooLong":
                head = "Too long"
            case "FieldValueTooMany":
                head = f"Too many: {_go_value(self.value)}"
            case "FieldValueForbidden":
                head = "Forbidden"
            case "FieldValueDuplicate":
                head = f"Duplicate value: {_go_value(self.value)}"
            case "FieldValueTypeInvalid":
                head = f"Invalid value: {_go_value(self.value)}"
            case _:
                head = f"Invalid value: {_go_value(self.value)}"
        return f"{head}: {self.detail}" if self.detail else head

    def message(self) -> str:
        return f"{self.field}: {self.body()}" if self.field else self.body()

    def cause(self) -> JSON:
        cause: JSON = {"reason": self.type, "message": self.body()}
        if self.field:
            cause["field"] = self.field
        return cause


@dataclass
class ApiError(Exception):
    """A failed request; `status()` is the body the server answers with."""

    code: int
    message: str
    reason: str = ""
    details: JSON = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code} {self.reason or _REASONS.get(self.code, '')}: {self.message}"

    def status(self) -> JSON:
        body: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason or _REASONS.get(self.code, "Unknown"),
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _details(group: str, kind: str, name: str) -> JSON:
    details: JSON = {"name": name, "kind": kind}
    if group:
        details["group"] = group
    return details


def not_found(group_resource: str, group: str, plural: str, name: str) -> ApiError:
    return ApiError(404, f'{group_resource} "{name}" not found', "NotFound", _details(group, plural, name))


def already_exists(group_resource: str, group: str, plural: str, name: str) -> ApiError:
    return ApiError(
        409, f'{group_resource} "{name}" already exists', "AlreadyExists", _details(group, plural, name)
    )


def conflict(group_resource: str, group: str, plural: str, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {group_resource} "{name}": {why}',
        "Conflict",
        _details(group, plural, name),
    )


STALE = "the object has been modified; please apply your changes to the latest version and try again"


def invalid(group: str, kind: str, name: str, errors: list[FieldError]) -> ApiError:
    """422 Invalid, with the message apimachinery's `NewInvalid` builds from the field errors."""
    qualified = f"{kind}.{group}" if group else kind
    parts = [e.message() for e in errors]
    joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    details = _details(group, kind, name)
    details["causes"] = [e.cause() for e in errors]
    return ApiError(422, f'{qualified} "{name}" is invalid: {joined}', "Invalid", details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, message, "BadRequest")


def not_found_path() -> ApiError:
    return ApiError(404, "the server could not find the requested resource", "NotFound", {})


def gone(message: str) -> ApiError:
    return ApiError(410, message, "Expired")
