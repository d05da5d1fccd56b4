"""The SQLite store: durable accept, dedupe, rejections, recovery, reruns, filters, group commit."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from mediator.store.base import InboundRecord, RouteAttempt, Status, TransactionFilter, new_id
from mediator.store.sqlite import SQLiteStore


def record(i: int, *, sender: str = "APP|FAC", control_id: str | None = None, key: str = "",
           identifiers: list[str] | None = None) -> InboundRecord:
    return InboundRecord(
        id=new_id(), channel="adt", protocol="hl7v2", transport="mllp", client="test", content_type="x",
        body=f"MSH|{i}".encode(), received_at=time.time(), message_type="ADT^A01",
        control_id=control_id if control_id is not None else f"C{i}", sender=sender, ordering_key=key,
        identifiers=identifiers or [], ack=f"ACK{i}", ack_code="AA")


@pytest.fixture
async def store(tmp_path: Path):
    s = SQLiteStore(tmp_path / "m.db", commit_interval_ms=1)
    await s.open()
    yield s
    await s.close()


async def test_accept_then_duplicate_returns_original_ack(store: SQLiteStore) -> None:
    first = await store.accept(record(1))
    again = record(1)
    again.ack = "A DIFFERENT ACK"
    dup = await store.accept(again)
    assert not first.duplicate and dup.duplicate
    assert dup.tx_id == first.tx_id and dup.ack == "ACK1"
    tx = await store.get_transaction(first.tx_id)
    assert tx is not None and tx["duplicates"] == 1
    assert await store.get_transaction(again.id) is None  # the resend made no new transaction


async def test_same_control_id_from_another_sender_is_not_a_duplicate(store: SQLiteStore) -> None:
    a = await store.accept(record(1, sender="APP|FAC1", control_id="X"))
    b = await store.accept(record(2, sender="APP|FAC2", control_id="X"))
    assert not a.duplicate and not b.duplicate


async def test_concurrent_duplicates_store_one(store: SQLiteStore) -> None:
    results = await asyncio.gather(*(store.accept(record(i, control_id="SAME")) for i in range(20)))
    assert sum(not r.duplicate for r in results) == 1
    assert len({r.tx_id for r in results}) == 1


async def test_rejected_message_is_kept_and_does_not_block_a_corrected_resend(store: SQLiteStore) -> None:
    bad = record(1, control_id="C9")
    bad.error = "PID-7 102: impossible date"
    await store.reject(bad)
    good = await store.accept(record(2, control_id="C9"))
    assert not good.duplicate
    tx = await store.get_transaction(bad.id)
    assert tx is not None and tx["status"] == "Rejected" and "PID-7" in tx["error"]


async def test_pending_survives_reopen_and_processing_goes_back_to_queue(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "m.db")
    await s.open()
    ids = [(await s.accept(record(i, key=f"k{i % 2}"))).tx_id for i in range(5)]
    await s.mark(ids[0], Status.PROCESSING)
    await s.mark(ids[1], Status.SUCCESSFUL)
    await s.close()
    s2 = SQLiteStore(tmp_path / "m.db")
    await s2.open()
    pending = await s2.pending()
    await s2.close()
    assert [p.id for p in pending] == [ids[0], *ids[2:]]  # arrival order kept
    assert pending[0].ordering_key == "k0"


async def test_group_commit_shares_commits(store: SQLiteStore) -> None:
    before = store.commits
    await asyncio.gather(*(store.accept(record(i)) for i in range(200)))
    assert store.commits - before < 200  # many accepts per fsync


async def test_one_failing_operation_does_not_sink_its_batch(store: SQLiteStore) -> None:
    a = record(1)
    b = record(2)
    b.id = a.id  # primary key clash: this accept fails alone
    results = await asyncio.gather(store.accept(a), store.accept(b), store.accept(record(3)),
                                   return_exceptions=True)
    assert not isinstance(results[0], Exception)
    assert isinstance(results[1], Exception)
    assert not isinstance(results[2], Exception)


async def test_filters_and_pagination(store: SQLiteStore) -> None:
    for i in range(30):
        await store.accept(record(i, identifiers=[f"CIN{i % 3}"]))
    r = record(99, control_id="WANTED")
    await store.accept(r)
    await store.mark(r.id, Status.FAILED, error="route shr: HTTP 500")
    assert [t["id"] for t in await store.list_transactions(TransactionFilter(control_id="WANTED"))] == [r.id]
    assert [t["id"] for t in await store.list_transactions(TransactionFilter(status="Failed"))] == [r.id]
    assert len(await store.list_transactions(TransactionFilter(patient="CIN1"))) == 10
    page1 = await store.list_transactions(TransactionFilter(limit=20))
    page2 = await store.list_transactions(TransactionFilter(limit=20, before=page1[-1]["id"]))
    assert len(page1) == 20 and len(page2) == 11
    assert not {t["id"] for t in page1} & {t["id"] for t in page2}
    future = time.time() + 60
    assert await store.list_transactions(TransactionFilter(since=future)) == []
    assert len(await store.list_transactions(TransactionFilter(until=future, limit=1000))) == 31


async def test_attempts_rerun_and_audit(store: SQLiteStore) -> None:
    r = record(1, identifiers=["CIN1"])
    await store.accept(r)
    await store.record_attempts([RouteAttempt(r.id, "shr", 1, time.time(), 12.5, "http://x", "{}", 503, "busy",
                                              "", "retry")])
    await store.mark(r.id, Status.SUCCESSFUL, attempts=2, attempts_log=[
        RouteAttempt(r.id, "shr", 2, time.time(), 8.0, "http://x", "{}", 200, "ok", "", "delivered")])
    tx = await store.get_transaction(r.id)
    assert tx is not None
    assert [(a["attempt"], a["response_status"], a["outcome"]) for a in tx["attempts_log"]] == [
        (1, 503, "retry"), (2, 200, "delivered")]
    queued = await store.rerun(r.id)
    assert queued is not None and queued.id != r.id and queued.body == r.body
    again = await store.get_transaction(queued.id)
    assert again is not None and again["rerun_of"] == r.id and again["status"] == "Queued"
    assert len(await store.list_transactions(TransactionFilter(patient="CIN1"))) == 2
    assert await store.rerun("nope") is None
    await store.audit("operator", "read", r.id)
    log = await store.audit_log(r.id)
    assert log[0]["actor"] == "operator" and log[0]["action"] == "read"


async def test_prune_keeps_unfinished_work_and_duplicate_keys_outlive_transactions(store: SQLiteStore) -> None:
    old = [record(i) for i in range(5)]
    for r in old:
        r.received_at = time.time() - 10 * 86400
        await store.accept(r)
    for r in old[:4]:
        await store.mark(r.id, Status.SUCCESSFUL, attempts_log=[
            RouteAttempt(r.id, "shr", 1, time.time(), 1.0, "u", "{}", 200, "", "", "delivered")])
    fresh = record(99)
    await store.accept(fresh)
    await store.mark(fresh.id, Status.SUCCESSFUL)
    removed = await store.prune(time.time() - 86400, batch=2)  # small batches: several passes
    assert removed == 4
    assert await store.get_transaction(old[0].id) is None
    assert (await store.get_transaction(old[4].id))["status"] == "Queued"  # never pruned while unfinished
    assert (await store.get_transaction(fresh.id))["status"] == "Successful"
    dup = await store.accept(record(0))  # the transaction is gone, the ACK sent for it is not
    assert dup.duplicate and dup.ack == "ACK0"
    await store.prune(None, dedupe_older_than=time.time() - 86400)
    again = await store.accept(record(0))
    assert not again.duplicate  # past the duplicate window: a new message


async def test_owner_checkpoints_the_wal_in_the_background_and_commits_never_do(tmp_path: Path) -> None:
    import shutil
    import sqlite3

    from mediator.store.checkpoint import CHECKPOINT_INTERVAL_S

    owner = SQLiteStore(tmp_path / "m.db")
    worker = SQLiteStore(tmp_path / "m.db")
    await owner.open()
    await worker.open(owner=False)
    try:
        for i in range(300):  # fewer pages than SQLite's automatic checkpoint (1000) would wait for
            await owner.accept(record(i))
        seen = owner.checkpoints
        deadline = time.monotonic() + 10
        while owner.checkpoints < seen + 2 and time.monotonic() < deadline:
            await asyncio.sleep(CHECKPOINT_INTERVAL_S)
        assert owner.checkpoints >= seen + 2 and worker.checkpoints == 0
        # The database file alone (without its WAL) already holds every accepted message.
        shutil.copyfile(tmp_path / "m.db", tmp_path / "copy.db")
        copy = sqlite3.connect(tmp_path / "copy.db")
        try:
            assert copy.execute("SELECT count(*) FROM transactions").fetchone()[0] == 300
        finally:
            copy.close()
    finally:
        await worker.close()
        await owner.close()
    assert owner._checkpointer is None  # close stops the checkpointer thread
