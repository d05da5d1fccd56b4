"""Person and professional identifiers: normalisation, format checks, comparison.

A well-formed national identifier (CIN, IDCS, INS, CNSS, INPE) is strong evidence; a malformed one
is stored verbatim and flagged but only ever counts as weak evidence, so that a typing slip in a
hospital system cannot merge two people. A one-edit difference between two well-formed values
(a substitution, insertion, deletion or swap of adjacent characters) is evidence of a typo, never
proof of identity.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from rapidfuzz.distance import OSA

from mediator.registry.names import strip_controls

__all__ = ["DEFAULT_FORMATS", "Identifier", "IdentifierRules", "compare_values"]

#: kind -> regular expression a normalised value must match in full.
DEFAULT_FORMATS: dict[str, str] = {
    "cin": r"[A-Z]{1,2}[0-9]{3,7}",   # CNIE: 1–2 letters and digits (BK245871)
    "idcs": r"[0-9]{10}",             # RNP civil/social digital id
    "ins": r"[0-9A-Z]{6,24}",         # national health identifier: format not public, configurable
    "cnss": r"[0-9]{6,12}",           # CNSS immatriculation
    "inpe": r"[0-9]{5,12}",           # ANAM professional/establishment id
}

#: kinds that identify a person on their own when well formed (``ipp`` is local to a facility).
PERSON_KINDS = ("cin", "idcs", "ins", "cnss")

_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")
_SEPARATORS = re.compile(r"[\s\-./_]+")


class Identifier(NamedTuple):
    """One identifier as received (``raw``) and normalised (``value``)."""

    kind: str
    value: str
    raw: str
    valid: bool

    def to_json(self) -> list[object]:
        return [self.kind, self.value, self.raw, self.valid]

    @classmethod
    def from_json(cls, v: list[Any]) -> Identifier:
        return cls(v[0], v[1], v[2], bool(v[3]))


@dataclass
class IdentifierRules:
    """Format rules per identifier kind (extend or override with ``formats``)."""

    formats: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        merged = {**DEFAULT_FORMATS, **dict(self.formats)}
        self._rx = {k: re.compile(v) for k, v in merged.items()}

    def normalize(self, kind: str, raw: str) -> Identifier:
        """Upper case, ASCII digits, separators removed; ``valid`` from the kind's format.

        Kinds without a format (``ipp``, local numbers) are valid when not empty.
        """
        raw = raw if isinstance(raw, str) else str(raw)
        value = _SEPARATORS.sub("", strip_controls(raw).translate(_DIGITS)).upper()
        rx = self._rx.get(kind)
        # kinds without a format (ipp, local numbers) only need to be printable and not empty
        free = bool(value) and value.isprintable() and len(value) <= 64
        valid = bool(rx.fullmatch(value)) if rx is not None else free
        return Identifier(kind, value, raw, valid)

    def is_valid(self, kind: str, raw: str) -> bool:
        return self.normalize(kind, raw).valid


def compare_values(a: str, b: str) -> str:
    """``"exact"``, ``"near"`` (one edit, adjacent swaps included) or ``"differ"``."""
    if a == b:
        return "exact"
    if abs(len(a) - len(b)) <= 1 and min(len(a), len(b)) >= 5 and OSA.distance(a, b, score_cutoff=1) <= 1:
        return "near"
    return "differ"
