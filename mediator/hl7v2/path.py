"""Terser-style (HAPI) paths, compiled once and cached.

Absolute paths, all indexes 1-based::

    PID                 the first PID segment
    OBX[2]              the second OBX segment, OBX[*] every OBX
    PID-5               first repetition of field 5 (the whole repetition, all its components)
    PID-5.1             its first component; PID-5.1.2 the second subcomponent of that component
    PID-3[2].4          component 4 of the second repetition; PID-3[*].1 component 1 of every one
    OBX[*]-5[*]         every repetition of field 5 of every OBX
    ZPD-1               Z-segments like any other

Relative paths (used on nodes, one level down or more): for a segment ``"3"``, ``"3[*]"``,
``"5.1"``, ``"3[2].4.1"``; for a field repetition ``"1"``, ``"4.1"``; for a component ``"2"``.

A ``0`` index in a compiled path means ``[*]`` (all); ``None`` means "not given".
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

__all__ = ["Path", "compile_path", "compile_relative", "SEGMENT", "REPETITION", "COMPONENT", "SUBCOMPONENT"]

#: node levels
SEGMENT, REPETITION, COMPONENT, SUBCOMPONENT = 0, 1, 2, 3

_ABSOLUTE = re.compile(
    r"([A-Z][A-Z0-9]{2})(?:\[([0-9]{1,6}|\*)\])?"
    r"(?:-([0-9]{1,4})(?:\[([0-9]{1,6}|\*)\])?(?:\.([0-9]{1,4})(?:\.([0-9]{1,4}))?)?)?"
)
_FROM_SEGMENT = re.compile(r"([0-9]{1,4})(?:\[([0-9]{1,6}|\*)\])?(?:\.([0-9]{1,4})(?:\.([0-9]{1,4}))?)?")
_FROM_REPETITION = re.compile(r"([0-9]{1,4})(?:\.([0-9]{1,4}))?")
_FROM_COMPONENT = re.compile(r"([0-9]{1,4})")


class Path(NamedTuple):
    """A compiled path. ``segment``/``seg_index`` are only set for absolute paths."""

    segment: str | None
    seg_index: int | None  # 0 = all
    field: int | None
    rep: int | None  # 0 = all
    comp: int | None
    sub: int | None
    level: int  # level of the selected nodes (SEGMENT … SUBCOMPONENT)
    multi: bool  # may select more than one node

    @property
    def text(self) -> str:
        """The canonical spelling of the path (``PID[1]-3[*].1``)."""
        out = []
        if self.segment is not None:
            out.append(self.segment)
            if self.seg_index is not None:
                out.append(f"[{self.seg_index or '*'}]")
            if self.field is not None:
                out.append("-")
        if self.field is not None:
            out.append(str(self.field))
            if self.rep is not None:
                out.append(f"[{self.rep or '*'}]")
        if self.comp is not None:
            out.append(f".{self.comp}" if out else str(self.comp))
        if self.sub is not None:
            out.append(f".{self.sub}" if out else str(self.sub))
        return "".join(out)


def _index(group: str | None, path: str) -> int | None:
    if group is None:
        return None
    if group == "*":
        return 0
    value = int(group)
    if value < 1:
        raise ValueError(f"invalid HL7 path {path!r}: indexes are 1-based")
    return value


def _position(group: str | None, path: str, *, allow_zero: bool = False) -> int | None:
    if group is None:
        return None
    value = int(group)
    if value < 1 and not (allow_zero and value == 0):
        raise ValueError(f"invalid HL7 path {path!r}: positions are 1-based")
    return value


@lru_cache(maxsize=4096)
def compile_path(path: str) -> Path:
    """Compile an absolute terser path (``"PID-3[*].1"``); ``ValueError`` naming the path if invalid."""
    m = _ABSOLUTE.fullmatch(path) if isinstance(path, str) else None
    if m is None:
        raise ValueError(f"invalid HL7 path {path!r}")
    seg, seg_idx, field, rep, comp, sub = m.groups()
    seg_index = _index(seg_idx, path)
    f = _position(field, path, allow_zero=True)  # PID-0 is the segment name
    r = _index(rep, path)
    c = _position(comp, path)
    s = _position(sub, path)
    if f is None:
        level = SEGMENT
    elif s is not None:
        level = SUBCOMPONENT
    elif c is not None:
        level = COMPONENT
    else:
        level = REPETITION
    multi = seg_index == 0 or r == 0
    return Path(seg, seg_index, f, r, c, s, level, multi)


@lru_cache(maxsize=4096)
def compile_relative(path: str, level: int) -> Path:
    """Compile a path relative to a node of ``level`` (SEGMENT, REPETITION or COMPONENT)."""
    f = r = c = s = None
    if not isinstance(path, str):
        raise ValueError(f"invalid relative HL7 path {path!r}")
    if level == SEGMENT:
        m = _FROM_SEGMENT.fullmatch(path)
        if m is None:
            raise ValueError(f"invalid relative HL7 path {path!r} for a segment")
        f = _position(m.group(1), path, allow_zero=True)
        r = _index(m.group(2), path)
        c = _position(m.group(3), path)
        s = _position(m.group(4), path)
    elif level == REPETITION:
        m = _FROM_REPETITION.fullmatch(path)
        if m is None:
            raise ValueError(f"invalid relative HL7 path {path!r} for a field repetition")
        c = _position(m.group(1), path)
        s = _position(m.group(2), path)
    elif level == COMPONENT:
        m = _FROM_COMPONENT.fullmatch(path)
        if m is None:
            raise ValueError(f"invalid relative HL7 path {path!r} for a component")
        s = _position(m.group(1), path)
    else:
        raise ValueError(f"invalid relative HL7 path {path!r}: a subcomponent has no children")
    if s is not None:
        new_level = SUBCOMPONENT
    elif c is not None:
        new_level = COMPONENT
    else:
        new_level = REPETITION
    return Path(None, None, f, r, c, s, new_level, r == 0)
