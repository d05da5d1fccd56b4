"""SQLite implementation of the storage port (embedded default, one node).

One writer thread owns the write connection and applies operations in *group commits*: every
operation queued while the previous commit ran shares the next transaction and its single fsync.
Readers use their own connection (WAL lets them run beside the writer) in the default executor.
"""

from __future__ import annotations

import asyncio
import dataclasses
import queue
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import structlog

from mediator.store.base import (
    AcceptResult,
    InboundRecord,
    QueuedMessage,
    RouteAttempt,
    Status,
    TransactionFilter,
    new_id,
)
from mediator.store.checkpoint import WalCheckpointer
from mediator.store.crypto import Cipher

log = structlog.get_logger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS transactions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    received_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    channel TEXT NOT NULL,
    protocol TEXT NOT NULL,
    transport TEXT NOT NULL,
    client TEXT NOT NULL,
    status TEXT NOT NULL,
    message_type TEXT NOT NULL DEFAULT '',
    control_id TEXT NOT NULL DEFAULT '',
    sender TEXT NOT NULL DEFAULT '',
    ordering_key TEXT NOT NULL DEFAULT '',
    partition_key INTEGER NOT NULL DEFAULT 0,
    content_type TEXT NOT NULL DEFAULT '',
    body BLOB NOT NULL,
    ack TEXT NOT NULL DEFAULT '',
    ack_code TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    result TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    duplicates INTEGER NOT NULL DEFAULT 0,
    rerun_of TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS tx_status ON transactions(status, seq);
CREATE INDEX IF NOT EXISTS tx_channel ON transactions(channel, seq);
CREATE INDEX IF NOT EXISTS tx_control ON transactions(control_id);
CREATE INDEX IF NOT EXISTS tx_received ON transactions(received_at);
CREATE INDEX IF NOT EXISTS tx_rerun ON transactions(rerun_of) WHERE rerun_of != '';
CREATE TABLE IF NOT EXISTS tx_identifiers (
    value TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (value, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dedupe (
    sender TEXT NOT NULL,
    control_id TEXT NOT NULL,
    tx_id TEXT NOT NULL,
    received_at REAL NOT NULL,
    ack TEXT NOT NULL,
    PRIMARY KEY (sender, control_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedupe_age ON dedupe(received_at);
CREATE TABLE IF NOT EXISTS route_attempts (
    tx_id TEXT NOT NULL,
    route TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    started_at REAL NOT NULL,
    duration_ms REAL NOT NULL,
    request_url TEXT NOT NULL,
    request_body TEXT NOT NULL,
    response_status INTEGER,
    response_body TEXT NOT NULL,
    error TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_tx ON route_attempts(tx_id);
CREATE TABLE IF NOT EXISTS audit (
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    tx_id TEXT NOT NULL
);
"""

_PENDING = (Status.QUEUED.value, Status.PROCESSING.value)
WORKER_AUTOCHECKPOINT_PAGES = 100_000  # ~400 MB: only reached if the node (the checkpointer) is gone
_STOP = object()

Op = Callable[[sqlite3.Connection], Any]


class SQLiteStore:
    """Queue, transaction log and dedupe in one SQLite file (WAL)."""

    def __init__(self, path: str | Path, *, commit_interval_ms: float = 0.0, max_batch: int = 512,
                 synchronous: str = "FULL", cipher: Cipher | None = None) -> None:
        self.path = Path(path)
        self.cipher = cipher or Cipher(None)
        self.commit_interval = commit_interval_ms / 1000.0
        self.max_batch = max_batch
        self.synchronous = synchronous
        self._ops: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._read_local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._read_lock = threading.Lock()
        self._checkpointer: WalCheckpointer | None = None
        # seconds this writer waits after each commit: a worker leaves the node (which acknowledges
        # what it receives) a window to take the write lock instead of taking it straight back
        self.pause_after_commit = 0.0
        self.commits = 0  # number of group commits (for metrics)
        self.committed_ops = 0

    @property
    def checkpoints(self) -> int:
        """WAL checkpoints run so far by this store's checkpointer (0 for a worker's store)."""
        return self._checkpointer.rounds if self._checkpointer is not None else 0

    # -- lifecycle -------------------------------------------------------------------------------
    def _connect(self, *, writer: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        # The writer waits for the lock itself (see _begin); readers rarely wait at all in WAL mode.
        conn.execute(f"PRAGMA busy_timeout={0 if writer else 30000}")
        if not writer:
            conn.execute("PRAGMA wal_autocheckpoint=0")  # readers never commit; the checkpointer is explicit
        return conn

    async def open(self, *, owner: bool = True) -> None:
        """Open (creating the schema).

        The node that owns the store (``owner``) puts messages a dead process left in processing back
        in the queue and runs the WAL checkpointer; worker processes open it with ``owner=False``.
        Checkpoints run in their own thread and connection (PASSIVE: they never take the write lock),
        so no commit, and in particular no ACK, ever pays for copying the WAL back into the database.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._loop = asyncio.get_running_loop()
        conn = self._connect(writer=True)
        # Workers keep a far automatic checkpoint as a safety net should they outlive the node.
        conn.execute(f"PRAGMA wal_autocheckpoint={0 if owner else WORKER_AUTOCHECKPOINT_PAGES}")
        _begin(conn)
        conn.execute("COMMIT")
        conn.executescript(SCHEMA)
        if owner:  # a message a dead process was working on goes back to the queue
            conn.execute("UPDATE transactions SET status=? WHERE status=?", (Status.QUEUED, Status.PROCESSING))
        self._writer = threading.Thread(target=self._write_loop, args=(conn,), name="sqlite-writer",
                                        daemon=True)
        self._writer.start()
        if owner:
            self._checkpointer = WalCheckpointer(self.path, name="store")
            self._checkpointer.start()

    async def close(self) -> None:
        if self._checkpointer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._checkpointer.stop)
            self._checkpointer = None
        if self._writer is not None:
            self._ops.put(_STOP)
            await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
            self._writer = None
        with self._read_lock:
            for c in self._read_conns:
                c.close()
            self._read_conns.clear()

    # -- the writer thread ------------------------------------------------------------------------
    def _write_loop(self, conn: sqlite3.Connection) -> None:
        stop = False
        while not stop:
            first = self._ops.get()
            if first is _STOP:
                break
            batch = [first]
            deadline = time.monotonic() + self.commit_interval
            while len(batch) < self.max_batch:
                try:
                    timeout = deadline - time.monotonic()
                    item = self._ops.get(timeout=timeout) if timeout > 0 else self._ops.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            results = self._apply(conn, batch)
            self.commits += 1
            self.committed_ops += len(batch)
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(_resolve_all, results)
            if self.pause_after_commit:  # leave the lock to the node between two of our transactions
                time.sleep(self.pause_after_commit)
        conn.close()

    @staticmethod
    def _apply(conn: sqlite3.Connection, batch: list[tuple[Op, asyncio.Future[Any]]]
               ) -> list[tuple[asyncio.Future[Any], bool, Any]]:
        """Run a batch in one transaction. Should one operation fail, the batch is replayed with a
        savepoint around each operation so that only the failing one is refused."""
        try:
            _begin(conn)
            values = [fn(conn) for fn, _ in batch]
            conn.execute("COMMIT")
            return [(fut, True, v) for (_, fut), v in zip(batch, values, strict=True)]
        except Exception:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        results: list[tuple[asyncio.Future[Any], bool, Any]] = []
        try:
            _begin(conn)
            for fn, fut in batch:
                conn.execute("SAVEPOINT op")
                try:
                    value = fn(conn)
                    conn.execute("RELEASE op")
                    results.append((fut, True, value))
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    results.append((fut, False, exc))
            conn.execute("COMMIT")
        except Exception as exc:  # the commit itself failed (disk full, I/O error): nothing is durable
            log.error("store.commit_failed", error=type(exc).__name__)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return [(fut, False, exc) for _, fut in batch]
        return results

    def _submit(self, fn: Op) -> asyncio.Future[Any]:
        assert self._loop is not None, "store not opened"
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._ops.put((fn, fut))
        return fut

    async def _read(self, fn: Op) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, self._read_sync, fn)

    def _read_sync(self, fn: Op) -> Any:
        conn = getattr(self._read_local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.row_factory = sqlite3.Row
            self._read_local.conn = conn
            with self._read_lock:
                self._read_conns.append(conn)
        return fn(conn)

    # -- port methods -----------------------------------------------------------------------------
    def _sealed(self, r: InboundRecord) -> InboundRecord:
        """The record as stored: body sealed, patient identifiers blinded (if a key is set)."""
        if not self.cipher.enabled:
            return r
        c = self.cipher
        return dataclasses.replace(r, body=c.seal(r.body, r.id), identifiers=[c.blind(v) for v in r.identifiers])

    def _attempt_rows(self, attempts: Sequence[RouteAttempt]) -> list[tuple[Any, ...]]:
        c = self.cipher
        return [_attempt_row(dataclasses.replace(a, request_body=c.seal_text(a.request_body, a.tx_id),
                                                 response_body=c.seal_text(a.response_body, a.tx_id))
                             if c.enabled else a) for a in attempts]

    async def accept(self, record: InboundRecord) -> AcceptResult:
        sealed = self._sealed(record)
        return await self._submit(lambda conn: _accept(conn, sealed))

    async def reject(self, record: InboundRecord) -> str:
        record.status = Status.REJECTED
        sealed = self._sealed(record)
        await self._submit(lambda conn: _insert(conn, sealed))
        return record.id

    async def claim(self, partition: int, partitions: int, after_seq: int, limit: int = 256
                    ) -> list[tuple[int, QueuedMessage]]:
        """Take queued messages of one partition (``partition_key % partitions``) after ``after_seq``, in
        order, marking them Processing in the same write."""
        def op(conn: sqlite3.Connection) -> list[tuple[int, QueuedMessage]]:
            rows = conn.execute(
                "UPDATE transactions SET status = 'Processing', updated_at = ? WHERE seq IN ("
                " SELECT seq FROM transactions WHERE status = 'Queued' AND seq > ? AND partition_key % ? = ?"
                " ORDER BY seq LIMIT ?) "
                "RETURNING seq, id, channel, protocol, content_type, body, ordering_key, received_at, attempts",
                (time.time(), after_seq, partitions, partition, limit)).fetchall()
            rows.sort(key=lambda r: r[0])
            return [(r[0], QueuedMessage(r[1], r[2], r[3], r[4], self.cipher.open(bytes(r[5]), r[1]), r[6], r[7],
                                         r[8], claimed=True)) for r in rows]
        return await self._submit(op)

    async def requeue(self, partition: int, partitions: int) -> int:
        """Put one partition's messages in processing back in the queue (its worker died)."""
        def op(conn: sqlite3.Connection) -> int:
            return conn.execute("UPDATE transactions SET status=? WHERE status=? AND partition_key % ? = ?",
                                (Status.QUEUED, Status.PROCESSING, partitions, partition)).rowcount
        return int(await self._submit(op))

    async def pending(self) -> list[QueuedMessage]:
        def q(conn: sqlite3.Connection) -> list[QueuedMessage]:
            rows = conn.execute(
                "SELECT id, channel, protocol, content_type, body, ordering_key, received_at, attempts "
                "FROM transactions WHERE status IN (?, ?) ORDER BY seq", _PENDING).fetchall()
            return [QueuedMessage(r[0], r[1], r[2], r[3], self.cipher.open(bytes(r[4]), r[0]), r[5], r[6], r[7])
                    for r in rows]
        return await self._read(q)

    async def mark(self, tx_id: str, status: Status, *, error: str = "", result: dict[str, Any] | None = None,
                   attempts: int | None = None, attempts_log: Sequence[RouteAttempt] = (),
                   channel: str | None = None) -> None:
        result_text = orjson.dumps(result).decode() if result is not None else None
        rows = self._attempt_rows(attempts_log)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE transactions SET status=?, updated_at=?, error=?, result=COALESCE(?, result), "
                "attempts=COALESCE(?, attempts), channel=COALESCE(?, channel) WHERE id=?",
                (status.value, time.time(), error, result_text, attempts, channel, tx_id))
            if rows:
                conn.executemany(_INSERT_ATTEMPT, rows)
        await self._submit(op)

    async def record_attempts(self, attempts: Sequence[RouteAttempt]) -> None:
        rows = self._attempt_rows(attempts)
        await self._submit(lambda conn: conn.executemany(_INSERT_ATTEMPT, rows))

    async def list_transactions(self, flt: TransactionFilter) -> list[dict[str, Any]]:
        where, args = [], []
        if flt.status:
            where.append("t.status = ?")
            args.append(flt.status)
        if flt.channel:
            where.append("t.channel = ?")
            args.append(flt.channel)
        if flt.since is not None:
            where.append("t.received_at >= ?")
            args.append(flt.since)
        if flt.until is not None:
            where.append("t.received_at < ?")
            args.append(flt.until)
        if flt.control_id:
            where.append("t.control_id = ?")
            args.append(flt.control_id)
        if flt.message_type:
            where.append("t.message_type = ?")
            args.append(flt.message_type)
        if flt.patient:
            where.append("t.seq IN (SELECT seq FROM tx_identifiers WHERE value = ?)")
            args.append(self.cipher.blind(flt.patient))
        if flt.before:
            where.append("t.seq < (SELECT seq FROM transactions WHERE id = ?)")
            args.append(flt.before)
        if flt.superseded is not None:
            where.append(("" if flt.superseded else "NOT ") +
                         "EXISTS (SELECT 1 FROM transactions c WHERE c.rerun_of = t.id AND c.rerun_of != '')")
        sql = (f"SELECT {_SUMMARY_COLUMNS} FROM transactions t"
               + (" WHERE " + " AND ".join(where) if where else "")
               + f" ORDER BY t.seq {'ASC' if flt.oldest_first else 'DESC'} LIMIT ?")
        args.append(max(1, min(flt.limit, 1000)))

        def q(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            return [dict(r) for r in conn.execute(sql, args).fetchall()]
        return await self._read(q)

    async def get_transaction(self, tx_id: str) -> dict[str, Any] | None:
        def q(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute(f"SELECT {_SUMMARY_COLUMNS}, t.body, t.ack, t.result FROM transactions t "
                               "WHERE t.id = ?", (tx_id,)).fetchone()
            if row is None:
                return None
            tx = dict(row)
            tx["body"] = self.cipher.open(bytes(tx["body"]), tx_id)
            tx["attempts_log"] = [dict(r) for r in conn.execute(
                "SELECT route, attempt, started_at, duration_ms, request_url, request_body, response_status, "
                "response_body, error, outcome FROM route_attempts WHERE tx_id = ? ORDER BY rowid",
                (tx_id,)).fetchall()]
            for a in tx["attempts_log"]:
                a["request_body"] = self.cipher.open_text(a["request_body"], tx_id)
                a["response_body"] = self.cipher.open_text(a["response_body"], tx_id)
            return tx
        return await self._read(q)

    async def rerun(self, tx_id: str) -> QueuedMessage | None:
        def op(conn: sqlite3.Connection) -> QueuedMessage | None:
            row = conn.execute(
                "SELECT channel, protocol, transport, content_type, body, message_type, control_id, sender, "
                "ordering_key FROM transactions WHERE id = ?", (tx_id,)).fetchone()
            if row is None:
                return None
            new = new_id()
            body = self.cipher.open(bytes(row[4]), tx_id)
            rec = InboundRecord(
                id=new, channel=row[0], protocol=row[1], transport=row[2], client="rerun",
                content_type=row[3], body=self.cipher.seal(body, new), received_at=time.time(), message_type=row[5],
                control_id=row[6], sender=row[7], ordering_key=row[8], rerun_of=tx_id)
            seq = _insert(conn, rec)
            conn.execute("INSERT OR IGNORE INTO tx_identifiers SELECT value, ? FROM tx_identifiers WHERE seq = "
                         "(SELECT seq FROM transactions WHERE id = ?)", (seq, tx_id))
            return QueuedMessage(rec.id, rec.channel, rec.protocol, rec.content_type, body,
                                 rec.ordering_key, rec.received_at, 0)
        return await self._submit(op)

    async def prune(self, older_than: float | None, *, dedupe_older_than: float | None = None,
                    batch: int = 500) -> int:
        """Delete finished transactions received before ``older_than`` (epoch seconds), and duplicate-
        detection keys older than ``dedupe_older_than``, in small batches (short write locks). Returns the
        number of transactions deleted. Queued and in-processing transactions are never pruned; the
        duplicate keys (with the ACK to send again) outlive their transactions; the audit trail is kept.
        """
        def op(conn: sqlite3.Connection) -> int:
            seqs = [r[0] for r in conn.execute(
                "SELECT seq FROM transactions WHERE received_at < ? AND status NOT IN ('Queued', 'Processing') "
                "ORDER BY received_at LIMIT ?", (older_than, batch))]
            if not seqs:
                return 0
            marks = ",".join("?" * len(seqs))
            conn.execute("DELETE FROM route_attempts WHERE tx_id IN "
                         f"(SELECT id FROM transactions WHERE seq IN ({marks}))", seqs)
            conn.execute(f"DELETE FROM tx_identifiers WHERE seq IN ({marks})", seqs)
            conn.execute(f"DELETE FROM transactions WHERE seq IN ({marks})", seqs)
            return len(seqs)

        def dedupe_op(conn: sqlite3.Connection) -> int:
            keys = conn.execute("SELECT sender, control_id FROM dedupe WHERE received_at < ? LIMIT ?",
                                (dedupe_older_than, batch)).fetchall()
            conn.executemany("DELETE FROM dedupe WHERE sender = ? AND control_id = ?", keys)
            return len(keys)

        total = 0
        while older_than is not None and (n := await self._submit(op)):
            total += n
        if dedupe_older_than is not None:
            while await self._submit(dedupe_op):
                pass
        return total

    async def audit(self, actor: str, action: str, tx_id: str) -> None:
        await self._submit(lambda conn: conn.execute("INSERT INTO audit VALUES (?,?,?,?)",
                                                     (time.time(), actor, action, tx_id)))

    async def audit_log(self, tx_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        def q(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            if tx_id:
                rows = conn.execute("SELECT * FROM audit WHERE tx_id=? ORDER BY rowid DESC LIMIT ?", (tx_id, limit))
            else:
                rows = conn.execute("SELECT * FROM audit ORDER BY rowid DESC LIMIT ?", (limit,))
            return [dict(r) for r in rows.fetchall()]
        return await self._read(q)

    async def counts(self) -> dict[str, int]:
        def q(conn: sqlite3.Connection) -> dict[str, int]:
            return {r[0]: r[1] for r in conn.execute("SELECT status, count(*) FROM transactions GROUP BY status")}
        return await self._read(q)


_SUMMARY_COLUMNS = (
    "t.id, t.received_at, t.updated_at, t.channel, t.protocol, t.transport, t.client, t.status, "
    "t.message_type, t.control_id, t.sender, t.content_type, t.ack_code, t.error, t.attempts, t.duplicates, "
    "t.rerun_of"
)


_INSERT_ATTEMPT = "INSERT INTO route_attempts VALUES (?,?,?,?,?,?,?,?,?,?,?)"


def _attempt_row(a: RouteAttempt) -> tuple[Any, ...]:
    return (a.tx_id, a.route, a.attempt, a.started_at, a.duration_ms, a.request_url, a.request_body,
            a.response_status, a.response_body, a.error, a.outcome)


def _resolve_all(results: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for fut, ok, value in results:
        if fut.done():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


def _begin(conn: sqlite3.Connection, timeout: float = 30.0) -> None:
    """BEGIN IMMEDIATE, waiting for another process's write lock in sub-millisecond steps.

    SQLite's own busy handler sleeps in steps of up to 100 ms, which would show as ACK latency
    whenever a worker process holds the lock for a moment; this waits in steps of 0.1-0.5 ms instead.
    """
    delay, deadline = 0.0001, time.monotonic() + timeout
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 1.5, 0.0005)


def partition_key(ordering_key: str) -> int:
    """A stable number for an ordering key: messages of one patient always land in one partition."""
    return zlib.crc32(ordering_key.encode("utf-8"))


def _insert(conn: sqlite3.Connection, r: InboundRecord) -> int:
    now = time.time()
    cur = conn.execute(
        "INSERT INTO transactions (id, received_at, updated_at, channel, protocol, transport, client, status, "
        "message_type, control_id, sender, ordering_key, partition_key, content_type, body, ack, ack_code, error, "
        "rerun_of) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (r.id, r.received_at, now, r.channel, r.protocol, r.transport, r.client, r.status.value, r.message_type,
         r.control_id, r.sender, r.ordering_key, partition_key(r.ordering_key or r.id), r.content_type, r.body,
         r.ack, r.ack_code, r.error, r.rerun_of))
    seq = cur.lastrowid
    if r.identifiers:
        conn.executemany("INSERT OR IGNORE INTO tx_identifiers VALUES (?, ?)",
                         [(v, seq) for v in r.identifiers])
    return int(seq or 0)


def _accept(conn: sqlite3.Connection, r: InboundRecord) -> AcceptResult:
    if r.control_id:
        cur = conn.execute("INSERT OR IGNORE INTO dedupe VALUES (?, ?, ?, ?, ?)",
                           (r.sender, r.control_id, r.id, r.received_at, r.ack))
        if cur.rowcount == 0:
            tx_id, ack = conn.execute("SELECT tx_id, ack FROM dedupe WHERE sender = ? AND control_id = ?",
                                      (r.sender, r.control_id)).fetchone()
            conn.execute("UPDATE transactions SET duplicates = duplicates + 1 WHERE id = ?", (tx_id,))
            return AcceptResult(tx_id, True, ack)
    _insert(conn, r)
    return AcceptResult(r.id, False, r.ack)
