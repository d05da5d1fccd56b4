"""Terser paths in mapping files: checked at load with the HL7 v2 parser's own path compiler.

An absolute path (``PID-5.1``, ``OBX[*]-5``) starts with a segment name; a relative path
(``4.1``) is read on the current ``for_each`` node and must suit that node's level (a segment, a
field repetition or a component).
"""

from __future__ import annotations

from dataclasses import dataclass

from mediator.hl7v2.path import compile_path, compile_relative

ALL = 0  # occurrence marker: every occurrence of the segment


@dataclass(frozen=True)
class Path:
    """A checked path."""

    text: str
    relative: bool
    segment: str | None
    occurrence: int  # 1-based, ALL for [*] (absolute paths only)
    multi: bool  # may select several nodes
    level: int  # level of the nodes it selects


def parse_path(text: str, node_level: int | None) -> Path:
    """Check ``text``; ``node_level`` is the level of the current node (None outside ``for_each``).

    Raises ValueError with a message naming the path.
    """
    if text[:1].isdigit():
        if node_level is None:
            raise ValueError(f"relative path {text!r} outside for_each (write e.g. 'PID-5.1')")
        p = compile_relative(text, min(node_level, 2))
        return Path(text, True, None, ALL, p.multi, p.level)
    p = compile_path(text)
    occ = p.seg_index if p.seg_index is not None else 1
    return Path(text, False, p.segment, occ, p.multi, p.level)
