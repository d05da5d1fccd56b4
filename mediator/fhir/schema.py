"""A plain dict-based schema for FHIR R4 JSON, compiled from the ``fhir.resources.R4B`` model metadata.

Nothing here is written per resource: every type is derived, lazily and once, from the pydantic
``model_fields`` of its R4B model class (aliases give the JSON names, ``json_schema_extra`` gives
``element_required`` and ``one_of_many``, the annotations give cardinality and types). Primitive checks
reuse the regexes and bounds declared by ``fhir_core.types``.

A compiled :class:`TypeSchema` maps each JSON element name to an :data:`Spec` tuple
``(is_list, kind, target, choice_group, nullable_items)`` where ``kind`` is :data:`PRIMITIVE` (``target``
is a checker returning a problem or ``None``), :data:`COMPLEX` (``target`` is the element's
:class:`TypeSchema`) or :data:`RESOURCE` (any resource, dispatched on ``resourceType``; ``target`` is
``None``).
"""

from __future__ import annotations

import binascii
import datetime
import re
import types
import typing
import uuid
from collections.abc import Callable
from typing import Any

from annotated_types import Ge, Le, MaxLen, MinLen
from fhir.resources.R4B import get_fhir_model_class
from fhir_core import types as fct
from fhir_core.constraints import FHIR_PRIMITIVES_MAPS
from fhir_core.fhirabstractmodel import FHIR_COMMENTS_FIELD_NAME, FHIRAbstractModel
from fhir_core.types import FhirBase, FhirElementOrResourceBase

PRIMITIVE = 0
COMPLEX = 1
RESOURCE = 2

Checker = Callable[[Any], "str | None"]
Spec = tuple[bool, int, Any, "str | None", bool]

_NONE = type(None)


class TypeSchema:
    """Compiled schema of one FHIR type (resource, datatype or BackboneElement); built on first use."""

    __slots__ = ("name", "model", "resource_type", "elements", "required", "required_choices")

    def __init__(self, name: str, model: type[FHIRAbstractModel]) -> None:
        self.name = name
        self.model = model
        #: the expected ``resourceType`` for resources, ``None`` for datatypes and backbone elements
        self.resource_type: str | None = name if model.has_resource_base() else None
        self.elements: dict[str, Spec] | None = None
        #: ``(json name, primitive-extension sibling or None)`` of each required element
        self.required: tuple[tuple[str, str | None], ...] = ()
        #: the ``group`` of each required choice ``group[x]``
        self.required_choices: tuple[str, ...] = ()

    def build(self) -> TypeSchema:
        """Compile the element table from the model's fields (idempotent)."""
        if self.elements is not None:
            return self
        elements: dict[str, Spec] = {}
        required: list[tuple[str, str | None]] = []
        choices: list[str] = []
        choice_required: dict[str, bool] = {}
        fields = self.model.model_fields
        for field_name, info in fields.items():
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            if field_name == FHIR_COMMENTS_FIELD_NAME:
                continue  # a DSTU2 leftover of fhir.resources, not an element of FHIR R4 JSON
            json_name = info.alias or field_name
            is_list, kind, target, nullable = _compile_annotation(info.annotation, f"{self.name}.{json_name}")
            group = extra.get("one_of_many")
            if isinstance(group, str):
                if group not in choices:
                    choices.append(group)
                choice_required[group] = choice_required.get(group, False) or extra.get("one_of_many_required") is True
            elements[json_name] = (is_list, kind, target, group if isinstance(group, str) else None, nullable)
            if info.is_required() or extra.get("element_required") is True:
                ext = fields.get(f"{field_name}__ext")
                required.append((json_name, ext.alias if ext is not None and ext.alias else None))
        self.required = tuple(required)
        self.required_choices = tuple(g for g in choices if choice_required[g])
        self.elements = elements
        return self


_CACHE: dict[type, TypeSchema] = {}


def schema_for_model(model: type[FHIRAbstractModel]) -> TypeSchema:
    """The (lazily compiled) schema of an R4B model class; the element table is built on first use."""
    ts = _CACHE.get(model)
    if ts is None:
        ts = _CACHE[model] = TypeSchema(model.get_resource_type(), model)
    return ts


_RESOURCE_CACHE: dict[str, TypeSchema | None] = {}


def resource_schema(resource_type: str) -> TypeSchema | None:
    """The compiled schema of a concrete resource type, or ``None`` if it is not one (unknown or abstract)."""
    try:
        return _RESOURCE_CACHE[resource_type]
    except KeyError:
        pass
    ts: TypeSchema | None = None
    if resource_type not in ("Resource", "DomainResource") and resource_type.isalpha():
        try:
            model = get_fhir_model_class(resource_type)
        except (ValueError, KeyError, AttributeError, ImportError):
            model = None
        if model is not None and model.has_resource_base() and model.get_resource_type() == resource_type:
            ts = schema_for_model(model).build()
    _RESOURCE_CACHE[resource_type] = ts
    return ts


# ---------------------------------------------------------------------------------------------------------------
# annotations -> (is_list, kind, target, nullable items)


def _strip_optional(ann: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(ann)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(ann) if a is not _NONE]
        if len(args) != len(typing.get_args(ann)) and len(args) == 1:
            return args[0], True
    return ann, False


def _compile_annotation(ann: Any, where: str) -> tuple[bool, int, Any, bool]:
    ann, _ = _strip_optional(ann)
    is_list = typing.get_origin(ann) is list
    nullable = False
    if is_list:
        (ann,) = typing.get_args(ann)
        ann, nullable = _strip_optional(ann)
    if isinstance(ann, type) and issubclass(ann, FhirBase):
        model = ann.get_model_klass()
        if issubclass(ann, FhirElementOrResourceBase) and model.__name__ == "Resource":
            return is_list, RESOURCE, None, nullable
        return is_list, COMPLEX, schema_for_model(model), nullable
    return is_list, PRIMITIVE, primitive_checker(ann, where), nullable


# ---------------------------------------------------------------------------------------------------------------
# primitives


def _fhir_primitive(ann: Any) -> tuple[str, Any, tuple[Any, ...]]:
    """FHIR primitive name, the fhir_core marker instance and the annotation metadata of ``ann``."""
    name = FHIR_PRIMITIVES_MAPS.get(ann) if _hashable(ann) else None
    metadata: tuple[Any, ...] = tuple(getattr(ann, "__metadata__", ()))
    marker = None
    for meta in metadata:
        if type(meta) in FHIR_PRIMITIVES_MAPS:
            marker = meta
            name = name or FHIR_PRIMITIVES_MAPS[type(meta)]
    if name is None and typing.get_origin(ann) is typing.Annotated and typing.get_args(ann)[0] is uuid.UUID:
        name = "uuid"
    if name is None:
        raise TypeError(f"not a FHIR primitive annotation: {ann!r}")
    return name, marker, metadata


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _constraints(marker: Any) -> tuple[str | None, int | None, int | None, int | None, int | None]:
    """``(pattern, min_len, max_len, ge, le)`` declared by a ``GroupedMetadata`` marker of fhir_core."""
    pattern = min_len = max_len = ge = le = None
    if marker is not None and hasattr(marker, "__iter__"):
        for meta in marker:
            if isinstance(meta, MinLen):
                min_len = meta.min_length
            elif isinstance(meta, MaxLen):
                max_len = meta.max_length
            elif isinstance(meta, Ge):
                ge = int(meta.ge)  # type: ignore[call-overload]
            elif isinstance(meta, Le):
                le = int(meta.le)  # type: ignore[call-overload]
            elif getattr(meta, "pattern", None):
                pattern = meta.pattern
    return pattern, min_len, max_len, ge, le


def _search_regex(pattern: str) -> re.Pattern[str]:
    """A Python regex with pydantic's (Rust regex) ``is_match`` semantics: search, ``$`` = end of text."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


_ANY_NON_BLANK = re.compile(next(iter(fct.String())).pattern)  # type: ignore[attr-defined]


def _string_checker(label: str, pattern: str | None, min_len: int | None, max_len: int | None) -> Checker:
    regex = _search_regex(pattern) if pattern else None
    problem = f"not a valid {label}"
    if regex is None or regex.search("") is not None:
        # the pattern matches the empty string, so a search succeeds on any string (uri: ``\S*``, markdown)
        regex = None
    if regex is not None and regex.pattern == _ANY_NON_BLANK.pattern and min_len is None and max_len is None:
        # fhir_core's ``string`` pattern can only fail on a string made of whitespace: skip it otherwise
        search = regex.search

        def check_string(value: Any) -> str | None:
            if type(value) is not str:
                return "expected a string"
            if not value:
                return "empty string"
            if value.isspace() and search(value) is None:
                return problem
            return None

        return check_string
    rx = regex.search if regex is not None else None

    def check(value: Any) -> str | None:
        if type(value) is not str:
            return "expected a string"
        if not value:
            return "empty string"
        if rx is not None and rx(value) is None:
            return problem
        if (min_len is not None and len(value) < min_len) or (max_len is not None and len(value) > max_len):
            return "invalid length"
        return None

    return check


def _date_part_ok(value: str) -> bool:
    if len(value) < 10:
        return True  # partial date: month range already checked by the regex
    try:
        datetime.date.fromisoformat(value[:10])
    except ValueError:
        return False
    return True


def _temporal_checker(label: str, pattern: re.Pattern[str]) -> Checker:
    fullmatch = pattern.fullmatch
    problem = f"not a valid {label}"

    def check(value: Any) -> str | None:
        if type(value) is not str:
            return "expected a string"
        if not value:
            return "empty string"
        if fullmatch(value) is None or not _date_part_ok(value):
            return problem
        return None

    return check


def _time_checker(pattern: re.Pattern[str]) -> Checker:
    fullmatch = pattern.fullmatch

    def check(value: Any) -> str | None:
        if type(value) is not str:
            return "expected a string"
        if not value:
            return "empty string"
        return None if fullmatch(value) is not None else "not a valid time"

    return check


def _integer_checker(label: str, ge: int | None, le: int | None) -> Checker:
    def check(value: Any) -> str | None:
        if type(value) is not int:
            return "expected an integer"
        if (ge is not None and value < ge) or (le is not None and value > le):
            return f"out of range for {label}"
        return None

    return check


def _decimal_checker(pattern: re.Pattern[str]) -> Checker:
    fullmatch = pattern.fullmatch

    def check(value: Any) -> str | None:
        kind = type(value)
        if kind is not int and kind is not float:
            return "expected a number"
        return None if fullmatch(str(value)) is not None else "not a valid decimal"

    return check


def _check_boolean(value: Any) -> str | None:
    return None if type(value) is bool else "expected a boolean"


def _check_base64(value: Any) -> str | None:
    if type(value) is not str:
        return "expected a string"
    if not value:
        return "empty string"
    try:
        binascii.a2b_base64(value)
    except (binascii.Error, ValueError):
        return "not valid base64Binary"
    return None


# fhir_core types ``uuid`` as pydantic's UUID4 (no regex of its own); this is the FHIR R4 regex for ``uuid``
_UUID = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _check_uuid(value: Any) -> str | None:
    if type(value) is not str:
        return "expected a string"
    if not value:
        return "empty string"
    return None if _UUID.fullmatch(value) is not None else "not a valid uuid"


_CHECKERS: dict[Any, Checker] = {}
#: FHIR primitive type name of each compiled checker (for tools and tests)
PRIMITIVE_NAMES: dict[Checker, str] = {}


def primitive_checker(ann: Any, where: str = "?") -> Checker:
    """The checker of one primitive annotation (cached per annotation)."""
    key = ann if _hashable(ann) else repr(ann)
    found = _CHECKERS.get(key)
    if found is not None:
        return found
    try:
        name, marker, _ = _fhir_primitive(ann)
    except TypeError as exc:
        raise TypeError(f"{where}: {exc}") from None
    checker: Checker
    if name == "boolean":
        checker = _check_boolean
    elif name in ("integer", "integer64", "unsignedInt", "positiveInt"):
        _, _, _, ge, le = _constraints(marker)
        checker = _integer_checker(name, ge, le)
    elif name == "decimal":
        checker = _decimal_checker(fct.Decimal.pattern)
    elif name == "date":
        checker = _temporal_checker(name, fct.Date.pattern)
    elif name == "dateTime":
        checker = _temporal_checker(name, fct.DateTime.pattern)
    elif name == "instant":
        checker = _temporal_checker(name, fct.Instant.pattern)
    elif name == "time":
        checker = _time_checker(fct.Time.pattern)
    elif name == "base64Binary":
        checker = _check_base64
    elif name == "uuid":
        checker = _check_uuid
    else:  # string, code, id, uri, url, canonical, oid, markdown, xhtml
        pattern, min_len, max_len, _, _ = _constraints(marker)
        checker = _string_checker(name, pattern, min_len, max_len)
    _CHECKERS[key] = checker
    PRIMITIVE_NAMES[checker] = name
    return checker
