"""Tests of ACK/NAK building, is_ack and sniff_header."""

from __future__ import annotations

import glob
import re

import pytest
from hl7apy.parser import parse_message

from mediator.hl7v2 import HL7Error, Message, build_ack, is_ack, parse, sniff_header
from mediator.hl7v2.ack import new_control_id
from mediator.testing import CORPORA

CORPUS = sorted(glob.glob(f"{CORPORA}/ms-fhir-converter/hl7v2/*.hl7")) + sorted(
    glob.glob(f"{CORPORA}/reportstream-v2-to-fhir/**/*.hl7", recursive=True))

MSG = ("MSH|^~\\&|HIS^1.2.3^ISO|CHU-RABAT^2.16.504^ISO|DMP|MS-MAROC|20240105103000+0100||ADT^A01^ADT_A01|CTRL-1|"
       "T|2.5.1||||||UNICODE UTF-8\rEVN|A01\rPID|1||123^^^CHU^MR||EL ALAMI^Yassine")


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


@pytest.fixture(scope="module")
def msg() -> Message:
    return parse(MSG)


def test_aa_structure(msg: Message) -> None:
    text = build_ack(msg, "AA")
    assert text.endswith("\r") and "\n" not in text
    ack = parse(text)
    assert [s.name for s in ack.segments] == ["MSH", "MSA"]
    assert ack.get("MSH-3") == "DMP" and ack.get("MSH-4") == "MS-MAROC"
    assert ack.get("MSH-5") == "HIS^1.2.3^ISO" and ack.get("MSH-6") == "CHU-RABAT^2.16.504^ISO"
    assert ack.get("MSH-9") == "ACK^A01^ACK"
    assert ack.type_key == "ACK^A01" and ack.structure == "ACK"
    assert ack.processing_id == "T" and ack.version == "2.5.1"
    assert ack.charset == "UNICODE UTF-8"
    assert re.fullmatch(r"\d{14}[+-]\d{4}", ack.timestamp)
    assert 0 < len(ack.control_id) <= 20 and ack.control_id != msg.control_id
    assert ack.get("MSA-1") == "AA" and ack.get("MSA-2") == "CTRL-1" and ack.get("MSA-3") is None
    assert is_ack(ack) and not is_ack(msg)
    parse_message(text, find_groups=False)
    parse_message(text)


def test_control_ids_are_unique() -> None:
    ids = {new_control_id() for _ in range(10_000)}
    assert len(ids) == 10_000 and max(map(len, ids)) <= 20
    assert all(re.fullmatch(r"[0-9A-Z]+", i) for i in list(ids)[:100])


def test_control_id_and_timestamp_arguments(msg: Message) -> None:
    ack = parse(build_ack(msg, "AA", control_id="ACK-1", timestamp="20240105103001+0100"))
    assert ack.control_id == "ACK-1" and ack.timestamp == "20240105103001+0100"


def test_text_is_escaped(msg: Message) -> None:
    text = build_ack(msg, "AE", text="bad | value ^ here & there\nline")
    ack = parse(text)
    assert ack.segments[1].fields_raw(3) == "bad \\F\\ value \\S\\ here \\T\\ there\\.br\\line"
    assert ack.get("MSA-3") == "bad | value ^ here & there\nline"


def test_errors(msg: Message) -> None:
    errors = [HL7Error(102, "PID-7", "impossible date/time in PID-7"),
              HL7Error(101, "OBX[2]-5[3].1.2", "missing | value", "W"),
              HL7Error(207, "", "internal error"),
              HL7Error(100, "4", "segment 4 does not start with a valid segment name"),
              HL7Error(200, "MSH-9", "unsupported message type", "I")]
    text = build_ack(msg, "AE", errors=errors)
    ack = parse(text)
    errs = ack.segments_named("ERR")
    assert len(errs) == 5
    e1, e2, e3, e4, e5 = errs
    assert e1.get("1") == "PID^1^7^102&Data type error&HL70357"
    assert e1.get("1.4.1") == "102" and e1.get("1.4.3") == "HL70357"
    assert e1.get("2") == "PID^1^7^1"
    assert e1.get("3") == "102^Data type error^HL70357"
    assert e1.get("4") == "E"
    assert e1.get("8") == "impossible date/time in PID-7"
    assert e2.get("2") == "OBX^2^5^3^1^2"
    assert e2.get("1") == "OBX^2^5^101&Required field missing&HL70357"
    assert e2.get("4") == "W" and e2.get("8") == "missing | value"
    assert e2.fields_raw(8) == "missing \\F\\ value"
    assert e3.get("2") is None and e3.get("3.1") == "207" and e3.get("3.2") == "Application internal error"
    assert e4.get("2") is None and e4.get("3.1") == "100"
    assert e5.get("2") == "MSH^1^9^1" and e5.get("4") == "I"
    assert ack.get_all("ERR[*]-3.1") == ["102", "101", "207", "100", "200"]
    parsed = parse_message(text, find_groups=False)
    assert parsed.msa.msa_1.value == "AE"
    assert len(parsed.children.get("ERR")) == 5


@pytest.mark.parametrize("code", ["AA", "AE", "AR", "CA", "CE", "CR"])
def test_all_codes(msg: Message, code: str) -> None:
    text = build_ack(msg, code)
    assert parse(text).get("MSA-1") == code
    parse_message(text, find_groups=False)


def test_invalid_code(msg: Message) -> None:
    with pytest.raises(ValueError):
        build_ack(msg, "OK")


def test_custom_delimiters_are_kept() -> None:
    m = parse("MSH#$*!@#A$X#B###20240101##ADT$A04#9#P#2.4\rPID#1")
    text = build_ack(m, "AE", text="a#b", errors=[HL7Error(101, "PID-3", "x")])
    assert text.startswith("MSH#$*!@#")
    ack = parse(text)
    assert ack.get("MSH-5") == "A$X" and ack.get("MSH-5.2") == "X"
    assert ack.get("MSA-3") == "a#b" and ack.get("MSA-2") == "9"
    assert ack.get("ERR-2") == "PID$1$3$1"


def test_truncation_character_only_from_v27() -> None:
    m25 = parse("MSH|^~\\&#|A|B|C|D|20240101||ORU^R01|1|P|2.5.1\rPID|1")
    assert build_ack(m25, "AA").startswith("MSH|^~\\&|")
    parse_message(build_ack(m25, "AA", text="x#y"), find_groups=False)
    m27 = parse("MSH|^~\\&#|A|B|C|D|20240101||ORU^R01|1|P|2.7\rPID|1")
    text = build_ack(m27, "AA", text="x#y")
    assert text.startswith("MSH|^~\\&#|") and "x\\P\\y" in text
    assert parse(text).get("MSA-3") == "x#y"


def test_defaults_without_trigger_processing_version() -> None:
    m = parse("MSH|^~\\&|A|B|C|D|20240101||ORU|1||2.3")
    ack = parse(build_ack(m, "AA"))
    assert ack.get("MSH-9") == "ACK" and ack.processing_id == "P" and ack.version == "2.3"
    assert ack.charset == ""


def test_nak_from_sniffed_header() -> None:
    data = b"MSH|^~\\&|LAB^1.2^ISO|CHU|DMP|MS|20240101||ORU^R01^ORU_R01|C-77|P|2.5.1\rPID|1||\xff\xfe"
    with pytest.raises(HL7Error) as exc:
        parse(data)
    header = sniff_header(data)
    assert header["control_id"] == "C-77"
    assert header["sending_application"] == "LAB^1.2^ISO"
    assert header["message_code"] == "ORU" and header["trigger_event"] == "R01"
    assert header["version"] == "2.5.1" and header["processing_id"] == "P"
    assert header["field_sep"] == "|" and header["encoding_chars"] == "^~\\&"
    text = build_ack(None, "AR", errors=[exc.value], header=header)
    ack = parse(text)
    assert ack.get("MSH-5") == "LAB^1.2^ISO" and ack.get("MSH-6") == "CHU"
    assert ack.get("MSH-3") == "DMP" and ack.get("MSH-4") == "MS"
    assert ack.get("MSH-9") == "ACK^R01^ACK" and ack.version == "2.5.1"
    assert ack.get("MSA-2") == "C-77" and ack.get("MSA-1") == "AR"
    assert ack.get("ERR-3.1") == "102" and ack.get("ERR-2") == "MSH^1^18^1"
    parse_message(text, find_groups=False)


def test_nak_without_anything() -> None:
    text = build_ack(None, "AR", errors=[HL7Error(100, "MSH", "message does not start with an MSH segment")])
    ack = parse(text)
    assert ack.get("MSA-2") is None and ack.version == "2.5" and ack.get("ERR-2") == "MSH^1"
    parse_message(text, find_groups=False)


def test_nak_with_bad_sniffed_delimiters() -> None:
    header = sniff_header(b"MSH|^^^^|A|B|C|D|2024||ADT^A01|1|P|2.5")
    text = build_ack(None, "AR", header=header)
    assert text.startswith("MSH|^~\\&|")
    parse(text)
    header = {"sending_application": "X|Y\rZ", "control_id": "1\n2"}
    assert parse(build_ack(None, "AR", header=header)).get("MSA-2") == "12"


@pytest.mark.parametrize("data", [b"", b"garbage", b"MSH", b"MSHA", b"\x00\xff" * 10, b"MSH|", b"MSH|^~\\&|A",
                                  b"\x0bMSH|^~\\&|A|B|C|D||||42", "MSH|^~\\&|محمد|B".encode()])
def test_sniff_header_never_raises(data: bytes) -> None:
    header = sniff_header(data)
    assert set(header) >= {"control_id", "sending_application", "sending_facility", "receiving_application",
                           "receiving_facility", "version", "message_code", "trigger_event", "field_sep",
                           "encoding_chars"}
    assert all(isinstance(v, str) for v in header.values())


def test_sniff_header_leading_mllp_and_str() -> None:
    assert sniff_header(b"\x0bMSH|^~\\&|A|B|C|D||||42")["control_id"] == "42"
    assert sniff_header("MSH|^~\\&|A|B|C|D||||42\nPID")["control_id"] == "42"


def test_is_ack() -> None:
    assert is_ack(parse("MSH|^~\\&|A|B|C|D|2024||ACK^A01^ACK|1|P|2.5\rMSA|AA|9"))
    assert is_ack(parse("MSH|^~\\&|A|B|C|D|2024||MFK^M01|1|P|2.5\rMSA|AA|9\rMFI|X"))
    assert not is_ack(parse("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rEVN|A01\rMSA|AA|9"))


def test_ack_for_every_corpus_message_is_accepted_by_hl7apy() -> None:
    errors = [HL7Error(102, "PID-7", "bad date"), HL7Error(207, "", "internal")]
    for path in CORPUS:
        m = parse(_read(path))
        text = build_ack(m, "AE", errors=errors, text="rejected")
        ack = parse(text)
        assert ack.get("MSA-2") == m.control_id
        assert ack.get("MSH-5") == m.get("MSH-3") and ack.get("MSH-6") == m.get("MSH-4")
        assert ack.trigger_event == m.trigger_event
        parsed = parse_message(text, find_groups=False)
        assert parsed.msa.msa_1.value == "AE", path
