"""Accepting HL7 v2 messages (MLLP and HTTP share this door).

The order of checks follows HL7 v2 chapter 2: parse the header, never answer an ACK, choose the
channel (AR 200/201/202/203 when none fits), check content (AE with ERR), then store durably and
only then acknowledge (AA in original mode, CA in enhanced mode). A resent message (same sender and
MSH-10) gets the answer sent the first time and is not processed again.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from mediator.accept.channels import ChannelRouter
from mediator.hl7v2 import HL7Error, Message, build_ack, is_ack, parse, sniff_header, validate_message
from mediator.hl7v2.batch import build_batch_ack, is_batch, split_batch
from mediator.store.base import InboundRecord, QueuedMessage, Status, Store, new_id

log = structlog.get_logger(__name__)

HL7_CONTENT_TYPE = "application/hl7-v2"

Submit = Callable[[QueuedMessage, Message | None], None]


@dataclass(frozen=True, slots=True)
class Answer:
    """What to send back. ``ack`` None means send nothing (an ACK was received, or MSH-15 says so)."""

    ack: str | None
    code: str
    tx_id: str | None
    duplicate: bool = False


def _ack_code(error: HL7Error | None, enhanced: bool) -> str:
    if error is None:
        return "CA" if enhanced else "AA"
    reject = error.code >= 200
    if enhanced:
        return "CR" if reject else "CE"
    return "AR" if reject else "AE"


def _send_wanted(msg: Message | None, ok: bool) -> bool:
    """MSH-15 accept acknowledgment type (enhanced mode): AL, NE, ER, SU."""
    if msg is None:
        return True
    mode = msg.accept_ack_type
    if mode == "NE":
        return False
    if mode == "ER":
        return not ok
    if mode == "SU":
        return ok
    return True


def _is_enhanced(msg: Message | None) -> bool:
    return msg is not None and bool(msg.accept_ack_type or msg.application_ack_type)


def _ordering_key(msg: Message) -> str:
    """Sending facility + first patient identifier, hashed: the key only needs equality, and is stored."""
    first = msg.get("PID-3.1")
    if not first:
        return ""
    return hashlib.sha256(f"{msg.sending_facility}|{first}".encode()).hexdigest()[:24]


def _identifiers(msg: Message) -> list[str]:
    values = [v for v in msg.get_all("PID-3[*].1") if v]
    return list(dict.fromkeys(values))


class Hl7v2Door:
    """Turns received bytes into a stored transaction and the answer to send."""

    def __init__(self, store: Store, router: ChannelRouter, submit: Submit, *,
                 ready: Callable[[], bool] = lambda: True) -> None:
        self.store = store
        self.router = router
        self.submit = submit
        self.ready = ready

    async def receive(self, data: bytes, *, transport: str, client: str, content_type: str = HL7_CONTENT_TYPE,
                      force_answer: bool = False) -> Answer:
        """Handle one complete message, or a batch (FHS/BHS ...: see :meth:`receive_batch`).
        ``force_answer`` (HTTP) always returns an ACK text."""
        if is_batch(data):
            return await self.receive_batch(data, transport=transport, client=client, content_type=content_type)
        received_at = time.time()
        try:
            msg = parse(data)
        except HL7Error as exc:
            return await self._refuse(data, None, [exc], transport, client, content_type, received_at)
        if is_ack(msg):
            log.info("hl7v2.ack_received", transport=transport, control_id=msg.control_id)
            return Answer(None, "", None)
        selection = self.router.for_hl7v2(msg, transport)
        if selection.channel is None:
            assert selection.error is not None
            return await self._refuse(data, msg, [selection.error], transport, client, content_type, received_at,
                                      force_answer=force_answer)
        problems = [e for e in validate_message(msg) if e.severity == "E"]
        if problems:
            return await self._refuse(data, msg, problems, transport, client, content_type, received_at,
                                      channel=selection.channel.name, force_answer=force_answer)
        if not self.ready():
            err = HL7Error(207, "", "receiver is not ready (starting or shutting down); resend later")
            return self._answer(msg, [err], None, force_answer)
        enhanced = _is_enhanced(msg)
        code = _ack_code(None, enhanced)
        ack = build_ack(msg, code)
        record = InboundRecord(
            id=new_id(), channel=selection.channel.name, protocol="hl7v2", transport=transport, client=client,
            content_type=content_type, body=bytes(data), received_at=received_at, message_type=msg.type_key,
            control_id=msg.control_id, sender=f"{msg.sending_application}|{msg.sending_facility}",
            ordering_key=_ordering_key(msg), identifiers=_identifiers(msg), ack=ack, ack_code=code)
        try:
            result = await self.store.accept(record)
        except Exception as exc:  # storage trouble: the sender must resend, nothing was accepted
            log.error("hl7v2.store_failed", error=type(exc).__name__, transport=transport)
            err = HL7Error(207, "", "message could not be stored; resend later")
            return self._answer(msg, [err], None, force_answer)
        if result.duplicate:
            log.info("hl7v2.duplicate", tx_id=result.tx_id, transport=transport)
            send = force_answer or _send_wanted(msg, True)
            return Answer(result.ack if send else None, code, result.tx_id, duplicate=True)
        self.submit(QueuedMessage(record.id, record.channel, "hl7v2", content_type, record.body,
                                  record.ordering_key, received_at, 0), msg)
        send = force_answer or _send_wanted(msg, True)
        return Answer(ack if send else None, code, record.id)

    async def receive_batch(self, data: bytes, *, transport: str, client: str,
                            content_type: str = HL7_CONTENT_TYPE) -> Answer:
        """A batch ([FHS] BHS {MSH ...} BTS [FTS]): each message is received on its own (own checks,
        own transaction, own dedupe; in batch order for one patient) and the answer is the batch
        acknowledgment holding one ACK per message. A batch with segments outside any message or
        trailer counts that do not match is also kept whole as a Rejected transaction, and BTS-2 of
        the answer says what was wrong."""
        received_at = time.time()
        batch = split_batch(bytes(data))
        answers = [await asyncio.gather(*(self.receive(m, transport=transport, client=client,
                                                        content_type=content_type, force_answer=True)
                                           for m in part.messages))
                   for part in batch.parts]
        codes = [a.code for part in answers for a in part if a.ack is not None]
        code = next((c for c in codes if c not in ("AA", "CA")), codes[0] if codes else "AA")
        comment = "; ".join(batch.problems)
        ack = build_batch_ack(batch, [[a.ack for a in part if a.ack is not None] for part in answers],
                              comment=comment)
        tx_id = None
        if batch.problems:
            record = InboundRecord(
                id=new_id(), channel="", protocol="hl7v2", transport=transport, client=client,
                content_type=content_type, body=bytes(data), received_at=received_at, message_type="BATCH",
                ack=ack, ack_code=code, status=Status.REJECTED, error=f"batch: {comment}")
            log.info("hl7v2.batch_problems", transport=transport, problems=len(batch.problems))
            try:
                await self.store.reject(record)
                tx_id = record.id
            except Exception as exc:
                log.error("hl7v2.store_failed", error=type(exc).__name__)
        return Answer(ack, code, tx_id)

    async def receive_oversize(self, head: bytes, size: int, limit: int, *, transport: str, client: str) -> Answer:
        """A message over the size limit: refused, its beginning kept for the operator."""
        err = HL7Error(207, "", f"message of {size} bytes exceeds the {limit}-byte limit")
        try:
            msg: Message | None = parse(head)
        except HL7Error:
            msg = None
        return await self._refuse(head, msg, [err], transport, client, HL7_CONTENT_TYPE, time.time(),
                                  code_override="AR")

    async def refuse_bytes(self, data: bytes, error: HL7Error, *, transport: str, client: str) -> Answer:
        """Refuse bytes the transport already knows are bad (a truncated frame), keeping them."""
        try:
            msg: Message | None = parse(data)
        except HL7Error:
            msg = None
        return await self._refuse(data, msg, [error], transport, client, HL7_CONTENT_TYPE, time.time())

    def _answer(self, msg: Message | None, errors: list[HL7Error], header: dict[str, str] | None,
                force_answer: bool, code_override: str | None = None) -> Answer:
        code = code_override or _ack_code(errors[0], _is_enhanced(msg))
        ack = build_ack(msg, code, errors=errors, header=header)
        send = force_answer or _send_wanted(msg, False)
        return Answer(ack if send else None, code, None)

    async def _refuse(self, data: bytes, msg: Message | None, errors: list[HL7Error], transport: str, client: str,
                      content_type: str, received_at: float, *, channel: str = "", force_answer: bool = False,
                      code_override: str | None = None) -> Answer:
        header = sniff_header(data) if msg is None else None
        answer = self._answer(msg, errors, header, force_answer, code_override)
        first = errors[0]
        record = InboundRecord(
            id=new_id(), channel=channel, protocol="hl7v2", transport=transport, client=client,
            content_type=content_type, body=bytes(data), received_at=received_at,
            message_type=msg.type_key if msg else _header_type(header),
            control_id=msg.control_id if msg else (header or {}).get("control_id", ""),
            sender=(f"{msg.sending_application}|{msg.sending_facility}" if msg else ""),
            ack=answer.ack or "", ack_code=answer.code, status=Status.REJECTED,
            error="; ".join(f"{e.location or '-'} {e.code}: {e.text}" for e in errors))
        log.info("hl7v2.refused", transport=transport, code=answer.code, hl7_error=first.code,
                 location=first.location)
        try:
            await self.store.reject(record)
        except Exception as exc:
            log.error("hl7v2.store_failed", error=type(exc).__name__)
            return answer
        return Answer(answer.ack, answer.code, record.id)


def _header_type(header: dict[str, str] | None) -> str:
    if not header or not header.get("message_code"):
        return ""
    return f"{header['message_code']}^{header.get('trigger_event', '')}"

