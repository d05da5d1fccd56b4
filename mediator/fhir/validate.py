"""Validate a FHIR R4 Bundle we produced, before it leaves for the shared record.

Every entry resource is checked by :mod:`mediator.fhir.fastcheck` against the schema compiled once
from the ``fhir.resources.R4B`` models (R4B = R4 for the resources we produce); ``strict=True`` (or
:func:`validate_bundle_reference`) validates with the ``fhir.resources`` models themselves, the
reference the fast checker is tested against. Every reference inside the bundle must resolve to an
entry: its ``fullUrl`` or its ``Type/id``. Conditional references (``Patient?identifier=...``) and
contained references (``#x``) are left to the server. Messages name the element, never a value.
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from mediator.fhir.fastcheck import check_resource, render
from mediator.fhir.schema import resource_schema

_BUNDLE_TYPES = {"document", "message", "transaction", "transaction-response", "batch", "batch-response",
                 "history", "searchset", "collection"}
_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"}


def _loc(parts: tuple[Any, ...]) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif not (isinstance(p, str) and p.startswith("function-")):
            out += f".{p}"
    return out


def _model(resource_type: str) -> Any | None:
    try:
        return get_fhir_model_class(resource_type)
    except (KeyError, ValueError, AttributeError):
        return None


def _references(value: Any, path: str, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "reference" and isinstance(v, str):
                out.append((f"{path}.reference", v))
            elif isinstance(v, (dict, list)):
                _references(v, f"{path}.{k}", out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _references(v, f"{path}[{i}]", out)


def _reference_errors(model: Any, resource: dict[str, Any], rwhere: str) -> list[str]:
    """Problems found by ``fhir.resources`` ``model_validate`` (the slow reference)."""
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        return [f"{rwhere}{_loc(tuple(err['loc']))}: {err['msg']}"
                for err in exc.errors(include_input=False, include_url=False)]
    except (KeyError, AttributeError, TypeError, ValueError) as exc:  # fhir.resources bugs on some bad input
        return [f"{rwhere}: rejected by fhir.resources ({type(exc).__name__})"]
    return []


def validate_bundle_reference(bundle: dict[str, Any]) -> list[str]:
    """:func:`validate_bundle` with ``strict=True``: entries validated by the ``fhir.resources`` models."""
    return validate_bundle(bundle, strict=True)


def validate_bundle(bundle: dict[str, Any], *, strict: bool = False) -> list[str]:
    """Problems found in ``bundle`` (``[]`` when valid): element errors and unresolved references.

    ``strict=True`` validates the entry resources with ``fhir.resources`` (about ten times slower)
    instead of the compiled fast checker.
    """
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        return ["Bundle: not a Bundle resource"]
    errors: list[str] = []
    if bundle.get("type") not in _BUNDLE_TYPES:
        errors.append("Bundle.type: missing or not a Bundle type code")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        return [*errors, "Bundle.entry: must be a list"]
    targets: set[str] = set()
    refs: list[tuple[str, str]] = []
    fast_refs: list[tuple[Any, str]] = []  # (lazy path of the Reference, value) from the fast checker
    seen_urls: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"Bundle.entry[{i}]"
        if not isinstance(entry, dict):
            errors.append(f"{where}: must be an object")
            continue
        full_url = entry.get("fullUrl")
        if full_url is not None:
            if full_url in seen_urls:
                errors.append(f"{where}.fullUrl: used by two entries")
            seen_urls.add(full_url)
            targets.add(full_url)
        request = entry.get("request")
        if bundle.get("type") in ("transaction", "batch") and (
                not isinstance(request, dict) or request.get("method") not in _METHODS
                or not request.get("url")):
            errors.append(f"{where}.request: a transaction entry needs request.method and request.url")
        resource = entry.get("resource")
        if resource is None:
            continue
        rtype = resource.get("resourceType") if isinstance(resource, dict) else None
        model = (_model(rtype) if strict else resource_schema(rtype)) if isinstance(rtype, str) else None
        if model is None:
            errors.append(f"{where}.resource: unknown resourceType")
            continue
        rwhere = f"{where}.resource({rtype})"
        if strict:
            errors.extend(_reference_errors(model, resource, rwhere))
        else:
            errors.extend(check_resource(resource, rwhere, fast_refs))
        rid = resource.get("id")
        if isinstance(rid, str):
            targets.add(f"{rtype}/{rid}")
            if isinstance(full_url, str) and full_url.endswith(f"/{rtype}/{rid}"):
                targets.add(full_url)
        if strict:
            _references(resource, rwhere, refs)
    refs.extend((f"{render(where)}.reference", ref) for where, ref in fast_refs if ref not in targets)
    for where, ref in refs:
        if ref.startswith("#") or "?" in ref:
            continue
        if ref not in targets:
            errors.append(f"{where}: does not resolve to an entry of the bundle")
    return errors
