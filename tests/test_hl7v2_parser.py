"""Tests of the HL7 v2 parser, terser paths, escapes, charsets, dates and validation."""

from __future__ import annotations

import glob
import os

import pytest

from mediator.hl7v2 import (
    LITERAL,
    Delimiters,
    HL7Error,
    Message,
    Node,
    Segment,
    compile_path,
    escape,
    hl7_datetime_to_fhir,
    parse,
    unescape,
    validate_message,
)
from mediator.testing import CORPORA

MS_FILES = sorted(glob.glob(f"{CORPORA}/ms-fhir-converter/hl7v2/*.hl7"))
RS_FILES = sorted(glob.glob(f"{CORPORA}/reportstream-v2-to-fhir/**/*.hl7", recursive=True))
CORPUS = MS_FILES + RS_FILES


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()

ADT = "\r".join([
    "MSH|^~\\&|HIS^1.2.3^ISO|CHU-RABAT|DMP|MS-MAROC|20240105103000+0100||ADT^A01^ADT_A01|CTRL-1|P|2.5|||AL|NE"
    "||UNICODE UTF-8",
    "EVN|A01|20240105103000",
    "PID|1||123^^^CHU&1.2.3&ISO^MR~CIN-9^^^DGSN^NI||EL ALAMI^Yassine^M||19800214|M|||12 Rue X^^Rabat^^10000^MA",
    "PV1|1|I|W1^R2^B3||||||||||||||||V-55|||||||||||||||||||||||||20240105103000|20240106",
    "OBX|1|NM|8867-4^Heart rate^LN||72|/min",
    "OBX|2|ST|X^Comment^L||first~second\\T\\half|",
    "OBX|3|TX|Y^Note^L||line1\\.br\\line2 \\F\\ \\S\\ \\R\\ \\E\\ \\H\\bold\\N\\",
    "ZPD|custom^value&sub|",
]) + "\r"


@pytest.fixture(scope="module")
def adt() -> Message:
    return parse(ADT)


# --- corpus -----------------------------------------------------------------------------------------

def _normalised(data: bytes) -> str:
    text = data.decode("utf-8").lstrip("\ufeff \t\r\n")
    text = text.replace("\r\n", "\r").replace("\n", "\r")
    return "".join(s + "\r" for s in text.split("\r") if s.strip())


def test_corpus_is_there() -> None:
    assert len(MS_FILES) > 100 and len(RS_FILES) > 100


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: os.path.relpath(p, CORPORA))
def test_corpus_parses_and_round_trips(path: str) -> None:
    data = _read(path)
    msg = parse(data)
    assert msg.segments[0].name == "MSH"
    assert msg.message_code and msg.control_id and msg.version
    encoded = msg.encode()
    assert encoded == _normalised(data)
    assert parse(encoded).encode() == encoded
    assert parse(msg.to_bytes()).encode() == encoded
    # every field of every segment can be read without error
    for seg in msg.segments:
        for n in range(1, seg.field_count + 1):
            for node in seg.select(f"{n}[*]"):
                node.text  # noqa: B018
                for comp in node.select("1"):
                    comp.get_all("1")


def test_corpus_header_properties() -> None:
    msg = parse(_read(f"{CORPORA}/ms-fhir-converter/hl7v2/ADT-A01-01.hl7"))
    assert msg.message_code == "ADT"
    assert msg.trigger_event == "A01"
    assert msg.structure == "ADT_A01"
    assert msg.type_key == "ADT^A01"
    assert msg.control_id == "MSG00001"
    assert msg.processing_id == "P"
    assert msg.version == "2.8"
    assert msg.sending_application == "ADTApp"
    assert msg.sending_facility == "GHHSFacility"
    assert msg.receiving_application == "EHRApp"
    assert msg.receiving_facility == "GHHRFacility"
    assert msg.timestamp == "198908181126+0215"
    assert msg.get_all("PID-3[*].1") == ["PATID1234", "123456789"]
    assert msg.get("PID-3[2].4") == "USSSA"
    assert msg.get("PID-5.1.1") == "EVERYMAN"
    assert msg.get("PID-5.1.5") == "Aniston"
    assert msg.get("PID-5[2].1.5") == "Bing"


def test_corpus_crlf_and_lf_files_give_same_segments() -> None:
    lf = [p for p in CORPUS if b"\n" in _read(p)]
    cr = [p for p in CORPUS if b"\n" not in _read(p)]
    assert lf and cr
    for path in lf[:5] + cr[:5]:
        assert all("\n" not in s.raw for s in parse(_read(path)).segments)


# --- header ---------------------------------------------------------------------------------------

def test_header_properties(adt: Message) -> None:
    assert adt.type_key == "ADT^A01"
    assert (adt.message_code, adt.trigger_event, adt.structure) == ("ADT", "A01", "ADT_A01")
    assert adt.control_id == "CTRL-1"
    assert adt.processing_id == "P"
    assert adt.version == "2.5"
    assert adt.sending_application == "HIS"
    assert adt.sending_facility == "CHU-RABAT"
    assert adt.receiving_application == "DMP"
    assert adt.receiving_facility == "MS-MAROC"
    assert adt.accept_ack_type == "AL"
    assert adt.application_ack_type == "NE"
    assert adt.charset == "UNICODE UTF-8"
    assert adt.timestamp == "20240105103000+0100"
    assert adt.delimiters == Delimiters("|", "^", "~", "\\", "&", None)
    assert adt.encoding == "utf-8"
    assert adt.raw == ADT
    assert "CTRL-1" in repr(adt) and "Yassine" not in repr(adt)


def test_header_absent_values_are_empty() -> None:
    msg = parse("MSH|^~\\&|||||||ORU|1||2.3")
    assert msg.trigger_event == "" and msg.structure == "" and msg.type_key == "ORU"
    assert msg.processing_id == "" and msg.charset == "" and msg.accept_ack_type == ""


def test_msh_numbering(adt: Message) -> None:
    assert adt.get("MSH-1") == "|"
    assert adt.get("MSH-2") == "^~\\&"
    assert adt.get("MSH-3") == "HIS^1.2.3^ISO"
    assert adt.get("MSH-3.2") == "1.2.3"
    assert adt.get("MSH-9.2") == "A01"
    assert adt.get("MSH-10") == "CTRL-1"
    msh = adt.segments[0]
    assert msh.fields_raw(1) == "|" and msh.fields_raw(2) == "^~\\&" and msh.fields_raw(0) == "MSH"
    assert msh.field_count == 18
    node = adt.select("MSH-2")[0]
    assert node.level == LITERAL and node.text == "^~\\&" and node.select("1") == []


# --- terser paths ---------------------------------------------------------------------------------

def test_fields_components_subcomponents(adt: Message) -> None:
    assert adt.get("PID-5") == "EL ALAMI^Yassine^M"
    assert adt.get("PID-5.1") == "EL ALAMI"
    assert adt.get("PID-5.2") == "Yassine"
    assert adt.get("PID-3") == "123^^^CHU&1.2.3&ISO^MR"
    assert adt.get("PID-3.4") == "CHU&1.2.3&ISO"
    assert adt.get("PID-3.4.2") == "1.2.3"
    assert adt.get("PID-3[1].4.3") == "ISO"
    assert adt.get("PID-11.3") == "Rabat"
    assert adt.get("PV1-19") == "V-55"
    assert adt.get("PV1-44") == "20240105103000"
    assert adt.get("PV1-45") == "20240106"


def test_repetitions(adt: Message) -> None:
    assert adt.get("PID-3[2]") == "CIN-9^^^DGSN^NI"
    assert adt.get("PID-3[2].1") == "CIN-9"
    assert adt.get("PID-3[2].5") == "NI"
    assert adt.get_all("PID-3[*].1") == ["123", "CIN-9"]
    assert adt.get_all("PID-3[*].5") == ["MR", "NI"]
    assert adt.get("PID-3[3]") is None
    assert adt.get_all("PID-3[*]") == ["123^^^CHU&1.2.3&ISO^MR", "CIN-9^^^DGSN^NI"]


def test_segment_indexes_and_wildcards(adt: Message) -> None:
    assert adt.get("OBX-5") == "72"
    assert adt.get("OBX[1]-5") == "72"
    assert adt.get("OBX[2]-5") == "first"
    assert adt.get("OBX[2]-5[2]") == "second&half"
    assert adt.get("OBX[4]-5") is None
    assert adt.get_all("OBX[*]-1") == ["1", "2", "3"]
    assert adt.get_all("OBX[*]-5") == ["72", "first", "line1\nline2 | ^ ~ \\ bold"]
    assert adt.get_all("OBX[*]-5[*]") == ["72", "first", "second&half", "line1\nline2 | ^ ~ \\ bold"]
    assert adt.get_all("OBX[*]-6") == ["/min", "", ""]
    assert adt.get("OBX[*]-6") == "/min"
    assert len(adt.select("OBX[*]")) == 3
    assert adt.select("OBX[2]")[0].get("1") == "2"
    assert adt.get("PID") == adt.segments[2].raw


def test_z_segments(adt: Message) -> None:
    assert adt.get("ZPD-1") == "custom^value&sub"
    assert adt.get("ZPD-1.2") == "value&sub"
    assert adt.get("ZPD-1.2.2") == "sub"
    assert adt.segments_named("ZPD")[0].name == "ZPD"


def test_absent_values(adt: Message) -> None:
    assert adt.get("NK1-2") is None
    assert adt.get_all("NK1[*]-2") == []
    assert adt.select("NK1") == []
    assert adt.get("PID-99") is None
    assert adt.get("PID-5.9") is None
    assert adt.get("PID-2") is None  # present but empty
    assert adt.get_all("PID-2") == [""]
    assert adt.get_all("PID-2[*]") == []
    assert adt.select("PID-99")[0].is_empty


def test_select_and_relative_paths(adt: Message) -> None:
    pid = adt.segments_named("PID")[0]
    assert isinstance(pid, Segment) and isinstance(pid, Node)
    assert pid.name == "PID" and pid.field_count == 11
    assert pid.fields_raw(3) == "123^^^CHU&1.2.3&ISO^MR~CIN-9^^^DGSN^NI"
    assert pid.fields_raw(50) == ""
    assert pid.get("3") == "123^^^CHU&1.2.3&ISO^MR"
    assert pid.get_all("3[*].1") == ["123", "CIN-9"]
    assert pid.get("5.1") == "EL ALAMI"
    assert pid.get("3[1].4.2") == "1.2.3"
    reps = adt.select("PID-3[*]")
    assert [r.get("1") for r in reps] == ["123", "CIN-9"]
    assert reps[0].get("4.1") == "CHU"
    comp = reps[0].select("4")[0]
    assert comp.get("2") == "1.2.3" and comp.get_all("3") == ["ISO"]
    sub = comp.select("3")[0]
    assert sub.text == "ISO" and not sub.is_empty
    with pytest.raises(ValueError):
        sub.get("1")
    assert pid.text == pid.raw


def test_node_text_decodes_escapes(adt: Message) -> None:
    node = adt.select("OBX[3]-5")[0]
    assert node.raw == "line1\\.br\\line2 \\F\\ \\S\\ \\R\\ \\E\\ \\H\\bold\\N\\"
    assert node.text == "line1\nline2 | ^ ~ \\ bold"
    assert str(node) == node.text
    assert "line" not in repr(node)


@pytest.mark.parametrize("bad", ["", "pid-3", "PID-", "PID-3[0]", "PID-x", "PID-3.*", "PID[-1]-3", "PID-3..1",
                                 "PIDS-3", "PID-3[2", "PID-1.2.3.4"])
def test_invalid_path(adt: Message, bad: str) -> None:
    with pytest.raises(ValueError, match="path"):
        adt.get(bad)


def test_invalid_relative_path(adt: Message) -> None:
    with pytest.raises(ValueError, match="path"):
        adt.segments[2].get("PID-3")
    with pytest.raises(ValueError, match="path"):
        adt.select("PID-3")[0].get("3[*]")


def test_paths_are_compiled_once() -> None:
    compile_path.cache_clear()
    compile_path("PID-3[*].1")
    compile_path("PID-3[*].1")
    assert compile_path.cache_info().hits == 1
    assert compile_path("OBX[*]-5[2].1.3").text == "OBX[*]-5[2].1.3"


# --- escapes --------------------------------------------------------------------------------------

D = Delimiters()


@pytest.mark.parametrize(("raw", "text"), [
    ("a\\F\\b", "a|b"), ("a\\S\\b", "a^b"), ("a\\T\\b", "a&b"), ("a\\R\\b", "a~b"), ("a\\E\\b", "a\\b"),
    ("\\X41\\", "A"), ("\\X0D0A\\", "\r\n"), ("\\XD8A7D984\\", "ال"), ("x\\.br\\y", "x\ny"),
    ("\\H\\bold\\N\\", "bold"), ("\\.sp2\\", "\n\n"), ("\\.in+4\\x", "x"), ("\\.ce\\x", "x"),
    ("\\Zcustom\\", "\\Zcustom\\"), ("\\C2842\\", "\\C2842\\"), ("C:\\path", "C:\\path"),
    ("a\\Q\\b\\F\\", "a\\Q\\b|"), ("\\XZZ\\", "\\XZZ\\"), ("\\X4\\", "\\X4\\"), ("\\XFF\\", "\\XFF\\"),
    ("\\\\", "\\\\"), ("plain", "plain"),
])
def test_unescape(raw: str, text: str) -> None:
    assert unescape(raw, D) == text


def test_unescape_hex_uses_message_charset() -> None:
    assert unescape("\\XE9\\", D, "iso8859-1") == "é"
    assert unescape("\\XC7\\", D, "iso8859-6") == "ا"
    msg = parse("MSH|^~\\&|||||||ADT^A01|1|P|2.5||||||8859/1\rPID|1||||Caf\\XE9\\")
    assert msg.get("PID-5") == "Café"


def test_truncation_escape() -> None:
    msg = parse("MSH|^~\\&#|||||||ADT^A01|1|P|2.7\rPID|1||||A\\P\\B")
    assert msg.delimiters.truncation == "#"
    assert msg.delimiters.encoding_chars == "^~\\&#"
    assert msg.get("PID-5") == "A#B"
    assert escape("A#B", msg.delimiters) == "A\\P\\B"


def test_escape_round_trip() -> None:
    text = "a|b^c~d\\e&f\r\ng العمراني"
    enc = escape(text, D)
    assert not any(c in enc for c in "|^~&\r\n")
    assert unescape(enc, D) == text
    assert escape("plain", D) == "plain"


def test_arabic_utf8_name() -> None:
    msg = parse(("MSH|^~\\&|||||||ADT^A01|1|P|2.5||||||UNICODE UTF-8\r"
                 "PID|1||42^^^X^MR||العمراني^محمد").encode())
    assert msg.get("PID-5.1") == "العمراني"
    assert msg.get("PID-5.2") == "محمد"
    assert msg.to_bytes().decode("utf-8") == msg.encode()


def test_escaped_arabic_hex_in_utf8() -> None:
    hexed = "".join(f"{b:02X}" for b in "محمد".encode())
    msg = parse(f"MSH|^~\\&|||||||ADT^A01|1|P|2.5\rPID|1||||X^\\X{hexed}\\")
    assert msg.get("PID-5.2") == "محمد"


def test_custom_delimiters() -> None:
    msg = parse("MSH#$*!@#A#B###20240101##ADT$A04#9#P#2.4\rPID#1##X$$$Y@Z*W##A!S!B")
    assert msg.delimiters == Delimiters("#", "$", "*", "!", "@", None)
    assert msg.type_key == "ADT^A04"
    assert msg.get("PID-3.4.2") == "Z"
    assert msg.get("PID-3[2]") == "W"
    assert msg.get("PID-5") == "A$B"
    assert msg.get("MSH-1") == "#" and msg.get("MSH-2") == "$*!@"


# --- charsets -------------------------------------------------------------------------------------

def _msh(charset: str = "") -> str:
    return "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5" + (f"||||||{charset}" if charset else "")


def test_charset_latin1() -> None:
    data = (_msh("8859/1") + "\rPID|1||||Benjelloun^Hélène").encode("latin-1")
    msg = parse(data)
    assert msg.encoding == "iso8859-1" and msg.charset == "8859/1"
    assert msg.get("PID-5.2") == "Hélène"
    assert msg.to_bytes() == data + b"\r"


def test_charset_arabic_8859_6() -> None:
    data = (_msh("8859/6") + "\rPID|1||||العمراني^محمد").encode("iso8859-6")
    msg = parse(data)
    assert msg.get("PID-5.1") == "العمراني"
    assert msg.to_bytes() == data + b"\r"


@pytest.mark.parametrize(("name", "codec"), [("ASCII", "ascii"), ("UNICODE UTF-8", "utf-8"), ("UTF-8", "utf-8"),
                                             ("ISO IR100", "iso8859-1"), ("ISO IR127", "iso8859-6"),
                                             ("windows-1256", "cp1256")])
def test_charset_names(name: str, codec: str) -> None:
    assert parse((_msh(name) + "\rPID|1").encode("ascii")).encoding == codec


def test_charset_default_utf8_and_bom() -> None:
    msg = parse(b"\xef\xbb\xbf" + (_msh() + "\rPID|1||||\u00e9").encode())
    assert msg.encoding == "utf-8" and msg.get("PID-5") == "é"


def test_charset_argument_overrides_msh18() -> None:
    data = (_msh("UNICODE UTF-8") + "\rPID|1||||é").encode("latin-1")
    with pytest.raises(HL7Error):
        parse(data)
    assert parse(data, charset="8859/1").get("PID-5") == "é"


def test_invalid_utf8_bytes() -> None:
    data = _msh().encode() + b"\rPID|1||||\xff\xfe"
    with pytest.raises(HL7Error) as exc:
        parse(data)
    assert exc.value.code == 102 and exc.value.location == "MSH-18"
    assert "not valid UTF-8" in exc.value.text and str(len(data) - 2) in exc.value.text


def test_invalid_ascii_bytes() -> None:
    with pytest.raises(HL7Error) as exc:
        parse((_msh("ASCII") + "\rPID|1||||é").encode("utf-8"))
    assert (exc.value.code, exc.value.location) == (102, "MSH-18")


def test_unknown_charset() -> None:
    with pytest.raises(HL7Error) as exc:
        parse((_msh("KLINGON-8") + "\rPID|1").encode())
    assert (exc.value.code, exc.value.location) == (103, "MSH-18")
    with pytest.raises(HL7Error):
        parse((_msh("rot13") + "\rPID|1").encode())


def test_to_bytes_unencodable() -> None:
    msg = parse(_msh("ASCII") + "\rPID|1||||محمد")
    with pytest.raises(HL7Error) as exc:
        msg.to_bytes()
    assert exc.value.location == "MSH-18"


# --- separators -----------------------------------------------------------------------------------

@pytest.mark.parametrize("sep", ["\r", "\n", "\r\n"])
def test_segment_separators(sep: str) -> None:
    text = sep.join([_msh(), "PID|1||X", "", "PV1|1|I", ""]) + sep
    msg = parse(text)
    assert [s.name for s in msg.segments] == ["MSH", "PID", "PV1"]
    assert msg.encode() == _msh() + "\rPID|1||X\rPV1|1|I\r"
    assert msg.raw == text


def test_leading_whitespace_and_bom() -> None:
    msg = parse("\ufeff \r\n\x0b" + _msh() + "\rPID|1")
    assert msg.encode() == _msh() + "\rPID|1\r"
    assert len(msg) == 2 and msg[1].name == "PID" and [s.name for s in msg] == ["MSH", "PID"]


def test_whitespace_only_segments_dropped() -> None:
    assert [s.name for s in parse(_msh() + "\r  \rPID|1\r\t\r").segments] == ["MSH", "PID"]


# --- errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "code", "location"), [
    ("", 100, "MSH"),
    ("PID|1|2", 100, "MSH"),
    ("garbage", 100, "MSH"),
    ("MSH", 101, "MSH-2"),
    ("MSH|", 101, "MSH-2"),
    ("MSH||A|B", 101, "MSH-2"),
    ("MSHA^~\\&|x", 102, "MSH-2"),
    ("MSH|^~\\|x", 102, "MSH-2"),
    ("MSH|^~\\&&|x", 102, "MSH-2"),
    ("MSH|^~\\a|x", 102, "MSH-2"),
    ("MSH|^~|&|x", 102, "MSH-2"),
    ("MSH|^~\\&$%|x", 102, "MSH-2"),
    ("MSH ^~\\&|x", 102, "MSH-2"),
    ("MSH|^~\\&|A|B|C|D|20240101||^A01|1|P|2.5", 101, "MSH-9"),
    ("MSH|^~\\&|A|B|C|D|20240101", 101, "MSH-9"),
    ("MSH|^~\\&|A|B|C|D|20240101||ADT^A01||P|2.5", 101, "MSH-10"),
    ("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P", 101, "MSH-12"),
    ("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|", 101, "MSH-12"),
    ("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|^x", 101, "MSH-12"),
    ("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rpid|1", 100, "2"),
    ("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPID|1\rPV1^1", 100, "3"),
    ("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPID|1\r\rPV|1", 100, "3"),
    ("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPIDX|1", 100, "2"),
    ("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\r1ID|1", 100, "2"),
    ("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPÏD|1", 100, "2"),
])
def test_parse_errors(text: str, code: int, location: str) -> None:
    with pytest.raises(HL7Error) as exc:
        parse(text)
    assert (exc.value.code, exc.value.location) == (code, location)
    assert exc.value.severity == "E"
    with pytest.raises(HL7Error) as exc2:
        parse(text.encode("utf-8"))
    assert (exc2.value.code, exc2.value.location) == (code, location)


def test_errors_carry_no_patient_data() -> None:
    with pytest.raises(HL7Error) as exc:
        parse("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPID|1||SECRET\rsecret-name|x")
    assert "secret" not in str(exc.value).lower()


def test_parse_wrong_type() -> None:
    with pytest.raises(TypeError):
        parse(42)  # type: ignore[arg-type]


def test_hl7error_fields() -> None:
    err = HL7Error(101, "PID-3", "missing")
    assert (err.code, err.location, err.text, err.severity) == (101, "PID-3", "missing", "E")
    assert err.code_name == "Required field missing"
    assert "PID-3" in str(err) and err.to_dict()["code"] == 101
    assert HL7Error(102, "", "x", "W").severity == "W"


# --- dates ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    ("2024", "2024"), ("202401", "2024-01"), ("20240105", "2024-01-05"), ("20240105+0100", "2024-01-05"),
    ("2024010512", "2024-01-05T12:00:00+01:00"), ("202401051226", "2024-01-05T12:26:00+01:00"),
    ("20240105122633", "2024-01-05T12:26:33+01:00"), ("20240105122633.1234", "2024-01-05T12:26:33.1234+01:00"),
    ("198808181126+0215", "1988-08-18T11:26:00+02:15"), ("20240229235959-0500", "2024-02-29T23:59:59-05:00"),
    ("20000229", "2000-02-29"),
    ("20240105122633+0000", "2024-01-05T12:26:33+00:00"), ("", ""), (" 20240105 ", "2024-01-05"),
])
def test_hl7_datetime_to_fhir(value: str, expected: str) -> None:
    assert hl7_datetime_to_fhir(value) == expected


def test_hl7_datetime_default_tz() -> None:
    assert hl7_datetime_to_fhir("202401051226", default_tz="Z") == "2024-01-05T12:26:00Z"
    assert hl7_datetime_to_fhir("202401051226", default_tz=None) == "2024-01-05T12:26:00"


@pytest.mark.parametrize("value", ["20241301", "20240230", "20230229", "19000229", "20240431",
                                   "2024010525", "202401051260", "20240105125960",
                                   "00000101", "20240100", "20240105+1500", "20240105+0160", "2024-01-05", "24",
                                   "20240105T1200", "abc", "2024010", "١٩٨٠"])
def test_hl7_datetime_invalid(value: str) -> None:
    with pytest.raises(HL7Error) as exc:
        hl7_datetime_to_fhir(value, "PID-7")
    assert (exc.value.code, exc.value.location) == (102, "PID-7")
    assert value not in exc.value.text


# --- validation -----------------------------------------------------------------------------------

def test_validate_ok(adt: Message) -> None:
    assert validate_message(adt) == []


def test_validate_corpus_adt_are_mostly_valid() -> None:
    msgs = [parse(_read(p)) for p in MS_FILES if os.path.basename(p).startswith("ADT-A01")]
    assert all(validate_message(m) == [] for m in msgs)


def _codes(text: str) -> list[tuple[int, str]]:
    return [(e.code, e.location) for e in validate_message(parse(text))]


def test_validate_reports_every_problem() -> None:
    text = ("MSH|^~\\&|A|B|C|D|20241301||ADT^A01|1|X|2.5\rEVN|A01|2024023\r"
            "PID|1||^^^X||N||20240230\r" + "|".join(["PV1", "1", "I"] + [""] * 41 + ["2025130", "20251340"]))
    assert _codes(text) == [(102, "MSH-7"), (202, "MSH-11"), (101, "PID-3"), (102, "EVN-2"), (102, "PV1-44"),
                            (102, "PV1-45"), (102, "PID-7")]


def test_validate_missing_pid_and_msh7() -> None:
    assert _codes("MSH|^~\\&|A|B|C|D|||ADT^A01|1||2.5\rEVN|A01") == [
        (101, "MSH-7"), (101, "MSH-11"), (100, "PID")]


def test_validate_non_adt_without_pid() -> None:
    assert _codes("MSH|^~\\&|A|B|C|D|20240101||MFN^M02|1|T|2.5\rMFI|1") == []
    assert _codes("MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|D|2.5\rPID|1||X||||1990") == []
    assert _codes("MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|D|2.5\rPID|1||X||||199002301") == [(102, "PID-7")]
