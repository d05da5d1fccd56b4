"""The person record as a source sends it, and the comparison features computed from it once.

:class:`PersonRecord` is what a source system sent (source + local id + demographics), kept
verbatim. :class:`Features` is its normalised form: identifiers checked, names in their comparison
forms (:mod:`mediator.registry.names`), date of birth parsed, quality flags. Features are stored
with the record so that matching never normalises a stored record again.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from mediator.registry.identifiers import PERSON_KINDS, Identifier, IdentifierRules
from mediator.registry.names import NameForms, fold, is_arabic, name_forms, strip_controls

__all__ = ["Features", "PersonRecord", "features_of", "parse_birth_date"]

CSV_FIELDS = ("record_id", "source", "local_id", "cin", "idcs", "ins", "cnss", "family", "given", "family_ar",
              "given_ar", "birth_date", "sex", "phone", "city", "address", "postcode")


@dataclass
class PersonRecord:
    """One person as a source system knows them; every field may be empty."""

    source: str = ""
    local_id: str = ""
    identifiers: dict[str, str] = field(default_factory=dict)  # kind -> value as sent (cin, idcs, ins, cnss)
    family: str = ""
    given: str = ""
    family_ar: str = ""
    given_ar: str = ""
    birth_date: str = ""
    sex: str = ""
    phone: str = ""
    city: str = ""
    address: str = ""   # street line(s): number, street, building
    postcode: str = ""

    def to_json(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["identifiers"] = dict(self.identifiers)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PersonRecord:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)

    @classmethod
    def from_row(cls, row: dict[str, str]) -> PersonRecord:
        """A row of the ``registry link`` CSV (missing columns are empty)."""
        def g(k: str) -> str:
            v = row.get(k)
            return v.strip() if isinstance(v, str) else ""
        ids = {k: g(k) for k in PERSON_KINDS if g(k)}
        return cls(source=g("source"), local_id=g("local_id") or g("record_id"), identifiers=ids,
                   family=g("family"), given=g("given"), family_ar=g("family_ar"), given_ar=g("given_ar"),
                   birth_date=g("birth_date"), sex=g("sex"), phone=g("phone"), city=g("city"),
                   address=g("address"), postcode=g("postcode"))


@dataclass(slots=True)
class Features:
    """Comparison features of one record (stored as a compact JSON list)."""

    ids: list[Identifier] = field(default_factory=list)
    family: NameForms = field(default_factory=NameForms)
    given: NameForms = field(default_factory=NameForms)
    dob: tuple[int, int, int] | None = None
    sex: str = ""
    phone: str = ""
    city: str = ""
    source: str = ""
    flags: list[str] = field(default_factory=list)
    address: str = ""   # folded, one space between words
    postcode: str = ""

    def to_json(self) -> list[Any]:
        out = [[i.to_json() for i in self.ids], self.family.as_list(), self.given.as_list(),
               list(self.dob) if self.dob else None, self.sex, self.phone, self.city, self.source, self.flags]
        if self.address or self.postcode:
            out += [self.address, self.postcode]
        return out

    @classmethod
    def from_json(cls, v: list[Any]) -> Features:
        dob = v[3]
        return cls([Identifier.from_json(i) for i in v[0]], NameForms.from_list(v[1]), NameForms.from_list(v[2]),
                   (dob[0], dob[1], dob[2]) if dob else None, v[4], v[5], v[6], v[7], v[8],
                   *(v[9:11] if len(v) > 9 else ()))

    @property
    def year(self) -> int | None:
        return self.dob[0] if self.dob else None

    def dob_text(self) -> str:
        return f"{self.dob[0]:04d}-{self.dob[1]:02d}-{self.dob[2]:02d}" if self.dob else ""


_DATE = re.compile(r"^\s*(\d{4})-?(\d{2})-?(\d{2})")
_DATE_FR = re.compile(r"^\s*(\d{1,2})[/.](\d{1,2})[/.](\d{4})\s*$")


def parse_birth_date(text: str, today: dt.date | None = None) -> tuple[int, int, int] | None:
    """``YYYY-MM-DD``, ``YYYYMMDD`` (HL7) or ``DD/MM/YYYY``; ``None`` when impossible or in the future."""
    if not text:
        return None
    m = _DATE.match(text)
    if m:
        y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    else:
        m = _DATE_FR.match(text)
        if not m:
            return None
        d, mo, y = int(m.group(1)), int(m.group(2)), int(m.group(3))
    try:
        date = dt.date(y, mo, d)
    except ValueError:
        return None
    if y < 1880 or date > (today or dt.date.today()):
        return None
    return (y, mo, d)


_SEX = {"m": "M", "male": "M", "h": "M", "homme": "M", "1": "M", "f": "F", "female": "F", "femme": "F", "2": "F",
        "ذكر": "M", "أنثى": "F", "انثى": "F"}


def _phone(text: str) -> str:
    digits = re.sub(r"\D", "", strip_controls(text))
    if digits.startswith("00212"):
        digits = digits[5:]
    elif digits.startswith("212") and len(digits) >= 12:
        digits = digits[3:]
    digits = digits.lstrip("0")
    return digits if len(digits) >= 7 else ""


def features_of(rec: PersonRecord, rules: IdentifierRules) -> Features:
    """Normalise a record; problems become flags (``cin:malformed``, ``birth_date:invalid`` …), never errors."""
    flags: list[str] = []
    ids = []
    for kind, raw in rec.identifiers.items():
        if not raw or not isinstance(raw, str):
            continue
        ident = rules.normalize(kind, raw)
        if not ident.valid:
            flags.append(f"{kind}:malformed")
        ids.append(ident)
    fam_lat, giv_lat = _clean(rec.family), _clean(rec.given)
    fam_ar, giv_ar = _clean(rec.family_ar), _clean(rec.given_ar)
    for name, text in (("family", rec.family), ("given", rec.given), ("family_ar", rec.family_ar),
                       ("given_ar", rec.given_ar)):
        if text and text != strip_controls(text):
            flags.append(f"{name}:control_characters")
    family = name_forms(fam_lat, fam_ar)
    given = name_forms(giv_lat, giv_ar)
    if family.empty and given.empty:
        flags.append("name:empty")
    dob = parse_birth_date(rec.birth_date)
    if rec.birth_date and dob is None:
        flags.append("birth_date:invalid")
    sex = _SEX.get(strip_controls(rec.sex).strip().lower(), "")
    if rec.sex and not sex and rec.sex.strip().lower() not in ("u", "o", "unknown", "other", "a"):
        flags.append("sex:invalid")
    city = fold(rec.city) if rec.city and not is_arabic(rec.city) else strip_controls(rec.city or "").strip()
    address = _address(rec.address) if isinstance(rec.address, str) and rec.address else ""
    postcode = "".join(ch for ch in strip_controls(rec.postcode).upper() if ch.isalnum()) \
        if isinstance(rec.postcode, str) else ""
    return Features(ids=ids, family=family, given=given, dob=dob, sex=sex, phone=_phone(rec.phone or ""),
                    city=city.replace(" ", ""), source=rec.source, flags=flags, address=address, postcode=postcode)


def _address(text: str) -> str:
    """An address line folded for comparison: numbers kept, words folded (Arabic kept, without controls)."""
    text = strip_controls(text)
    if is_arabic(text):
        return " ".join(text.split())
    return " ".join(w for part in re.split(r"(\d+)", text) for w in (part.split() if part.isdigit() else [fold(part)])
                    if w)


def _clean(text: str) -> str:
    return strip_controls(text).strip() if isinstance(text, str) else ""
