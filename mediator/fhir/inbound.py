"""Checks on FHIR JSON received from outside: safe parsing, resource types, model validation.

:func:`parse_fhir_json` is cheap and safe for untrusted bytes (size and nesting bounded *before*
the JSON parser sees the data: some orjson versions crash on pathologically deep input) and only
looks at the envelope: object, known R4 ``resourceType``, Bundle ``type``. :func:`check_resource`
runs the full ``fhir.resources.R4B`` model validation and turns pydantic errors into
OperationOutcome issues with FHIRPath-like expressions (``Bundle.entry[2].resource.birthDate``).
"""

from __future__ import annotations

import pkgutil
from array import array
from functools import lru_cache
from itertools import accumulate
from typing import Any

import orjson
import structlog
from pydantic import ValidationError

from mediator.fhir.outcome import Issue, OutcomeError

__all__ = [
    "BUNDLE_TYPES_ACCEPTED",
    "FhirInputError",
    "check_resource",
    "is_resource_type",
    "json_depth",
    "parse_fhir_json",
]

log = structlog.get_logger(__name__)

MAX_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 64

BUNDLE_TYPES_ACCEPTED = frozenset({"transaction", "batch", "message", "collection", "document"})

# Keep only quotes and brackets; map '[' and '{' to +1, ']' and '}' to -1 (as signed bytes).
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_BRACKETS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


class FhirInputError(OutcomeError):
    """Invalid FHIR input: carries the HTTP status, the IssueType code and a diagnostic."""


def json_depth(data: bytes) -> int:
    """Maximum nesting depth of arrays/objects in JSON text, without parsing or recursion.

    String literals are removed first so brackets inside strings are not counted. Works on
    malformed input too (the result is then only an estimate; the parser will reject it anyway).
    """
    if data.count(b"[") + data.count(b"{") == 0:
        return 0
    if b"\\" in data:  # escaped backslashes, then escaped quotes: what is left cannot end a string
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = data.translate(None, _NOT_STRUCTURE)
    if b'"' in structure:  # every other piece between quotes is a string's content
        structure = b"".join(structure.split(b'"')[::2])
    deltas = structure.translate(_BRACKETS)
    if not deltas:
        return 0
    return max(accumulate(array("b", deltas)))


@lru_cache(maxsize=1)
def _r4b_modules() -> frozenset[str]:
    import fhir.resources.R4B as r4b

    return frozenset(m.name for m in pkgutil.iter_modules(r4b.__path__))


@lru_cache(maxsize=512)
def is_resource_type(name: str) -> bool:
    """True if ``name`` is a FHIR resource type known to ``fhir.resources.R4B`` (not a datatype)."""
    if not name or not name[0].isupper() or not name.isalnum() or name.lower() not in _r4b_modules():
        return False
    from fhir.resources.R4B import get_fhir_model_class
    from fhir.resources.R4B.resource import Resource

    try:
        cls = get_fhir_model_class(name)
    except (ValueError, ImportError):
        return False
    return isinstance(cls, type) and issubclass(cls, Resource)


def parse_fhir_json(data: bytes, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """Parse untrusted FHIR JSON into a dict, checking the envelope.

    Raises :class:`FhirInputError`: 413 ``too-costly`` over ``max_bytes``; 400 ``invalid`` for
    malformed JSON (with position), nesting deeper than ``max_depth``, a non-object, a missing
    ``resourceType`` or a Bundle ``type`` that cannot be received; 422 ``not-supported`` for a
    ``resourceType`` that is not an R4 resource.
    """
    if len(data) > max_bytes:
        raise FhirInputError(413, "too-costly", f"body of {len(data)} bytes exceeds the {max_bytes} limit")
    depth = json_depth(data)
    if depth > max_depth:
        raise FhirInputError(400, "invalid", f"JSON too deeply nested (more than {max_depth} levels)")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        msg = str(exc)
        if "recursion" in msg.lower():
            raise FhirInputError(400, "invalid", "JSON too deeply nested") from None
        raise FhirInputError(400, "invalid", f"malformed JSON: {msg}") from None
    if not isinstance(doc, dict):
        raise FhirInputError(400, "invalid", f"expected a JSON object, got {type(doc).__name__}")
    rtype = doc.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        raise FhirInputError(400, "required", "resourceType is missing", "resourceType")
    if not is_resource_type(rtype):
        raise FhirInputError(
            422,
            "not-supported",
            f"unknown resource type {rtype[:64]!r} (not a FHIR R4 resource)",
            "resourceType",
        )
    if rtype == "Bundle":
        btype = doc.get("type")
        if btype not in BUNDLE_TYPES_ACCEPTED:
            allowed = ", ".join(sorted(BUNDLE_TYPES_ACCEPTED))
            raise FhirInputError(
                400,
                "invalid",
                f"Bundle.type {str(btype)[:64]!r} not accepted (expected one of {allowed})",
                "Bundle.type",
            )
    return doc


def _fhirpath(prefix: str, loc: tuple[int | str, ...]) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part != "__root__":
            out += f".{part}"
    return out


def _issues_from_validation(exc: ValidationError, prefix: str) -> list[Issue]:
    issues: list[Issue] = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = tuple(err.get("loc", ()))
        msg = str(err.get("msg", "invalid value"))
        code = (
            "required"
            if "required" in msg.lower() or err.get("type") == "missing"
            else ("structure" if err.get("type") == "extra_forbidden" else "value")
        )
        issues.append(("error", code, msg, _fhirpath(prefix, loc)))
    return issues


def _validate_one(resource: Any, prefix: str) -> list[Issue]:
    if not isinstance(resource, dict):
        return [("error", "structure", "resource must be a JSON object", prefix)]
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not is_resource_type(rtype):
        return [
            ("error", "not-supported", f"unknown resource type {str(rtype)[:64]!r}", f"{prefix}.resourceType")
        ]
    from fhir.resources.R4B import get_fhir_model_class

    try:
        get_fhir_model_class(rtype).model_validate(resource)
    except ValidationError as exc:
        return _issues_from_validation(exc, prefix)
    except (ValueError, TypeError) as exc:  # defensive: validators raising outside pydantic
        return [("error", "value", str(exc)[:500], prefix)]
    return []


def check_resource(resource: dict[str, Any]) -> list[Issue]:
    """Validate a resource with its ``fhir.resources.R4B`` model; return issues (empty = valid).

    A Bundle is checked shell first (without entry resources) and then entry by entry, so each
    issue names ``Bundle.entry[i].resource...``.
    """
    rtype = resource.get("resourceType") if isinstance(resource, dict) else None
    if rtype != "Bundle":
        return _validate_one(resource, str(rtype or "Resource"))
    entries = resource.get("entry")
    if entries is not None and not isinstance(entries, list):
        return [("error", "structure", "Bundle.entry must be an array", "Bundle.entry")]
    entries = entries or []
    shell = dict(resource)
    shell["entry"] = [
        {k: v for k, v in e.items() if k != "resource"} if isinstance(e, dict) else e for e in entries
    ] or None
    if shell["entry"] is None:
        del shell["entry"]
    issues = _validate_one(shell, "Bundle")
    for i, entry in enumerate(entries):
        if isinstance(entry, dict) and "resource" in entry:
            issues.extend(_validate_one(entry["resource"], f"Bundle.entry[{i}].resource"))
    if issues:
        log.debug("fhir.check_resource.invalid", resource_type=rtype, issues=len(issues))
    return issues
