"""Safe parsing of untrusted XML (CDA documents and other XML payloads).

Defences, in order:

1. size bound (``max_bytes``) before anything is parsed;
2. any document type declaration is refused outright (:class:`UnsafeXmlError`): no DTD means no
   entity declarations, hence no "billion laughs" expansion and no external entity (XXE);
3. the parser itself never resolves entities, loads DTDs, touches the network or builds huge
   trees, so even a declaration that slipped past step 2 (e.g. in an exotic encoding) is inert;
   the parsed tree is checked again for a DTD afterwards.

Malformed XML raises :class:`XmlInputError` carrying the line number.
"""

from __future__ import annotations

import re

from lxml import etree

__all__ = ["MAX_XML_BYTES", "UnsafeXmlError", "XmlInputError", "parse_xml", "safe_parser"]

MAX_XML_BYTES = 16 * 1024 * 1024

# "<!DOCTYPE" / "<!ENTITY" in ASCII-compatible encodings and in UTF-16 (either byte order).
_DECL_PATTERNS = [
    re.compile(re.escape(word.encode(enc)), re.IGNORECASE)
    for word in ("<!DOCTYPE", "<!ENTITY")
    for enc in ("ascii", "utf-16-le", "utf-16-be")
]


class XmlInputError(ValueError):
    """The input is not acceptable XML (malformed, too large, or not the expected document)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message if line is None else f"{message} (line {line})")
        self.message = message
        self.line = line


class UnsafeXmlError(XmlInputError):
    """The input uses an XML feature refused for safety (DTD, entity declarations)."""


def safe_parser() -> etree.XMLParser:
    """An lxml parser that never resolves entities, loads DTDs or uses the network."""
    # A fresh parser per call: lxml parsers keep state and must not be shared across threads.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_blank_text=False,
    )


def parse_xml(data: bytes, *, max_bytes: int = MAX_XML_BYTES) -> etree._Element:
    """Parse untrusted XML bytes into an element tree, refusing DTDs and bounding the size.

    Raises :class:`UnsafeXmlError` for any DOCTYPE/ENTITY declaration and :class:`XmlInputError`
    for empty, oversized or malformed input (with the line number when known).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("parse_xml expects bytes")
    data = bytes(data)
    if len(data) > max_bytes:
        raise XmlInputError(f"XML document of {len(data)} bytes exceeds the {max_bytes}-byte limit")
    if not data.strip():
        raise XmlInputError("empty XML document")
    for pattern in _DECL_PATTERNS:
        match = pattern.search(data)
        if match:
            line = data.count(b"\n", 0, match.start()) + 1
            raise UnsafeXmlError("DOCTYPE and ENTITY declarations are not allowed", line)
    try:
        root = etree.fromstring(data, parser=safe_parser())
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if exc.lineno else None
        msg = exc.msg or "malformed XML"
        # libxml2 appends ", line N, column M" to its message; keep only the description.
        msg = re.sub(r",? line \d+, column \d+.*$", "", msg)
        raise XmlInputError(f"malformed XML: {msg}", line) from None
    except ValueError as exc:  # e.g. unicode string with encoding declaration
        raise XmlInputError(f"malformed XML: {exc}") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise UnsafeXmlError("DOCTYPE declarations are not allowed")
    return root
