"""A fast, lazy HL7 v2 (ER7) parser with terser-style access.

:func:`parse` only decodes the bytes, splits the segments and checks the MSH header; a segment is
split into fields the first time one of its fields is read (and the split is cached), repetitions,
components and subcomponents are split on access, and escape sequences are decoded only when a
value is read. The original text of every segment is kept, so :meth:`Message.encode` is lossless.

Values are read with terser paths (see :mod:`mediator.hl7v2.path`)::

    msg = parse(data)
    msg.type_key                  # "ADT^A01"
    msg.get("PID-5.1")            # family name, unescaped, None when absent or empty
    msg.get_all("PID-3[*].1")     # every identifier
    for obx in msg.segments_named("OBX"):
        obx.get("5")              # relative paths on nodes
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice, repeat

from .errors import HL7Error
from .escape import escape, unescape
from .path import REPETITION, SEGMENT, Path, compile_path, compile_relative

__all__ = ["Delimiters", "Message", "Node", "Segment", "parse", "python_codec", "LITERAL"]

#: level of the MSH-1 / MSH-2 nodes: literal values, never split nor unescaped
LITERAL = 9

#: segments whose field 1 is the field separator itself
_HEADER_SEGMENTS = frozenset({"MSH", "BHS", "FHS"})
_LEADING_JUNK = " \t\r\n\x0b\x00\ufeff"
_SEGMENT_NAME = re.compile(r"[A-Z][A-Z0-9]{2}")
_valid_names: set[str] = {"MSH"}  # cache of names that passed _SEGMENT_NAME (at most 26*36*36 entries)


@dataclass(frozen=True, slots=True)
class Delimiters:
    """The delimiters of a message, from MSH-1 and MSH-2."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str | None = None  # v2.7+ fifth encoding character

    @property
    def encoding_chars(self) -> str:
        """The MSH-2 value (``^~\\&``, plus the truncation character when there is one)."""
        return f"{self.component}{self.repetition}{self.escape}{self.subcomponent}{self.truncation or ''}"

    @classmethod
    def from_msh(cls, field: str, encoding_chars: str) -> Delimiters:
        """Validated delimiters from MSH-1 and MSH-2; raises :class:`HL7Error` (location ``MSH-2``)."""
        return _delimiters(field, encoding_chars)


DEFAULT_DELIMITERS = Delimiters()
_delimiter_cache: dict[tuple[str, str], Delimiters] = {("|", "^~\\&"): DEFAULT_DELIMITERS}


def _delimiters(fs: str, enc: str) -> Delimiters:
    found = _delimiter_cache.get((fs, enc))
    if found is not None:
        return found
    if len(fs) != 1 or fs.isalnum() or fs.isspace() or not fs.isprintable():
        raise HL7Error(102, "MSH-2", "invalid field separator (MSH-1)")
    if not enc:
        raise HL7Error(101, "MSH-2", "encoding characters (MSH-2) missing")
    if (len(enc) not in (4, 5) or len(set(enc)) != len(enc) or fs in enc
            or any(c.isalnum() or c.isspace() or not c.isprintable() for c in enc)):
        raise HL7Error(102, "MSH-2", "invalid encoding characters (MSH-2): need 4 or 5 distinct "
                                     "non-alphanumeric characters different from the field separator")
    d = Delimiters(fs, enc[0], enc[1], enc[2], enc[3], enc[4] if len(enc) == 5 else None)
    if len(_delimiter_cache) < 256:
        _delimiter_cache[(fs, enc)] = d
    return d


# --- character sets ---------------------------------------------------------------------------------

#: HL7 table 0211 names (and a few common spellings) → Python codec
_HL7_CHARSETS: dict[str, str] = {
    "": "utf-8",
    "ASCII": "ascii", "US-ASCII": "ascii", "ISO IR6": "ascii", "ISO-IR6": "ascii",
    "UNICODE": "utf-8", "UNICODE UTF-8": "utf-8", "UTF-8": "utf-8", "UTF8": "utf-8",
    "UNICODE UTF-16": "utf-16", "UTF-16": "utf-16", "UNICODE UTF-32": "utf-32", "UTF-32": "utf-32",
    "8859/1": "iso8859-1", "ISO IR100": "iso8859-1",
    "8859/2": "iso8859-2", "ISO IR101": "iso8859-2",
    "8859/3": "iso8859-3", "ISO IR109": "iso8859-3",
    "8859/4": "iso8859-4", "ISO IR110": "iso8859-4",
    "8859/5": "iso8859-5", "ISO IR144": "iso8859-5",
    "8859/6": "iso8859-6", "ISO IR127": "iso8859-6",
    "8859/7": "iso8859-7", "ISO IR126": "iso8859-7",
    "8859/8": "iso8859-8", "ISO IR138": "iso8859-8",
    "8859/9": "iso8859-9", "ISO IR148": "iso8859-9",
    "8859/15": "iso8859-15", "ISO IR203": "iso8859-15",
    "ISO IR87": "iso2022-jp", "ISO IR159": "iso2022-jp-2", "ISO IR13": "shift-jis",
    "GB 18030-2000": "gb18030", "GB18030": "gb18030", "KS X 1001": "euc-kr", "BIG-5": "big5",
    "BIG5": "big5", "CNS 11643-1992": "big5",
}
_NOT_CHARSETS = ("undefined", "idna", "punycode", "escape", "utf_7", "utf-7")


@lru_cache(maxsize=128)
def python_codec(name: str) -> str | None:
    """The Python codec for an HL7 character set name (MSH-18), None when unknown.

    ``""`` (no MSH-18) means UTF-8, the norm here. Besides the table-0211 names, any Python text
    codec name (``windows-1256``, ``latin-1``…) is accepted.
    """
    key = " ".join(name.strip().upper().replace("_", " ").split())
    found = _HL7_CHARSETS.get(key)
    if found is not None:
        return found
    try:
        info = codecs.lookup(name.strip())
    except (LookupError, ValueError, TypeError):
        return None
    if not getattr(info, "_is_text_encoding", True) or any(x in info.name for x in _NOT_CHARSETS):
        return None
    return info.name


def _sniff_charset(data: bytes) -> str:
    """MSH-18 (first repetition, first component) read from the raw bytes; ``""`` when absent."""
    start = data.find(b"MSH", 0, 64)
    if start < 0:
        return ""
    end = len(data)
    for sep in (b"\r", b"\n"):
        i = data.find(sep, start)
        if 0 <= i < end:
            end = i
    line = data[start:end]
    if len(line) < 4:
        return ""
    parts = line.split(line[3:4])
    if len(parts) < 18:
        return ""
    value = parts[17]
    enc = parts[1]
    if len(enc) >= 2:
        value = value.split(enc[1:2])[0].split(enc[0:1])[0]
    return value.decode("ascii", "replace").strip()


# --- nodes ------------------------------------------------------------------------------------------

def _nth(value: str, sep: str, n: int) -> str:
    """The n-th (1-based) part of ``value`` split on ``sep``, ``""`` when there are fewer parts."""
    if n == 1:
        i = value.find(sep)
        return value if i < 0 else value[:i]
    parts = value.split(sep)
    return parts[n - 1] if n <= len(parts) else ""


def _descend(raw: str, rep: int | None, comp: int | None, sub: int | None, d: Delimiters,
             out: list[str]) -> None:
    """Append the raw values selected below a field value (``rep`` None: no repetition level)."""
    if rep is None:
        reps: list[str] | tuple[str, ...] = (raw,)
    elif rep == 0:
        reps = raw.split(d.repetition) if raw else ()
    else:
        reps = (_nth(raw, d.repetition, rep),)
    if comp is None:
        if sub is None:
            out.extend(reps)
        else:  # relative path on a component node: subcomponents
            out.extend(_nth(r, d.subcomponent, sub) for r in reps)
        return
    for r in reps:
        c = _nth(r, d.component, comp)
        out.append(c if sub is None else _nth(c, d.subcomponent, sub))


class Node:
    """A selected part of a message: a segment, a field repetition, a component or a subcomponent.

    ``text`` is the value with its escape sequences decoded. For a leaf (a subcomponent, or a
    component/repetition without deeper delimiters) it is the exact value; for a composite, the
    delimiters are kept and the escape sequences of its leaves are decoded, so an escaped delimiter
    (``\\S\\``) becomes indistinguishable from a real one: read composites component by component.
    For a segment, ``text`` is the raw (encoded) segment. ``raw`` is always the encoded text.
    """

    __slots__ = ("_raw", "_level", "_msg")

    def __init__(self, raw: str, level: int, msg: Message) -> None:
        self._raw = raw
        self._level = level
        self._msg = msg

    @property
    def raw(self) -> str:
        """The encoded (escaped) text of the node."""
        return self._raw

    @property
    def level(self) -> int:
        """SEGMENT (0), REPETITION (1), COMPONENT (2), SUBCOMPONENT (3) or LITERAL (MSH-1/MSH-2)."""
        return self._level

    @property
    def text(self) -> str:
        """The value with its escape sequences decoded (see the class docstring)."""
        raw = self._raw
        if self._level == LITERAL or self._level == SEGMENT:
            return raw
        msg = self._msg
        return unescape(raw, msg.delimiters, msg.encoding)

    @property
    def is_empty(self) -> bool:
        """True when the node has no value at all."""
        return not self._raw

    def _select_raw(self, rel: str) -> tuple[list[str], int]:
        if self._level == LITERAL:  # MSH-1 / MSH-2: never split
            compile_relative(rel, REPETITION)  # still reject invalid paths
            return [], LITERAL
        p = compile_relative(rel, self._level)  # ValueError for a subcomponent: leaves have no children
        out: list[str] = []
        _descend(self._raw, None, p.comp, p.sub, self._msg.delimiters, out)
        return out, p.level

    def select(self, rel: str) -> list[Node]:
        """The nodes at a path relative to this one (``"4.1"`` on a repetition, ``"2"`` on a component)."""
        raws, level = self._select_raw(rel)
        msg = self._msg
        return [Node(r, level, msg) for r in raws]

    def get(self, rel: str) -> str | None:
        """The first non-empty value at a relative path, unescaped; None when absent or empty."""
        for value in self.get_all(rel):
            if value:
                return value
        return None

    def get_all(self, rel: str) -> list[str]:
        """Every value at a relative path, unescaped (empty strings kept, positions preserved)."""
        raws, _ = self._select_raw(rel)
        msg = self._msg
        d, enc = msg.delimiters, msg.encoding
        return [unescape(r, d, enc) for r in raws]

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:  # no values: they may be patient data
        return f"<{type(self).__name__} level={self._level} length={len(self._raw)}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Node):
            return NotImplemented
        return self._raw == other._raw and self._level == other._level

    def __hash__(self) -> int:
        return hash((self._raw, self._level))


class Segment(Node):
    """One segment; fields are split on first access and cached.

    Field numbering follows HL7: field 0 is the segment name and, for MSH (BHS, FHS), field 1 is
    the field separator itself and field 2 the encoding characters.
    """

    __slots__ = ("name", "_fields")

    def __init__(self, raw: str, msg: Message, name: str | None = None) -> None:
        self._raw = raw
        self._level = SEGMENT
        self._msg = msg
        self.name = raw[:3] if name is None else name
        self._fields: list[str] | None = None

    def _split(self) -> list[str]:
        fs = self._msg.delimiters.field
        fields = self._raw.split(fs)
        if self.name in _HEADER_SEGMENTS:
            fields.insert(1, fs)
        self._fields = fields
        return fields

    @property
    def field_count(self) -> int:
        """The number of the last field present (trailing empty fields included)."""
        return len(self._fields or self._split()) - 1

    def fields_raw(self, n: int) -> str:
        """The raw (escaped) text of field ``n``, all repetitions; ``""`` when absent."""
        fields = self._fields or self._split()
        return fields[n] if 0 <= n < len(fields) else ""

    def _collect(self, field: int, rep: int | None, comp: int | None, sub: int | None,
                 out: list[str]) -> bool:
        """Append the raw values of ``field[rep].comp.sub``; True when they are literal (MSH-1/2)."""
        fields = self._fields or self._split()
        raw = fields[field] if field < len(fields) else ""
        if 1 <= field <= 2 and self.name in _HEADER_SEGMENTS:
            out.append(raw if rep in (None, 0, 1) and comp in (None, 1) and sub in (None, 1) else "")
            return True
        _descend(raw, 1 if rep is None else rep, comp, sub, self._msg.delimiters, out)
        return False

    def _select_raw(self, rel: str) -> tuple[list[str], int]:
        p = compile_relative(rel, SEGMENT)
        out: list[str] = []
        literal = self._collect(p.field, p.rep, p.comp, p.sub, out)  # type: ignore[arg-type]
        return out, LITERAL if literal else p.level

    def __repr__(self) -> str:
        return f"<Segment {self.name} fields={self.field_count}>"


# --- message ----------------------------------------------------------------------------------------

class Message:
    """A parsed HL7 v2 message. Build it with :func:`parse`."""

    __slots__ = ("segments", "delimiters", "raw", "encoding", "_index", "_msh")

    def __init__(self, raw: str, segments: list[str], delimiters: Delimiters, encoding: str,
                 msh_fields: list[str] | None = None) -> None:
        self.raw = raw
        self.delimiters = delimiters
        self.encoding = encoding  # Python codec of the message charset
        index: dict[str, list[Segment]] = {}
        segs = []
        for text in segments:
            seg = Segment(text, self)
            segs.append(seg)
            found = index.get(seg.name)
            if found is None:
                index[seg.name] = [seg]
            else:
                found.append(seg)
        self.segments: list[Segment] = segs
        self._index = index
        if msh_fields is not None:
            segs[0]._fields = msh_fields
        self._msh = segs[0]._fields or segs[0]._split()

    # -- access ------------------------------------------------------------------------------------

    def _build_index(self) -> dict[str, list[Segment]]:
        index: dict[str, list[Segment]] = {}
        for seg in self.segments:
            found = index.get(seg.name)
            if found is None:
                index[seg.name] = [seg]
            else:
                found.append(seg)
        self._index = index
        return index

    def segments_named(self, name: str) -> list[Segment]:
        """Every segment with this name, in message order."""
        return list((self._index or self._build_index()).get(name, ()))

    def _segments_for(self, p: Path) -> list[Segment]:
        segs = (self._index or self._build_index()).get(p.segment)  # type: ignore[arg-type]
        if not segs:
            return []
        i = p.seg_index
        if i is None or i == 1:
            return segs[:1]
        if i == 0:
            return segs
        return segs[i - 1:i]

    def _select_raw(self, p: Path) -> tuple[list[str], bool]:
        out: list[str] = []
        literal = False
        for seg in self._segments_for(p):
            literal = seg._collect(p.field, p.rep, p.comp, p.sub, out)  # type: ignore[arg-type]
        return out, literal

    def select(self, path: str) -> list[Node]:
        """The nodes at an absolute terser path (segments when the path names no field)."""
        p = compile_path(path)
        if p.field is None:
            return list(self._segments_for(p))
        raws, literal = self._select_raw(p)
        level = LITERAL if literal else p.level
        return [Node(r, level, self) for r in raws]

    def get(self, path: str) -> str | None:
        """The first non-empty value at an absolute terser path, unescaped; None when absent or empty.

        ``PID-5`` is the first repetition of PID-5 as a whole (its components joined by ``^``);
        read ``PID-5.1`` for the first component.
        """
        p = compile_path(path)
        if p.field is None:
            segs = self._segments_for(p)
            return segs[0]._raw if segs else None
        if not p.multi:
            segs = (self._index or self._build_index()).get(p.segment)  # type: ignore[arg-type]
            if not segs:
                return None
            i = p.seg_index
            if i is not None and i > 1:
                if i > len(segs):
                    return None
                seg = segs[i - 1]
            else:
                seg = segs[0]
            out: list[str] = []
            literal = seg._collect(p.field, p.rep, p.comp, p.sub, out)
            value = out[0]
            if not value:
                return None
            if literal or self.delimiters.escape not in value:
                return value
            return unescape(value, self.delimiters, self.encoding)
        for value in self.get_all(path):
            if value:
                return value
        return None

    def get_all(self, path: str) -> list[str]:
        """Every value at an absolute terser path, unescaped (empty strings kept where a fixed index
        selects nothing, so that ``OBX[*]-5`` gives one value per OBX)."""
        p = compile_path(path)
        if p.field is None:
            return [s._raw for s in self._segments_for(p)]
        raws, literal = self._select_raw(p)
        if literal:
            return raws
        d, enc = self.delimiters, self.encoding
        return [unescape(r, d, enc) for r in raws]

    def __iter__(self) -> Iterator[Segment]:
        return iter(self.segments)

    def __len__(self) -> int:
        return len(self.segments)

    def __getitem__(self, index: int) -> Segment:
        return self.segments[index]

    # -- header ------------------------------------------------------------------------------------

    def _hdr(self, n: int, comp: int = 1) -> str:
        fields = self._msh
        value = fields[n] if n < len(fields) else ""
        if not value:
            return ""
        d = self.delimiters
        value = _nth(_nth(value, d.repetition, 1), d.component, comp)
        if d.escape in value:
            return unescape(value, d, self.encoding)
        return value

    @property
    def message_code(self) -> str:
        """MSH-9.1, e.g. ``ADT``."""
        return self._hdr(9)

    @property
    def trigger_event(self) -> str:
        """MSH-9.2, e.g. ``A01``."""
        return self._hdr(9, 2)

    @property
    def structure(self) -> str:
        """MSH-9.3, e.g. ``ADT_A01`` (often absent before v2.3.1)."""
        return self._hdr(9, 3)

    @property
    def type_key(self) -> str:
        """``"ADT^A01"`` (``"ACK"`` when there is no trigger event)."""
        code, event = self._hdr(9), self._hdr(9, 2)
        return f"{code}^{event}" if event else code

    @property
    def control_id(self) -> str:
        """MSH-10."""
        return self._hdr(10)

    @property
    def processing_id(self) -> str:
        """MSH-11.1 (P, T or D)."""
        return self._hdr(11)

    @property
    def version(self) -> str:
        """MSH-12.1, e.g. ``2.5``."""
        return self._hdr(12)

    @property
    def sending_application(self) -> str:
        """MSH-3.1."""
        return self._hdr(3)

    @property
    def sending_facility(self) -> str:
        """MSH-4.1."""
        return self._hdr(4)

    @property
    def receiving_application(self) -> str:
        """MSH-5.1."""
        return self._hdr(5)

    @property
    def receiving_facility(self) -> str:
        """MSH-6.1."""
        return self._hdr(6)

    @property
    def timestamp(self) -> str:
        """MSH-7.1, the HL7 DTM of the message."""
        return self._hdr(7)

    @property
    def accept_ack_type(self) -> str:
        """MSH-15 (AL, NE, ER, SU; empty in original acknowledgment mode)."""
        return self._hdr(15)

    @property
    def application_ack_type(self) -> str:
        """MSH-16 (AL, NE, ER, SU; empty in original acknowledgment mode)."""
        return self._hdr(16)

    @property
    def charset(self) -> str:
        """MSH-18 (first repetition), the HL7 name of the character set; ``""`` when absent."""
        return self._hdr(18)

    # -- output ------------------------------------------------------------------------------------

    def encode(self) -> str:
        """The message text, each segment terminated by ``\\r`` (lossless: the input with its segment
        separators normalised to ``\\r``, empty segments and leading junk dropped)."""
        return "\r".join([s._raw for s in self.segments]) + "\r"

    def to_bytes(self) -> bytes:
        """:meth:`encode` in the message charset (MSH-18)."""
        try:
            return self.encode().encode(self.encoding)
        except UnicodeError as exc:
            raise HL7Error(102, "MSH-18", f"message text cannot be encoded in {self.encoding}") from exc

    def escape(self, text: str) -> str:
        """``text`` escaped with this message's delimiters."""
        return escape(text, self.delimiters)

    def __repr__(self) -> str:  # header values only, never patient data
        return f"<Message {self.type_key} control_id={self.control_id!r} segments={len(self.segments)}>"


# --- parse ------------------------------------------------------------------------------------------

def parse(data: bytes | str, *, charset: str | None = None) -> Message:
    """Parse one HL7 v2 message (ER7 encoding, no MLLP framing).

    :param data: the message; bytes are decoded with ``charset`` when given, else with the
        character set named in MSH-18 (read from the raw bytes), else UTF-8.
    :raises HL7Error: on anything that is not a usable HL7 v2 message (and never anything else
        for bytes or text input).
    """
    if isinstance(data, str):
        text = data
        encoding = None
    elif isinstance(data, bytes | bytearray | memoryview):
        raw_bytes = bytes(data)
        if raw_bytes[:2] in (b"\xff\xfe", b"\xfe\xff"):
            name, encoding = "UTF-16", "utf-16"
        else:
            name = charset if charset is not None else _sniff_charset(raw_bytes)
            encoding = python_codec(name)
            if encoding is None:
                raise HL7Error(103, "MSH-18", f"unsupported character set {name[:40]!r}")
            if encoding == "utf-8":
                name = name or "UTF-8"
                if raw_bytes[:3] == b"\xef\xbb\xbf":
                    raw_bytes = raw_bytes[3:]
        try:
            text = raw_bytes.decode(encoding)
        except UnicodeDecodeError as exc:
            raise HL7Error(102, "MSH-18", f"message is not valid {name[:40]} (byte offset {exc.start})") from None
        except (UnicodeError, LookupError):
            raise HL7Error(102, "MSH-18", f"message cannot be decoded as {name[:40]}") from None
    else:
        raise TypeError(f"parse() needs bytes or str, not {type(data).__name__}")
    return _parse_text(text, encoding, charset)


def _parse_text(text: str, encoding: str | None, charset: str | None) -> Message:
    body = text
    if not body.startswith("MSH"):
        body = body.lstrip(_LEADING_JUNK)
        if not body.startswith("MSH"):
            raise HL7Error(100, "MSH", "message does not start with an MSH segment")
    if "\n" not in body:
        segments = body.split("\r")
    elif "\r" not in body:
        segments = body.split("\n")
    else:
        segments = body.replace("\r\n", "\r").replace("\n", "\r").split("\r")
    msh = segments[0]
    if len(msh) < 4:
        raise HL7Error(101, "MSH-2", "field separator (MSH-1) and encoding characters (MSH-2) missing")
    fs = msh[3]
    fields = msh.split(fs)
    d = _delimiters(fs, fields[1])
    fields.insert(1, fs)
    comp = d.component
    if len(fields) <= 9 or not _nth(_nth(fields[9], d.repetition, 1), comp, 1):
        raise HL7Error(101, "MSH-9", "message type (MSH-9) missing")
    if len(fields) <= 10 or not fields[10]:
        raise HL7Error(101, "MSH-10", "message control id (MSH-10) missing")
    if len(fields) <= 12 or not _nth(fields[12], comp, 1):
        raise HL7Error(101, "MSH-12", "version id (MSH-12) missing")
    if encoding is None:
        if charset is not None:
            name = charset
        else:
            name = _nth(_nth(fields[18], d.repetition, 1), comp, 1).strip() if len(fields) > 18 else ""
        encoding = python_codec(name) or "utf-8"

    msg = Message.__new__(Message)
    msg.raw = text
    msg.delimiters = d
    msg.encoding = encoding
    msg._msh = fields
    texts = [t for t in segments if t]
    names = [t[:3] for t in texts]
    if not _valid_names.issuperset(names) or not {t[3:4] for t in texts} <= {fs, ""}:
        texts, names = _check_segments(texts, fs)
    segs = list(map(Segment, texts, repeat(msg), names))
    segs[0]._fields = fields
    msg.segments = segs
    msg._index = None
    return msg


def _check_segments(texts: list[str], fs: str) -> tuple[list[str], list[str]]:
    """The slow path of segment name validation: drops whitespace-only segments, raises on bad names."""
    kept, names = [texts[0]], ["MSH"]
    for seg_text in islice(texts, 1, None):
        name = seg_text[:3]
        if name not in _valid_names or (len(seg_text) > 3 and seg_text[3] != fs):
            if seg_text.isspace():
                continue
            if not _SEGMENT_NAME.fullmatch(name) or (len(seg_text) > 3 and seg_text[3] != fs):
                position = len(kept) + 1
                raise HL7Error(100, str(position), f"segment {position} does not start with a valid segment name")
            _valid_names.add(name)
        kept.append(seg_text)
        names.append(name)
    return kept, names
