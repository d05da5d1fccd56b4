"""HL7 v2 DTM/DT/TS values → FHIR ``date`` / ``dateTime`` / ``instant`` strings, keeping precision.

``YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]``::

    2024            → 2024
    202401          → 2024-01
    20240105        → 2024-01-05                      (a date: any offset is dropped)
    2024010512      → 2024-01-05T12:00:00+01:00       (FHIR needs seconds and an offset with a time)
    198808181126+0215 → 1988-08-18T11:26:00+02:15
    20240105112633.25-0500 → 2024-01-05T11:26:33.25-05:00

A time without an offset gets ``default_tz`` (Morocco, ``+01:00``, by default).
"""

from __future__ import annotations

import re
import time
from datetime import datetime as _datetime

from .errors import HL7Error

__all__ = ["hl7_datetime_to_fhir", "hl7_now", "format_hl7_datetime"]

_DTM = re.compile(
    r"([0-9]{4})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:([0-9]{2})(?:\.([0-9]{1,9}))?)?)?)?)?)?"
    r"(?:([+-])([0-9]{2})([0-9]{2}))?"
)


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _impossible(location: str) -> HL7Error:
    return HL7Error(102, location, "impossible date/time" + (f" in {location}" if location else ""))


def hl7_datetime_to_fhir(value: str, location: str = "", *, default_tz: str | None = "+01:00") -> str:
    """Convert an HL7 date/time to the FHIR form of the same precision (see the module docstring).

    :param location: the field it comes from (``"PID-7"``), used in the error.
    :param default_tz: the offset given to a time without one (None: leave it without offset).
    :returns: ``""`` for an empty value.
    :raises HL7Error: 102 when the value is not an HL7 date/time or is impossible (20241301,
        20240230, 2500); the error text never contains the value.
    """
    value = value.strip()
    if not value:
        return ""
    m = _DTM.fullmatch(value)
    if m is None:
        raise HL7Error(102, location, "invalid date/time format" + (f" in {location}" if location else "")
                       + ": expected YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]")
    year, month, day, hour, minute, second, fraction, sign, tzh, tzm = m.groups()
    if year == "0000" or (sign is not None and (int(tzh) > 14 or int(tzm) > 59)):
        raise _impossible(location)
    out = year
    if month is None:
        return out
    mo = int(month)
    if not 1 <= mo <= 12:
        raise _impossible(location)
    out = f"{year}-{month}"
    if day is None:
        return out
    if not 1 <= int(day) <= _days_in_month(int(year), mo):
        raise _impossible(location)
    out = f"{out}-{day}"
    if hour is None:
        return out
    if int(hour) > 23 or (minute is not None and int(minute) > 59) or (second is not None and int(second) > 59):
        raise _impossible(location)
    out = f"{out}T{hour}:{minute or '00'}:{second or '00'}"
    if fraction:
        out = f"{out}.{fraction}"
    if sign is not None:
        return f"{out}{sign}{tzh}:{tzm}"
    return out + default_tz if default_tz else out


def format_hl7_datetime(moment: _datetime) -> str:
    """``YYYYMMDDHHMMSS+ZZZZ`` for an aware datetime (naive: local time)."""
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.strftime("%Y%m%d%H%M%S%z")


_now_cache: tuple[int, str] = (0, "")


def hl7_now() -> str:
    """The current local time as ``YYYYMMDDHHMMSS+ZZZZ`` (cached for the current second)."""
    global _now_cache
    second = int(time.time())
    if _now_cache[0] != second:
        _now_cache = (second, _datetime.fromtimestamp(second).astimezone().strftime("%Y%m%d%H%M%S%z"))
    return _now_cache[1]
