"""HL7 v2 batches (chapter 2.10.3): ``[FHS] {BHS {MSH ...} BTS} [FTS]`` split into messages, and
the batch acknowledgment built from the answers to each.

Labs and pharmacies send result files this way, over MLLP (one block) or HTTP. :func:`split_batch`
cuts the bytes at segment boundaries without decoding the messages (each keeps its own MSH-18
character set); what does not belong to any message (a stray segment, a wrong trailer count) is
reported in :attr:`Batch.problems` so that the receiver can keep the original and say so.
:func:`build_batch_ack` answers with the same envelope: ``[FHS] BHS {ACK} BTS [FTS]``, the
reference control ids (BHS-12, FHS-12) pointing at the received ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .ack import new_control_id
from .datetime import hl7_now
from .errors import HL7Error
from .escape import escape
from .message import DEFAULT_DELIMITERS, Delimiters, _delimiters

__all__ = ["Batch", "BatchPart", "build_batch_ack", "is_batch", "split_batch"]

_JUNK = b"\x0b\x1c\r\n\t \xef\xbb\xbf"  # MLLP bytes, blank lines, a UTF-8 byte-order mark
_HEADERS = (b"FHS", b"BHS")


@dataclass
class BatchPart:
    """One BHS ... BTS batch. ``header[n]`` is BHS-n (``header[1]`` the field separator)."""

    header: list[str]
    messages: list[bytes] = field(default_factory=list)
    declared: int | None = None  # BTS-1, when sent


@dataclass
class Batch:
    """A received batch file: its FHS (``None`` without one), its batches, what was wrong with it."""

    file_header: list[str] | None
    parts: list[BatchPart]
    declared_batches: int | None = None  # FTS-1, when sent
    problems: list[str] = field(default_factory=list)

    @property
    def messages(self) -> list[bytes]:
        return [m for p in self.parts for m in p.messages]


def is_batch(data: bytes) -> bool:
    """True when ``data`` starts (after MLLP or blank bytes) with an FHS or BHS segment."""
    return data[:64].lstrip(_JUNK)[:3] in _HEADERS


def _fields(line: bytes) -> list[str]:
    """FHS/BHS fields, ``fields[n]`` = XXX-n (``fields[1]`` the field separator, as in MSH)."""
    text = line.decode("utf-8", "replace")
    if len(text) < 4:
        return [text[:3], "|"]
    fs = text[3]
    parts = text.split(fs)
    parts.insert(1, fs)
    return parts


def _count(line: bytes, where: str, problems: list[str]) -> int | None:
    """BTS-1 / FTS-1: the count the sender declares (None when absent)."""
    text = line.decode("utf-8", "replace")
    raw = text[4:].split(text[3], 1)[0].strip() if len(text) > 4 else ""
    if not raw:
        return None
    if not raw.isdigit():
        problems.append(f"{where} is not a count")
        return None
    return int(raw)


def split_batch(data: bytes) -> Batch:
    """Cut a batch into its messages (each ``\\r``-terminated, bytes as received otherwise)."""
    lines = data.replace(b"\r\n", b"\r").replace(b"\n", b"\r").split(b"\r")
    batch = Batch(None, [])
    part: BatchPart | None = None
    current: list[bytes] | None = None  # the segments of the message being read
    problems = batch.problems

    def close_message() -> None:
        nonlocal current
        if current is not None:
            assert part is not None
            part.messages.append(b"\r".join(current) + b"\r")
            current = None

    started = False
    for number, line in enumerate(lines, start=1):
        if not line.strip(_JUNK):
            continue
        if not started:  # the MLLP start byte or a byte-order mark before the first segment
            line, started = line.lstrip(_JUNK), True
        name = line[:3]
        if name == b"FHS":
            if batch.file_header is not None or batch.parts:
                problems.append(f"segment {number}: FHS after the start of the file")
            batch.file_header = _fields(line)
        elif name == b"BHS":
            close_message()
            part = BatchPart(_fields(line))
            batch.parts.append(part)
        elif name == b"MSH":
            close_message()
            if part is None:  # a file (FHS) without BHS, or messages before any header
                part = BatchPart([])
                batch.parts.append(part)
            current = [line]
        elif name == b"BTS":
            close_message()
            if part is None:
                problems.append(f"segment {number}: BTS without BHS")
                continue
            part.declared = _count(line, "BTS-1", problems)
            part = None
        elif name == b"FTS":
            close_message()
            batch.declared_batches = _count(line, "FTS-1", problems)
            part = None
        elif current is not None:
            current.append(line)
        else:
            problems.append(f"segment {number} ({name.decode('ascii', 'replace')}) is outside any message")
    close_message()
    for i, p in enumerate(batch.parts, start=1):
        if p.declared is not None and p.declared != len(p.messages):
            problems.append(f"batch {i}: BTS-1 says {p.declared} messages, {len(p.messages)} received")
    if batch.declared_batches is not None and batch.declared_batches != len(batch.parts):
        problems.append(f"FTS-1 says {batch.declared_batches} batches, {len(batch.parts)} received")
    return batch


def _separators(received: list[str] | None) -> tuple[str, str, Delimiters]:
    """Field separator, encoding characters and delimiters of a received header (defaults if unusable)."""
    r = received or []
    fs = r[1] if len(r) > 1 and len(r[1]) == 1 else "|"
    enc = r[2] if len(r) > 2 and r[2] else "^~\\&"
    try:
        return fs, enc, _delimiters(fs, enc)
    except HL7Error:
        return "|", "^~\\&", DEFAULT_DELIMITERS


def _header(name: str, received: list[str] | None, now: str) -> str:
    """FHS/BHS of the acknowledgment: sender and receiver swapped, XXX-12 = the received XXX-11."""
    r = received or []
    fs, enc, _ = _separators(received)

    def f(n: int) -> str:
        return r[n] if n < len(r) else ""

    fields = [name, enc, f(5), f(6), f(3), f(4), now, "", "", "", new_control_id(), f(11)]
    while fields[-1] == "":
        fields.pop()
    return fs.join(fields)


def build_batch_ack(batch: Batch, acks: Sequence[Sequence[str]], *, comment: str = "") -> str:
    """The acknowledgment batch: ``acks[i]`` holds the ACK texts for the messages of ``batch.parts[i]``
    (``\\r`` after each segment); ``comment`` goes to BTS-2 of each batch (e.g. what was wrong)."""
    now = hl7_now()
    out: list[str] = []
    if batch.file_header is not None:
        out.append(_header("FHS", batch.file_header, now))
    parts = batch.parts or [BatchPart([])]
    answers_per_part = list(acks) + [[]] * (len(parts) - len(acks))
    for part, answers in zip(parts, answers_per_part, strict=True):
        received = part.header or batch.file_header
        fs, _, d = _separators(received)
        out.append(_header("BHS", received, now))
        out.extend(a.rstrip("\r") for a in answers)
        out.append(f"BTS{fs}{len(answers)}" + (f"{fs}{escape(comment, d)}" if comment else ""))
    if batch.file_header is not None:
        fs, _, _ = _separators(batch.file_header)
        out.append(f"FTS{fs}{len(parts)}")
    return "\r".join(out) + "\r"
