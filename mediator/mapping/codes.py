"""Code maps: local or HL7 table codes -> FHIR codes, each in its own YAML file.

```yaml
codemap: administrative_gender
description: HL7 table 0001 -> FHIR AdministrativeGender
system_in: http://terminology.hl7.org/CodeSystem/v2-0001   # documentation
system_out: http://hl7.org/fhir/administrative-gender      # documentation
strict: false          # true: an unknown code is a MappingError
keep_unmapped: false   # true: an unknown code passes through unchanged
case_sensitive: false
default: unknown       # the result for an unknown code (when not strict / keep_unmapped)
entries: {M: male, F: female, O: other, U: unknown}
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mediator.yamlfile import Locations, YamlFileError

KEYS = {"codemap", "description", "system_in", "system_out", "strict", "keep_unmapped",
         "case_sensitive", "default", "entries"}


@dataclass
class CodeMap:
    """A compiled code map."""

    name: str
    entries: dict[str, str]
    strict: bool = False
    keep_unmapped: bool = False
    case_sensitive: bool = False
    default: str | None = None
    system_in: str | None = None
    system_out: str | None = None
    file: str = ""
    _folded: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.case_sensitive:
            self._folded = {k.upper(): v for k, v in self.entries.items()}

    def lookup(self, code: str) -> tuple[str | None, bool]:
        """(result, known): ``known`` is False when ``code`` is not in the map."""
        hit = self.entries.get(code)
        if hit is None and not self.case_sensitive:
            hit = self._folded.get(code.upper())
        if hit is not None:
            return hit, True
        if self.keep_unmapped:
            return code, False
        return self.default, False


def compile_codemap(data: Any, locs: Locations, base: tuple[str | int, ...] = (),
                    name: str = "") -> CodeMap:
    """Check and build a code map from YAML data (a file, or an inline ``map:``); raise YamlFileError."""
    if not isinstance(data, dict):
        raise locs.error(base, "a code map must be a mapping with 'entries'")
    for k in data:
        if k not in KEYS:
            raise locs.error((*base, k), f"unknown code map key {k!r} (expected one of {sorted(KEYS)})")
    entries = data.get("entries")
    if not isinstance(entries, dict) or not entries:
        raise locs.error((*base, "entries"), "'entries' must be a non-empty mapping of code -> code")
    out: dict[str, str] = {}
    for k, v in entries.items():
        if isinstance(v, bool) or v is None or isinstance(v, (dict, list)):
            raise locs.error((*base, "entries", k), f"entry {k!r} must map to a code (quote yes/no/on/off)")
        if isinstance(k, bool):
            raise locs.error((*base, "entries", k), "a code that YAML reads as a boolean must be quoted")
        out[str(k)] = str(v)
    for flag in ("strict", "keep_unmapped", "case_sensitive"):
        if flag in data and not isinstance(data[flag], bool):
            raise locs.error((*base, flag), f"{flag!r} must be true or false")
    if data.get("strict") and data.get("keep_unmapped"):
        raise locs.error((*base, "strict"), "'strict' and 'keep_unmapped' exclude each other")
    default = data.get("default")
    return CodeMap(
        name=str(data.get("codemap") or name), entries=out, strict=bool(data.get("strict", False)),
        keep_unmapped=bool(data.get("keep_unmapped", False)),
        case_sensitive=bool(data.get("case_sensitive", False)),
        default=None if default is None else str(default),
        system_in=data.get("system_in"), system_out=data.get("system_out"), file=locs.file,
    )


def load_codemap_error(file: str, line: int | None, problem: str) -> YamlFileError:
    return YamlFileError(file, line, problem)
