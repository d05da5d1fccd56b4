"""FHIR R4 element lookup for the mapping compiler, read from the ``fhir.resources.R4B`` models.

The compiler checks every element name of a mapping file against the model of its parent type and
learns whether the element repeats and which type it has (to convert values automatically and to
refuse a plain value where an object is expected). Results are cached per class.
"""

from __future__ import annotations

import importlib
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

# fhir.resources primitive annotation name -> FHIR primitive type name
_PRIMITIVES = {
    "Date": "date", "DateTime": "dateTime", "Instant": "instant", "Time": "time",
    "Integer": "integer", "PositiveInt": "positiveInt", "UnsignedInt": "unsignedInt",
    "Decimal": "decimal", "Code": "code", "Id": "id", "Uri": "uri", "Url": "url",
    "Canonical": "canonical", "Oid": "oid", "Uuid": "uuid", "Markdown": "markdown",
    "Base64Binary": "base64Binary", "String": "string", "Integer64": "integer64",
}


@dataclass(frozen=True)
class Element:
    """One element of a FHIR type."""

    name: str
    is_list: bool
    type: str  # "HumanName", "Reference", ... or a primitive such as "date", "string", "boolean"
    complex: bool
    model: Any = None  # the pydantic model class of a complex type


def resource_model(resource_type: str) -> Any | None:
    """The R4B model class of a resource type, or None when it is not a FHIR resource."""
    try:
        cls = get_fhir_model_class(resource_type)
    except (KeyError, ValueError, AttributeError):
        return None
    return cls if cls.model_fields.get("resourceType") is not None or _is_resource(cls) else None


def _is_resource(cls: Any) -> bool:
    return any(b.__name__ in ("DomainResource", "Resource") for b in cls.__mro__[1:])


def datatype_model(name: str) -> Any | None:
    """The R4B model class of a complex datatype or backbone element (``HumanName``)."""
    try:
        return get_fhir_model_class(name)
    except (KeyError, ValueError, AttributeError):
        return None


def _element(alias: str, annotation: Any) -> Element:
    is_list = False
    t = annotation
    while True:
        origin = typing.get_origin(t)
        if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
            args = [a for a in typing.get_args(t) if a is not type(None)]
            t = args[0]
        elif origin in (list, typing.List):  # noqa: UP006
            is_list = True
            t = typing.get_args(t)[0]
        else:
            break
    meta = getattr(t, "__metadata__", None)
    if meta:
        return Element(alias, is_list, _PRIMITIVES.get(type(meta[0]).__name__, "string"), False)
    if t is bool:
        return Element(alias, is_list, "boolean", False)
    klass = getattr(t, "_model_klass", None)
    if isinstance(klass, str):
        mod, _, cls_name = klass.rpartition(".")
        model = getattr(importlib.import_module(mod), cls_name)
        return Element(alias, is_list, cls_name, True, model)
    if t in (str,):
        return Element(alias, is_list, "string", False)
    if t in (int,):
        return Element(alias, is_list, "integer", False)
    return Element(alias, is_list, getattr(t, "__name__", "string"), False)


@cache
def elements(model: Any) -> dict[str, Element]:
    """Element name (as written in FHIR JSON) -> :class:`Element` for a model class.

    A single (not repeating) primitive element ``family`` also gets ``_family`` (FHIR JSON's
    primitive extensions: ``name._family.extension`` for the own-name and partner-name parts of a
    surname), an ``Element`` with ``extension`` and ``id``.
    """
    out: dict[str, Element] = {}
    underscored: list[str] = []
    for name, field in model.model_fields.items():
        alias = field.alias or name
        if alias.startswith("_"):
            underscored.append(alias)
            continue
        if name == "fhir_comments" or alias == "resourceType":
            continue
        out[alias] = _element(alias, field.annotation)
    for alias in underscored:  # `_family`: a single primitive's id and extensions
        prim = out.get(alias[1:])
        if prim is not None and not prim.complex and not prim.is_list:
            out[alias] = Element(alias, False, "Element", True, get_fhir_model_class("Element"))
    return out
