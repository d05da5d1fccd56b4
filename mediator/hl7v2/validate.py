"""Structural and content checks run on a parsed message before it is accepted."""

from __future__ import annotations

from .datetime import hl7_datetime_to_fhir
from .errors import HL7Error
from .message import Message

__all__ = ["validate_message", "PROCESSING_IDS"]

#: HL7 table 0103
PROCESSING_IDS = frozenset({"P", "T", "D"})

#: ADT events whose message structure has no PID segment
_ADT_WITHOUT_PID = frozenset({"A20"})


def _check_date(msg: Message, path: str, errors: list[HL7Error], *, required: bool = False) -> None:
    value = msg.get(path)
    if not value:
        if required:
            errors.append(HL7Error(101, path, f"required field {path} missing"))
        return
    try:
        hl7_datetime_to_fhir(value, path)
    except HL7Error as exc:
        errors.append(exc)


def validate_message(msg: Message) -> list[HL7Error]:
    """Every problem found (an empty list when the message is acceptable).

    * MSH-7 present and a valid date/time (101 / 102 ``MSH-7``);
    * MSH-11 processing id in P/T/D (101 when empty, 202 otherwise, ``MSH-11``);
    * when there is a PID: PID-7 a valid date if present (102 ``PID-7``);
    * ADT messages: PID present (100 ``PID``), PID-3 present (101 ``PID-3``), EVN-2 and PV1-44/45
      valid dates when present (102).
    """
    errors: list[HL7Error] = []
    _check_date(msg, "MSH-7", errors, required=True)
    processing = msg.processing_id
    if not processing:
        errors.append(HL7Error(101, "MSH-11", "required field MSH-11 (processing id) missing"))
    elif processing not in PROCESSING_IDS:
        errors.append(HL7Error(202, "MSH-11", f"unsupported processing id {processing[:10]!r}"))
    has_pid = bool(msg.segments_named("PID"))
    if msg.message_code == "ADT" and msg.trigger_event not in _ADT_WITHOUT_PID:
        if not has_pid:
            errors.append(HL7Error(100, "PID", "required segment PID missing"))
        elif not any(msg.get_all("PID-3[*].1")):
            errors.append(HL7Error(101, "PID-3", "required field PID-3 (patient identifier list) missing"))
        _check_date(msg, "EVN-2", errors)
        _check_date(msg, "PV1-44", errors)
        _check_date(msg, "PV1-45", errors)
    if has_pid:
        _check_date(msg, "PID-7", errors)
    return errors
