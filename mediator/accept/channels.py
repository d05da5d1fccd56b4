"""Channel selection: which channel (if any) takes a received message."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mediator.config import ChannelConfig
from mediator.hl7v2 import HL7Error, Message

_CDA = "{urn:hl7-org:v3}"


@dataclass(frozen=True, slots=True)
class Selection:
    channel: ChannelConfig | None
    error: HL7Error | None = None


@dataclass(frozen=True, slots=True)
class DocumentType:
    """What a CDA document says it is: ``ClinicalDocument/code/@code`` and its ``templateId/@root`` values."""

    code: str
    templates: tuple[str, ...] = ()

    @classmethod
    def of(cls, root: Any) -> DocumentType:
        """The type of a parsed ``ClinicalDocument`` (an lxml element)."""
        code = root.find(f"{_CDA}code")
        templates = tuple(t.get("root") for t in root.iterfind(f"{_CDA}templateId") if t.get("root"))
        return cls((code.get("code") or "").strip() if code is not None else "", templates)

    def label(self) -> str:
        """``document code 18842-5 (templateId 2.16.840.1.113883.10.20.22.1.8)`` for refusals and logs."""
        text = f"document code {self.code!r}" if self.code else "a document without code"
        return text + (f" (templateId {', '.join(self.templates)})" if self.templates else "")


@dataclass(frozen=True, slots=True)
class CdaSelection:
    channel: ChannelConfig | None
    problem: str = ""  # why no channel takes the document (names its code)


def _document_match(ch: ChannelConfig, doc: DocumentType) -> bool | None:
    """True: the channel names the document's code or one of its templates; None: a catch-all (it names
    none); False: it names others."""
    src = ch.source
    if not src.document_codes and not src.document_templates:
        return None
    return doc.code in src.document_codes or any(t in src.document_templates for t in doc.templates)


def _type_matches(patterns: list[str], code: str, event: str) -> bool:
    if not patterns:
        return True
    for p in patterns:
        pc, _, pe = p.partition("^")
        if pc == code and pe in ("*", event):
            return True
    return False


def _sender_matches(ch: ChannelConfig, msg: Message) -> bool:
    src = ch.source
    return ((not src.sending_applications or msg.sending_application in src.sending_applications)
            and (not src.sending_facilities or msg.sending_facility in src.sending_facilities))


class ChannelRouter:
    """Chooses the channel for each message; channels are tried by priority, then name."""

    def __init__(self, channels: list[ChannelConfig]) -> None:
        self.replace(channels)

    def replace(self, channels: list[ChannelConfig]) -> None:
        """Serve a new set of channels (reload); messages already accepted keep the channel they had."""
        enabled = [c for c in channels if c.enabled]
        self.channels, self.by_name = enabled, {c.name: c for c in enabled}

    def for_protocol(self, protocol: str, transport: str) -> ChannelConfig | None:
        """The first channel for a non-HL7 v2 protocol (fhir, cda, cnss-fse) on this transport."""
        for ch in self.channels:
            if ch.source.protocol == protocol and transport in ch.source.transports:
                return ch
        return None

    def for_cda(self, document: Any, transport: str = "http") -> CdaSelection:
        """The channel for a CDA document (its lxml root or its :class:`DocumentType`): a channel that
        names the document's code (``document_codes``) or one of its templateIds (``document_templates``)
        wins over a catch-all (a CDA channel naming neither); among several, priority then name. The
        same choice serves ``POST /cda`` and ``mediator map run``."""
        doc = document if isinstance(document, DocumentType) else DocumentType.of(document)
        cda = [c for c in self.channels if c.source.protocol == "cda" and transport in c.source.transports]
        if not cda:
            return CdaSelection(None, "no channel accepts CDA documents")
        catch_all = None
        for ch in cda:
            match = _document_match(ch, doc)
            if match:
                return CdaSelection(ch)
            if match is None and catch_all is None:
                catch_all = ch
        if catch_all is not None:
            return CdaSelection(catch_all)
        return CdaSelection(None, f"no channel accepts CDA documents of {doc.label()}")

    def for_hl7v2(self, msg: Message, transport: str) -> Selection:
        """The channel for an HL7 v2 message, or the table-0357 error that explains why none fits."""
        candidates = [c for c in self.channels if c.source.protocol == "hl7v2" and transport in c.source.transports
                      and _sender_matches(c, msg)]
        code, event = msg.message_code, msg.trigger_event
        typed = [c for c in candidates if _type_matches(c.source.message_types, code, event)]
        if not typed:
            if any(_type_matches([t.split("^")[0] + "^*" for t in c.source.message_types] or [], code, event)
                   for c in candidates):
                return Selection(None, HL7Error(201, "MSH-9.2", f"unsupported event code {event!r} for {code}"))
            return Selection(None, HL7Error(200, "MSH-9", f"unsupported message type {msg.type_key!r}"))
        versioned = [c for c in typed if msg.version in c.source.versions]
        if not versioned:
            return Selection(None, HL7Error(203, "MSH-12", f"unsupported version {msg.version!r}"))
        processing = [c for c in versioned if msg.processing_id in c.source.processing_ids]
        if not processing:
            return Selection(None, HL7Error(202, "MSH-11", f"unsupported processing id {msg.processing_id!r}"))
        return Selection(processing[0])
