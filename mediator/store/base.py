"""The storage port: the one narrow interface the pipeline uses for durable state.

Inbound queue, transaction log and duplicate detection live behind :class:`Store`. The embedded
default is :class:`mediator.store.sqlite.SQLiteStore`; a Redis implementation (Streams + consumer
groups) plugs in behind the same methods. Nothing outside ``mediator/store`` knows which one runs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from mediator.randomness import random_bytes


class Status(StrEnum):
    """Transaction statuses, after OpenHIM's transaction log."""

    QUEUED = "Queued"  # accepted and durably stored, waiting for a worker
    PROCESSING = "Processing"
    SUCCESSFUL = "Successful"  # every route delivered
    COMPLETED_WITH_ERRORS = "Completed with errors"  # some routes delivered, some failed
    FAILED = "Failed"  # dead letter: nothing delivered; error says why
    REJECTED = "Rejected"  # refused at the door (NAK / 4xx); kept for the operator


FINAL_STATUSES = frozenset({Status.SUCCESSFUL, Status.COMPLETED_WITH_ERRORS, Status.FAILED, Status.REJECTED})

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id() -> str:
    """A ULID: 26 characters, lexicographically sortable by creation time."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(random_bytes(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


@dataclass(slots=True)
class InboundRecord:
    """What the door knows about one received message when it is stored."""

    id: str
    channel: str
    protocol: str  # hl7v2 | fhir | cda | cnss-fse
    transport: str  # mllp | http
    client: str  # authenticated client name or peer address
    content_type: str
    body: bytes
    received_at: float
    message_type: str = ""
    control_id: str = ""
    sender: str = ""  # "MSH-3.1|MSH-4.1" for HL7 v2; client name otherwise
    ordering_key: str = ""  # messages with the same key are applied in order
    identifiers: list[str] = field(default_factory=list)  # "system|value" or "value" for search
    ack: str = ""  # the answer sent (ACK text, or JSON), stored for duplicates
    ack_code: str = ""
    status: Status = Status.QUEUED
    error: str = ""
    rerun_of: str = ""


@dataclass(slots=True)
class AcceptResult:
    tx_id: str
    duplicate: bool
    ack: str  # for a duplicate: the answer originally sent


@dataclass(slots=True)
class RouteAttempt:
    tx_id: str
    route: str
    attempt: int
    started_at: float
    duration_ms: float
    request_url: str
    request_body: str
    response_status: int | None
    response_body: str
    error: str
    outcome: str  # delivered | retry | failed


@dataclass(slots=True)
class QueuedMessage:
    """A stored message waiting for (or recovered for) processing."""

    id: str
    channel: str
    protocol: str
    content_type: str
    body: bytes
    ordering_key: str
    received_at: float
    attempts: int
    claimed: bool = False  # already marked Processing by the claim that fetched it


@dataclass(slots=True)
class TransactionFilter:
    status: str | None = None
    channel: str | None = None
    since: float | None = None
    until: float | None = None
    control_id: str | None = None
    patient: str | None = None  # an identifier value or system|value
    message_type: str | None = None
    limit: int = 50
    before: str | None = None  # cursor: transactions older than this id
    superseded: bool | None = None  # True: already rerun (a newer transaction replays it); False: not yet
    oldest_first: bool = False  # default: newest first


class Store(Protocol):
    """Durable queue + transaction log + dedupe. Every method is safe to call from the event loop."""

    async def open(self, *, owner: bool = True) -> None:
        """Open the store. The ``owner`` (the node, not its workers) re-queues messages left in
        processing by a dead process and runs the store's housekeeping (checkpoints)."""
        ...

    async def close(self) -> None: ...

    async def accept(self, record: InboundRecord) -> AcceptResult:
        """Store ``record`` and queue it, unless (sender, control id) was seen: then return the original.

        Returns only once the record is durable (group commit).
        """
        ...

    async def reject(self, record: InboundRecord) -> str:
        """Keep a refused message in the log (status Rejected); returns its id."""
        ...

    async def claim(self, partition: int, partitions: int, after_seq: int, limit: int = 256
                    ) -> list[tuple[int, QueuedMessage]]:
        """Take the queued messages of one worker partition after position ``after_seq``, oldest first,
        marking them Processing (``claimed``). A patient's messages always fall in the same partition, so
        per-patient order holds across workers.
        """
        ...

    async def requeue(self, partition: int, partitions: int) -> int:
        """Put a dead worker's in-processing messages back in the queue; returns how many."""
        ...

    async def pending(self) -> list[QueuedMessage]:
        """Messages accepted but not finished (after a restart), oldest first."""
        ...

    async def mark(self, tx_id: str, status: Status, *, error: str = "", result: dict[str, Any] | None = None,
                   attempts: int | None = None, attempts_log: Sequence[RouteAttempt] = (),
                   channel: str | None = None) -> None:
        """Set a transaction's status (and result), recording route attempts in the same write."""
        ...

    async def record_attempts(self, attempts: Sequence[RouteAttempt]) -> None: ...

    async def list_transactions(self, flt: TransactionFilter) -> list[dict[str, Any]]: ...

    async def get_transaction(self, tx_id: str) -> dict[str, Any] | None: ...

    async def rerun(self, tx_id: str) -> QueuedMessage | None:
        """Queue a new transaction with the body of ``tx_id`` (dedupe bypassed)."""
        ...

    async def prune(self, older_than: float | None, *, dedupe_older_than: float | None = None,
                    batch: int = 500) -> int:
        """Delete finished transactions and duplicate keys past their retention; returns how many."""
        ...

    async def audit(self, actor: str, action: str, tx_id: str) -> None:
        """Record that ``actor`` read or changed a transaction (every body read is audited)."""
        ...

    async def counts(self) -> dict[str, int]: ...
