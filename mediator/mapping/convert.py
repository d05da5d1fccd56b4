"""Value conversions (``as:``), also chosen automatically from the FHIR element type."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from mediator.mapping.model import RuleInfo, Scope

Converter = Callable[[str, Scope, RuleInfo, str | None], Any]

_INT = re.compile(r"^[+-]?\d+$")
_DEC = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_TRUE = {"Y", "YES", "T", "TRUE", "1"}
_FALSE = {"N", "NO", "F", "FALSE", "0"}


def _hl7_dt() -> Callable[..., str]:
    from mediator.hl7v2 import hl7_datetime_to_fhir

    return hl7_datetime_to_fhir


_DT_CACHE: dict[tuple[str, str | None], str] = {}  # (value, default offset) -> FHIR form


def to_datetime(value: str, scope: Scope, info: RuleInfo, src: str | None) -> str:
    # the same times come back in every segment of a message (OBX-14, OBR-7, SPM-17) and message
    # after message: the conversion is pure, so converted values are remembered (errors are not)
    tz = scope.ctx.default_tz
    key = (value, tz)
    found = _DT_CACHE.get(key)
    if found is not None:
        return found
    try:
        found = _hl7_dt()(value, src or "", default_tz=tz)
    except Exception:
        raise info.fail("not a valid HL7 date/time", src) from None
    if len(_DT_CACHE) >= 8192:
        _DT_CACHE.clear()
    _DT_CACHE[key] = found
    return found


def to_date(value: str, scope: Scope, info: RuleInfo, src: str | None) -> str:
    return to_datetime(value, scope, info, src).split("T", 1)[0]


def to_instant(value: str, scope: Scope, info: RuleInfo, src: str | None) -> str | None:
    """A FHIR instant needs a time: a value with only a date (or less) gives nothing."""
    v = to_datetime(value, scope, info, src)
    return v if "T" in v else None


def to_integer(value: str, scope: Scope, info: RuleInfo, src: str | None) -> int:
    if not _INT.match(value):
        raise info.fail("not an integer", src)
    return int(value)


def to_decimal(value: str, scope: Scope, info: RuleInfo, src: str | None) -> int | float:
    """A decimal; a decimal comma (``1,26``, as French-speaking labs write it) is accepted."""
    value = value.strip()
    if "," in value and "." not in value:
        value = value.replace(",", ".")
    if not _DEC.match(value):
        raise info.fail("not a decimal number", src)
    return int(value) if _INT.match(value) else float(value)


def to_boolean(value: str, scope: Scope, info: RuleInfo, src: str | None) -> bool:
    v = value.upper()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise info.fail("not a boolean (Y/N)", src)


def to_string(value: str, scope: Scope, info: RuleInfo, src: str | None) -> str:
    return value


CONVERTERS: dict[str, Converter] = {
    "datetime": to_datetime, "date": to_date, "instant": to_instant, "integer": to_integer, "decimal": to_decimal,
    "boolean": to_boolean, "string": to_string,
}

# FHIR primitive type -> default conversion of a text value
BY_FHIR_TYPE: dict[str, str] = {
    "date": "date", "dateTime": "datetime", "instant": "instant", "integer": "integer",
    "positiveInt": "integer", "unsignedInt": "integer", "decimal": "decimal", "boolean": "boolean",
}
