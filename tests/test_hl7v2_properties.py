"""Property tests (hypothesis) of the HL7 v2 parser, escapes, dates and ACKs."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mediator.hl7v2 import (
    Delimiters,
    HL7Error,
    Message,
    build_ack,
    escape,
    hl7_datetime_to_fhir,
    parse,
    sniff_header,
    unescape,
)

SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
D = Delimiters()

# printable text including every delimiter, CR/LF and Arabic / Latin letters
TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from("|^~\\&#\r\n .-:/"),
        st.characters(min_codepoint=0x20, max_codepoint=0x7E),
        st.characters(min_codepoint=0x0600, max_codepoint=0x06FF),
        st.characters(min_codepoint=0xC0, max_codepoint=0xFF),
    ),
    max_size=20,
)
SEG_NAME = st.from_regex(r"\A(?!MSH)[A-Z][A-Z0-9]{2}\Z")
# a field: repetitions of components of subcomponents of escaped text
FIELD = st.lists(st.lists(st.lists(TEXT, min_size=1, max_size=3), min_size=1, max_size=3), min_size=1, max_size=2)


def _encode_field(field: list[list[list[str]]]) -> str:
    return "~".join("^".join("&".join(escape(s, D) for s in comp) for comp in rep) for rep in field)


@st.composite
def messages(draw: st.DrawFn) -> tuple[str, list[tuple[str, list[list[list[list[str]]]]]]]:
    segments = draw(st.lists(st.tuples(SEG_NAME, st.lists(FIELD, max_size=5)), max_size=6))
    control_id = draw(st.from_regex(r"\A[A-Za-z0-9]{1,20}\Z"))
    lines = [f"MSH|^~\\&|APP|FAC|||20240101||ADT^A01|{control_id}|P|2.5||||||UNICODE UTF-8"]
    for name, fields in segments:
        lines.append("|".join([name, *(_encode_field(f) for f in fields)]))
    return "\r".join(lines) + "\r", segments


@SETTINGS
@given(TEXT)
def test_escape_round_trip(text: str) -> None:
    encoded = escape(text, D)
    assert not any(c in encoded for c in "|^~&\r\n")
    assert unescape(encoded, D) == text


@SETTINGS
@given(messages())
def test_generated_messages_round_trip(case: tuple[str, list]) -> None:
    text, segments = case
    msg = parse(text)
    assert msg.encode() == text
    assert parse(msg.encode()).encode() == text
    assert parse(msg.to_bytes()).encode() == text
    assert [s.name for s in msg.segments[1:]] == [name for name, _ in segments]
    for i, (name, fields) in enumerate(segments, 1):
        seg = msg.segments[i]
        occurrence = sum(1 for n, _ in segments[:i] if n == name)
        for f, field in enumerate(fields, 1):
            for r, rep in enumerate(field, 1):
                for c, comp in enumerate(rep, 1):
                    for s, value in enumerate(comp, 1):
                        assert seg.get_all(f"{f}[{r}].{c}.{s}") == [value]
                        assert msg.get_all(f"{name}[{occurrence}]-{f}[{r}].{c}.{s}") == [value]
            assert len(seg.select(f"{f}[*]")) == (0 if field == [[[""]]] else len(field))


@SETTINGS
@given(st.binary(max_size=300))
def test_parse_arbitrary_bytes(data: bytes) -> None:
    try:
        msg = parse(data)
    except HL7Error as exc:
        assert isinstance(exc.code, int) and isinstance(exc.location, str)
        return
    assert isinstance(msg, Message)
    msg.encode()


@SETTINGS
@given(st.binary(max_size=300))
def test_parse_bytes_after_msh_prefix(data: bytes) -> None:
    try:
        msg = parse(b"MSH|^~\\&|" + data)
    except HL7Error:
        return
    assert parse(msg.encode()).encode() == msg.encode()


@SETTINGS
@given(st.text(max_size=300))
def test_parse_arbitrary_text_after_msh_prefix(text: str) -> None:
    try:
        msg = parse("MSH|^~\\&|" + text)
    except HL7Error:
        return
    encoded = msg.encode()
    assert parse(encoded).encode() == encoded
    for seg in msg.segments:
        for n in range(seg.field_count + 1):
            for node in seg.select(f"{n}[*]"):
                node.text  # noqa: B018
                node.get_all("1.1")
    msg.type_key, msg.control_id, msg.charset  # noqa: B018
    text_ack = build_ack(msg, "AE", errors=[HL7Error(102, "PID-7", "x")], text=text[:20])
    assert parse(text_ack).get("MSA-2") == (msg.get("MSH-10") or None)


@SETTINGS
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(lambda t: ("MSH|^~\\&|" + t).encode())))
def test_sniff_header_never_raises_and_nak_parses(data: bytes) -> None:
    header = sniff_header(data)
    assert all(isinstance(v, str) for v in header.values())
    text = build_ack(None, "AR", header=header, errors=[HL7Error(100, "MSH", "x")])
    ack = parse(text)
    assert ack.message_code == "ACK"


@SETTINGS
@given(st.text(alphabet="0123456789+-.", max_size=24))
def test_datetime_returns_or_raises_hl7error(value: str) -> None:
    try:
        out = hl7_datetime_to_fhir(value, "PID-7")
    except HL7Error as exc:
        assert exc.code == 102 and exc.location == "PID-7"
        return
    assert out == "" or out[:4] == value.strip()[:4]


@SETTINGS
@given(st.datetimes(), st.integers(min_value=-14 * 60, max_value=14 * 60))
def test_datetime_valid_values(moment: object, offset_minutes: int) -> None:
    sign = "+" if offset_minutes >= 0 else "-"
    hh, mm = divmod(abs(offset_minutes), 60)
    value = moment.strftime("%Y%m%d%H%M%S") + f"{sign}{hh:02d}{mm:02d}"  # type: ignore[attr-defined]
    if moment.year < 1000:  # type: ignore[attr-defined]
        return
    expected = moment.strftime("%Y-%m-%dT%H:%M:%S") + f"{sign}{hh:02d}:{mm:02d}"  # type: ignore[attr-defined]
    assert hl7_datetime_to_fhir(value) == expected
