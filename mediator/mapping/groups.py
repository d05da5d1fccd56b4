"""Segment groups (ORDER_OBSERVATION, OBSERVATION, ...) for ``for_each: {group: ...}``.

A group starts at a segment named in ``group`` and takes the segments that follow it while they
are ``members`` (any segment but a start or a ``leading`` one when ``members`` is not given); the
``leading`` segments found right before the start belong to it too (an ORC before its OBR). Inside
a group, an absolute path naming one of the group's segments reads that group only (``OBX[*]`` is
the OBX of this order); any other segment is read where the enclosing scope reads it (``PID-3``
in the whole message), so groups nest: an OBSERVATION group inside an ORDER_OBSERVATION group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mediator.hl7v2 import Message


@dataclass(frozen=True)
class GroupSpec:
    """A compiled group selector."""

    starts: frozenset[str]
    members: frozenset[str] | None  # None: every segment up to the next start
    leading: frozenset[str]

    @property
    def names(self) -> frozenset[str]:
        """Every segment name that is read inside the group."""
        return self.starts | (self.members or frozenset()) | self.leading


def split_groups(msg: Any, spec: GroupSpec) -> list[tuple[Any, list[Any]]]:
    """The groups of ``msg`` (a message or a group view): ``(start segment, segments)``."""
    segs = msg.segments
    n = len(segs)
    starts, members, leading = spec.starts, spec.members, spec.leading
    out: list[tuple[Any, list[Any]]] = []
    floor = 0  # segments before this index belong to an earlier group
    i = 0
    while i < n:
        if segs[i].name not in starts:
            i += 1
            continue
        first = i
        while first > floor and segs[first - 1].name in leading:
            first -= 1
        k = i + 1
        while k < n:
            name = segs[k].name
            if name in starts or name in leading or (members is not None and name not in members):
                break
            k += 1
        out.append((segs[i], segs[first:k]))
        floor = k
        i = k
    return out


def group_view(parent: Any, segs: list[Any], names: frozenset[str]) -> Message:
    """A message view where the segments named in ``names`` are those of the group only."""
    view = object.__new__(Message)
    view.raw = ""
    view.delimiters = parent.delimiters
    view.encoding = parent.encoding
    view._msh = parent._msh
    view.segments = segs
    index = dict(parent._index or parent._build_index())
    for name in names:
        index.pop(name, None)
    for seg in segs:
        index.pop(seg.name, None)
    for seg in segs:
        index.setdefault(seg.name, []).append(seg)
    view._index = index
    return view
