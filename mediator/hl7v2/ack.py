"""ACK / NAK messages (original and enhanced acknowledgment modes) and header sniffing.

An ACK answers every received message (except ACKs: never ACK an ACK), so it is built with plain
string joins. When the received message could not be parsed, :func:`sniff_header` recovers what it
can of the MSH so that the NAK still reaches the right sender with the right MSA-2.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Sequence

from .datetime import hl7_now
from .errors import TABLE_0357, HL7Error
from .escape import escape
from .message import DEFAULT_DELIMITERS, Delimiters, Message, _delimiters
from .path import compile_path

__all__ = ["build_ack", "sniff_header", "is_ack", "new_control_id", "ACK_CODES"]

#: MSA-1 codes: original mode (AA, AE, AR) and enhanced-mode accept acknowledgments (CA, CE, CR)
ACK_CODES = frozenset({"AA", "AE", "AR", "CA", "CE", "CR"})

_HEADER_KEYS = ("control_id", "sending_application", "sending_facility", "receiving_application",
                "receiving_facility", "version", "message_code", "trigger_event", "processing_id",
                "charset", "field_sep", "encoding_chars")

_id_prefix = f"{int(time.time()):X}{os.urandom(2).hex().upper()}"
_id_counter = itertools.count(1)


def new_control_id() -> str:
    """A fresh message control id, unique in this process and (with high probability) across
    restarts; at most 20 characters (the MSH-10 length up to v2.6)."""
    return f"{_id_prefix}{next(_id_counter):X}"


def is_ack(msg: Message) -> bool:
    """True for an acknowledgment: MSH-9.1 ``ACK`` or an MSA segment right after the MSH."""
    if msg.message_code == "ACK":
        return True
    segs = msg.segments
    return len(segs) > 1 and segs[1].name == "MSA"


def sniff_header(data: bytes | str) -> dict[str, str]:
    """Best-effort MSH values of a message that :func:`~mediator.hl7v2.parse` rejected; never raises.

    Keys: control_id, sending_application, sending_facility, receiving_application,
    receiving_facility (raw field text, all components), version, message_code, trigger_event,
    processing_id, charset (first component), field_sep, encoding_chars. ``""`` when unknown.
    """
    out = dict.fromkeys(_HEADER_KEYS, "")
    try:
        text = data.decode("utf-8", "replace") if isinstance(data, bytes | bytearray) else str(data)
        start = text.find("MSH", 0, 256)
        if start < 0 or len(text) < start + 4:
            return out
        line = text[start:]
        for sep in ("\r", "\n"):
            line = line.split(sep, 1)[0]
        fs = line[3]
        if fs.isalnum() or fs.isspace():
            return out
        parts = line.split(fs)
        parts.insert(1, fs)  # parts[n] is MSH-n
        out["field_sep"] = fs
        enc = parts[2] if len(parts) > 2 else ""
        out["encoding_chars"] = enc
        comp = enc[0] if enc and not enc[0].isalnum() else "^"

        def field(n: int) -> str:
            return parts[n].strip() if n < len(parts) else ""

        for key, n in (("sending_application", 3), ("sending_facility", 4), ("receiving_application", 5),
                       ("receiving_facility", 6), ("control_id", 10)):
            out[key] = field(n)
        msg_type = field(9).split(comp)
        out["message_code"] = msg_type[0]
        out["trigger_event"] = msg_type[1] if len(msg_type) > 1 else ""
        out["processing_id"] = field(11).split(comp)[0]
        out["version"] = field(12).split(comp)[0]
        out["charset"] = field(18).split(comp)[0]
    except Exception:  # noqa: BLE001 - best effort by contract
        pass
    return out


def _has_truncation(version: str) -> bool:
    major, _, rest = version.partition(".")
    minor = rest.split(".")[0]
    return major.isdigit() and minor.isdigit() and (int(major), int(minor)) >= (2, 7)


def _location_parts(location: str) -> tuple[str, str, str, str, str, str] | None:
    """(segment, sequence, field, repetition, component, subcomponent) of a terser location."""
    try:
        p = compile_path(location)
    except (ValueError, TypeError):
        return None

    def num(v: int | None) -> str:
        return str(v) if v else ""

    field = num(p.field)
    rep = num(p.rep) or ("1" if field else "")
    return p.segment or "", num(p.seg_index) or "1", field, rep, num(p.comp), num(p.sub)


def _err_segment(err: HL7Error, d: Delimiters) -> str:
    fs, c, s = d.field, d.component, d.subcomponent
    name = TABLE_0357.get(err.code, "")
    code = str(err.code)
    loc = _location_parts(err.location) if err.location else None
    if loc is not None:
        seg, seq, field, rep, comp, sub = loc
        eld = c.join((seg, seq, field, s.join((code, name, "HL70357"))))
        erl = c.join((seg, seq, field, rep, comp, sub)).rstrip(c)
    else:
        eld = c.join(("", "", "", s.join((code, name, "HL70357"))))
        erl = ""
    severity = err.severity if err.severity in ("E", "W", "I") else "E"
    user_text = escape(err.text, d) if err.text else ""
    return fs.join(("ERR", eld, erl, c.join((code, name, "HL70357")), severity, "", "", "", user_text))


def _clean(value: str, d: Delimiters) -> str:
    """A raw header value from sniff_header, made safe to copy into a field."""
    for ch in (d.field, "\r", "\n"):
        if ch in value:
            value = value.replace(ch, "")
    return value


def build_ack(msg: Message | None, code: str, *, errors: Sequence[HL7Error] = (), text: str = "",
              header: dict[str, str] | None = None, control_id: str | None = None,
              timestamp: str | None = None) -> str:
    """The ACK for ``msg`` (``\\r`` after each segment, no MLLP framing).

    :param msg: the received message, or None when it could not be parsed (then ``header``, from
        :func:`sniff_header`, supplies the sender and MSH-10 to answer).
    :param code: MSA-1: AA/AE/AR (original mode) or CA/CE/CR (enhanced mode accept ACK).
    :param errors: one ERR segment each (ERR-1 v2.3/2.4 style, ERR-2 location, ERR-3 table 0357
        code, ERR-4 severity, ERR-8 the error text).
    :param text: MSA-3 free text (escaped here).
    :param control_id: MSH-10 of the ACK (default: a fresh id).
    :param timestamp: MSH-7 (default: now, ``YYYYMMDDHHMMSS+ZZZZ``).
    """
    if code not in ACK_CODES:
        raise ValueError(f"invalid acknowledgment code {code!r}")
    if msg is not None:
        d = msg.delimiters
        f = msg._msh
        n = len(f)

        def raw(i: int) -> str:
            return f[i] if i < n else ""

        send_app, send_fac, recv_app, recv_fac = raw(3), raw(4), raw(5), raw(6)
        msg_type = raw(9).split(d.repetition)[0].split(d.component)
        trigger = msg_type[1] if len(msg_type) > 1 else ""
        ack_of = raw(10)
        processing = raw(11) or "P"
        version = raw(12) or "2.5"
        charset = raw(18)
    else:
        h = header or {}
        try:
            d = _delimiters(h.get("field_sep") or "|", h.get("encoding_chars") or "^~\\&")
        except HL7Error:
            d = DEFAULT_DELIMITERS

        def raw_h(key: str) -> str:
            return _clean(h.get(key) or "", d)

        send_app, send_fac = raw_h("sending_application"), raw_h("sending_facility")
        recv_app, recv_fac = raw_h("receiving_application"), raw_h("receiving_facility")
        trigger = escape(h.get("trigger_event") or "", d)
        ack_of = raw_h("control_id")
        processing = escape(h.get("processing_id") or "", d) or "P"
        version = escape(h.get("version") or "", d) or "2.5"
        charset = escape(h.get("charset") or "", d)
    if d.truncation is not None and not _has_truncation(version):
        d = _delimiters(d.field, d.encoding_chars[:4])  # the truncation character only exists from v2.7
    fs, c = d.field, d.component
    msg_type_out = f"ACK{c}{trigger}{c}ACK" if trigger else "ACK"
    msh = fs.join(("MSH", d.encoding_chars, recv_app, recv_fac, send_app, send_fac, timestamp or hl7_now(),
                   "", msg_type_out, control_id or new_control_id(), processing, version))
    if charset:
        msh = f"{msh}{fs * 6}{charset}"
    msa = fs.join(("MSA", code, ack_of, escape(text, d))) if text else f"MSA{fs}{code}{fs}{ack_of}"
    parts = [msh, msa]
    parts.extend(_err_segment(e, d) for e in errors)
    parts.append("")
    return "\r".join(parts)
