"""HL7 v2 errors carrying a table-0357 code and a terser-style location.

The text of an :class:`HL7Error` is sent back to the sender (ERR-8) and may be logged, so it must
never contain patient data: only field locations and, at most, values from the MSH header.
"""

from __future__ import annotations

__all__ = ["HL7Error", "TABLE_0357", "SEVERITIES"]

#: HL7 table 0357 (message error condition codes) → display name, used for ERR-3 / ERR-1.
TABLE_0357: dict[int, str] = {
    0: "Message accepted",
    100: "Segment sequence error",
    101: "Required field missing",
    102: "Data type error",
    103: "Table value not found",
    104: "Value too long",
    200: "Unsupported message type",
    201: "Unsupported event code",
    202: "Unsupported processing id",
    203: "Unsupported version id",
    204: "Unknown key identifier",
    205: "Duplicate key identifier",
    206: "Application record locked",
    207: "Application internal error",
}

#: HL7 table 0516 (error severity).
SEVERITIES = frozenset({"E", "W", "I"})


class HL7Error(Exception):
    """A problem in a received HL7 v2 message, reportable in an ACK.

    :param code: table 0357 code (100 segment sequence, 101 required field missing, 102 data type,
        103 table value not found, 200-203 unsupported type/event/processing id/version,
        207 application internal error).
    :param location: terser-style location (``"PID-7"``, ``"MSH-2"``, ``"MSH"``), ``""`` when none.
    :param text: human readable text, free of patient data.
    :param severity: ``"E"`` (error, default), ``"W"`` (warning) or ``"I"`` (information).
    """

    __slots__ = ("code", "location", "text", "severity")

    def __init__(self, code: int, location: str, text: str, severity: str = "E") -> None:
        super().__init__(code, location, text, severity)
        self.code = code
        self.location = location
        self.text = text
        self.severity = severity

    @property
    def code_name(self) -> str:
        """The table-0357 display name of :attr:`code` (``""`` for an unknown code)."""
        return TABLE_0357.get(self.code, "")

    def to_dict(self) -> dict[str, str | int]:
        """A JSON-friendly view (for logs, OperationOutcome building, stored ACKs)."""
        return {"code": self.code, "location": self.location, "text": self.text, "severity": self.severity}

    def __str__(self) -> str:
        where = f" at {self.location}" if self.location else ""
        return f"HL7 error {self.code}{where}: {self.text}"

    def __repr__(self) -> str:
        return f"HL7Error({self.code!r}, {self.location!r}, {self.text!r}, {self.severity!r})"
