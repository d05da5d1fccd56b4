"""Encryption at rest: bodies and route exchanges sealed, identifiers blinded, everything still usable."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from conftest import make_harness
from cryptography.exceptions import InvalidTag

from mediator.clients.mllp import MllpClient
from mediator.hl7v2 import parse
from mediator.store.crypto import Cipher, StoreKeyError, load_key
from mediator.testing import REPO, adt_message


async def keygen(path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "mediator", "keygen", str(path), cwd=REPO,
                                                stdout=asyncio.subprocess.PIPE)
    await proc.communicate()
    assert proc.returncode == 0


async def test_store_holds_no_patient_data_in_clear(tmp_path: Path) -> None:
    key = tmp_path / "store.key"
    await keygen(key)
    assert (key.stat().st_mode & 0o777) == 0o600
    msg = adt_message(5)
    cin, (latin, name) = parse(msg).get("PID-3.1"), parse(msg).get_all("PID-5[*].1")
    assert cin and name in msg
    async with make_harness(tmp_path / "data", store__encryption_key_file=str(key)) as h:
        c = await MllpClient.connect("127.0.0.1", h.mllp_port)
        assert parse(await c.send(msg)).get("MSA-1") == "AA"
        await c.close()
        await h.wait_idle()
        listed = (await h.get_json(f"/api/transactions?patient={cin}"))["transactions"]
        assert len(listed) == 1  # exact search still works (keyed hash)
        tx = await h.get_json(f"/api/transactions/{listed[0]['id']}")
        assert tx["status"] == "Successful" and tx["request"]["body"] == msg  # decrypted for the operator
        assert name in tx["routes"][0]["request_body"]
        assert (await h.get_json("/api/stats"))["statuses"] == {"Successful": 1}
        rerun = await h.http.post(h.base + f"/api/transactions/{tx['id']}/rerun")
        assert (await h.wait_status((await rerun.json())["id"]))["status"] == "Successful"
    raw = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("mediator.db*"))
    assert b"MENC1" in raw and b"enc1:" in raw
    assert cin.encode() not in raw and name.encode() not in raw and latin.encode() not in raw


def test_sealed_values_are_bound_to_their_transaction(tmp_path: Path) -> None:
    c = Cipher(bytes(range(32)))
    sealed = c.seal(b"PID|1||BK1", "tx1")
    assert c.open(sealed, "tx1") == b"PID|1||BK1"
    with pytest.raises(InvalidTag):
        c.open(sealed, "tx2")  # moved to another row: refused
    with pytest.raises(StoreKeyError):
        Cipher(None).open(sealed, "tx1")
    assert Cipher(None).open(b"plain", "tx1") == b"plain"  # rows stored before encryption was on
    (tmp_path / "bad.key").write_text("not a key")
    with pytest.raises(StoreKeyError):
        load_key(tmp_path / "bad.key")
