"""Data types shared by the mapping compiler and the engine: context, result, errors, scope."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mediator.config import IdentifierConfig


@dataclass
class MappingContext:
    """What a mapping needs besides the message: identifier systems and the default offset."""

    identifiers: IdentifierConfig = field(default_factory=IdentifierConfig)
    default_tz: str = "+01:00"


@dataclass
class MappingResult:
    """A mapped message.

    ``unmapped`` lists the segments present in the message that no rule reads (``"NK1"``, or
    ``"OBX[2]"`` when the segment repeats), then the values ``dropped``; ``patient_key`` is
    ``system|value`` of the patient's strongest identifier, used to keep one patient's messages in
    order; ``dropped`` the values a conversion refused under ``invalid: drop`` (rule and source
    path, never the value): the engine delivers without them and flags the transaction.
    """

    bundle: dict[str, Any]
    unmapped: list[str]
    patient_key: str | None
    dropped: list[str] = field(default_factory=list)


class MappingError(Exception):
    """A rule could not apply to a message. The text never contains patient values."""

    def __init__(self, file: str, line: int | None, rule: str, source_path: str | None, text: str) -> None:
        self.file = file
        self.line = line
        self.rule = rule
        self.source_path = source_path
        self.text = text
        where = f"{file}:{line}" if line else file
        src = f" ({source_path})" if source_path else ""
        super().__init__(f"{where} rule '{rule}'{src}: {text}")


@dataclass(frozen=True)
class RuleInfo:
    """Where a compiled rule comes from, for run-time errors."""

    file: str
    line: int | None
    rule: str
    source_path: str | None = None

    def fail(self, text: str, source_path: str | None = None) -> MappingError:
        return MappingError(self.file, self.line, self.rule, source_path or self.source_path, text)


class Scope:
    """The state one message is evaluated in; ``node`` is the current ``for_each`` item."""

    __slots__ = ("msg", "ctx", "node", "vars", "ids", "comps", "group", "pos", "memo")

    def __init__(self, msg: Any, ctx: MappingContext, node: Any = None,
                 vars: dict[str, Any] | None = None, ids: dict[str, list[tuple[tuple[int, ...], str]]] | None = None,
                 group: tuple[int, ...] = (), pos: int = 0) -> None:
        self.msg = msg  # the message, or the view of the segment group being mapped
        self.ctx = ctx
        self.node = node
        self.vars = vars if vars is not None else {}
        # resource name -> (group chain it was produced in, id), in production order
        self.ids = ids if ids is not None else {}
        self.comps: list[str] | None = None  # the current node's raw components, split once
        self.group = group  # chain of the segment groups entered (one key per group level)
        self.pos = pos  # 1-based position of the current node among its for_each siblings
        # values already read on the current segment node (relative path -> value): a segment
        # fragment (OBX -> Observation) reads OBX-2 and OBX-5 in many of its conditions
        self.memo: dict[str, Any] | None = None

    def at(self, node: Any, pos: int = 0) -> Scope:
        """The same scope with another current node."""
        return Scope(self.msg, self.ctx, node, self.vars, self.ids, self.group, pos)

    def enter(self, view: Any, node: Any, key: int, pos: int) -> Scope:
        """The scope of one segment group: its view of the message, its first segment, its key."""
        return Scope(view, self.ctx, node, self.vars, self.ids, (*self.group, key), pos)
