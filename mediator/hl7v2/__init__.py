"""HL7 v2: a fast lazy parser with terser-style paths, escapes, dates, validation and ACK/NAK."""

from .ack import ACK_CODES, build_ack, is_ack, new_control_id, sniff_header
from .datetime import format_hl7_datetime, hl7_datetime_to_fhir, hl7_now
from .errors import TABLE_0357, HL7Error
from .escape import escape, unescape
from .message import LITERAL, Delimiters, Message, Node, Segment, parse, python_codec
from .path import COMPONENT, REPETITION, SEGMENT, SUBCOMPONENT, Path, compile_path, compile_relative
from .validate import validate_message

__all__ = [
    "ACK_CODES", "COMPONENT", "LITERAL", "REPETITION", "SEGMENT", "SUBCOMPONENT", "TABLE_0357",
    "Delimiters", "HL7Error", "Message", "Node", "Path", "Segment",
    "build_ack", "compile_path", "compile_relative", "escape", "format_hl7_datetime",
    "hl7_datetime_to_fhir", "hl7_now", "is_ack", "new_control_id", "parse", "python_codec",
    "sniff_header", "unescape", "validate_message",
]
