"""HL7 v2 escape sequences (v2.5 chapter 2.7), decoded lazily on read.

Decoded by :func:`unescape`:

* ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\`` → the field, component, subcomponent, repetition and escape
  characters; ``\\P\\`` → the truncation character (v2.7+, when the message declares one);
* ``\\Xhh..\\`` → the hex bytes decoded with the message charset (kept verbatim when they do not
  decode);
* ``\\.br\\`` → ``"\\n"``, ``\\.sp n\\`` → ``n`` newlines; the other formatting commands (``\\H\\``,
  ``\\N\\``, ``\\.fi\\``, ``\\.nf\\``, ``\\.in n\\``, ``\\.ti n\\``, ``\\.sk n\\``, ``\\.ce\\``) are removed;
* anything else (``\\Z..\\``, ``\\C..\\``, ``\\M..\\``, a lone escape character) is kept verbatim.

:func:`escape` is the reverse, used to write free text (ACK text, error messages) into a message:
``unescape(escape(s, d), d) == s`` for every string ``s``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .message import Delimiters

__all__ = ["escape", "unescape"]

_FORMATTING_REMOVED = frozenset({"H", "N", ".fi", ".nf", ".ce"})
_FORMATTING_PREFIXES = (".in", ".ti", ".sk")


@lru_cache(maxsize=64)
def _decode_table(d: Delimiters) -> dict[str, str]:
    table = {"F": d.field, "S": d.component, "T": d.subcomponent, "R": d.repetition, "E": d.escape,
             ".br": "\n", "H": "", "N": "", ".fi": "", ".nf": "", ".ce": ""}
    if d.truncation:
        table["P"] = d.truncation
    return table


@lru_cache(maxsize=64)
def _encode_table(d: Delimiters) -> tuple[dict[int, str], str]:
    e = d.escape
    table = {
        ord(d.escape): f"{e}E{e}",
        ord(d.field): f"{e}F{e}",
        ord(d.component): f"{e}S{e}",
        ord(d.subcomponent): f"{e}T{e}",
        ord(d.repetition): f"{e}R{e}",
        ord("\n"): f"{e}.br{e}",
        ord("\r"): f"{e}X0D{e}",
    }
    if d.truncation:
        table[ord(d.truncation)] = f"{e}P{e}"
    specials = "".join(chr(c) for c in table)
    return table, specials


def _decode_sequence(seq: str, table: dict[str, str], encoding: str) -> str | None:
    """The text for the escape sequence ``seq`` (without its escape characters), None if unknown."""
    found = table.get(seq)
    if found is not None:
        return found
    if not seq:
        return None
    head = seq[0]
    if head == "X":
        hexdigits = seq[1:]
        if not hexdigits or len(hexdigits) % 2:
            return None
        try:
            return bytes.fromhex(hexdigits).decode(encoding)
        except (ValueError, LookupError):
            return None
    if head == ".":
        if seq.startswith(".sp"):
            arg = seq[3:].strip() or "1"
            return "\n" * int(arg) if arg.isascii() and arg.isdigit() and len(arg) < 3 else None
        if seq.startswith(_FORMATTING_PREFIXES):
            arg = seq[3:].strip().lstrip("+-")
            return "" if not arg or (arg.isascii() and arg.isdigit()) else None
    return None


def unescape(text: str, delimiters: Delimiters, encoding: str = "utf-8") -> str:
    """Decode the escape sequences of one leaf value (see the module docstring).

    ``encoding`` is the Python codec of the message charset, used for ``\\Xhh\\`` sequences.
    """
    esc = delimiters.escape
    if esc not in text:
        return text
    table = _decode_table(delimiters)
    out: list[str] = []
    pos = 0
    find = text.find
    while True:
        start = find(esc, pos)
        if start < 0:
            break
        end = find(esc, start + 1)
        if end < 0:
            break
        decoded = _decode_sequence(text[start + 1:end], table, encoding)
        if decoded is None:
            # Unknown sequence: keep it verbatim, continue after its closing escape character.
            out.append(text[pos:end + 1])
        else:
            out.append(text[pos:start])
            out.append(decoded)
        pos = end + 1
    out.append(text[pos:])
    return "".join(out)


def escape(text: str, delimiters: Delimiters) -> str:
    """Escape the delimiters (and CR/LF) of ``text`` so that it can be written as one leaf value."""
    table, specials = _encode_table(delimiters)
    for ch in specials:
        if ch in text:
            return text.translate(table)
    return text
