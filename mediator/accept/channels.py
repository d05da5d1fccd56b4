"""Channel selection: which channel (if any) takes a received message."""

from __future__ import annotations

from dataclasses import dataclass

from mediator.config import ChannelConfig
from mediator.hl7v2 import HL7Error, Message


@dataclass(frozen=True, slots=True)
class Selection:
    channel: ChannelConfig | None
    error: HL7Error | None = None


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
