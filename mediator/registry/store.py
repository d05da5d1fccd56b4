"""SQLite storage of the client registry (its own file under the data directory, WAL mode).

Tables:

``source``     every source record as sent (source system + local id), its features, and its link to
               a golden record (``link``: auto, manual, new, candidate)
``golden``     enterprise identities; ``data`` is the survivorship result; merged ones point onwards
``block``      blocking keys → source record (clustered, ``WITHOUT ROWID``): identifiers, name
               skeletons with year or date of birth, phone — candidate sets stay small at millions
``candidate``  the review queue: a source record that may belong to a golden record, with evidence
``not_match``  sticky manual "not the same person" decisions
``audit``      every decision (automatic or manual) with who, when and what moved
``name_freq``  how often each name key occurs (frequency-aware weights)

The store is synchronous; :class:`~mediator.registry.registry.ClientRegistry` serialises access
with a lock and callers on the event loop go through ``asyncio.to_thread``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

__all__ = ["RegistryStore", "SourceRow"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS golden (
    id TEXT PRIMARY KEY, status TEXT NOT NULL DEFAULT 'active', merged_into TEXT,
    data BLOB, created REAL NOT NULL, updated REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS source (
    id INTEGER PRIMARY KEY, source TEXT NOT NULL, local_id TEXT NOT NULL, golden TEXT NOT NULL,
    link TEXT NOT NULL, score REAL, features BLOB NOT NULL, raw BLOB NOT NULL, flags TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'active', created REAL NOT NULL, updated REAL NOT NULL,
    UNIQUE (source, local_id)
);
CREATE INDEX IF NOT EXISTS source_golden ON source (golden);
CREATE TABLE IF NOT EXISTS block (key TEXT NOT NULL, sid INTEGER NOT NULL, PRIMARY KEY (key, sid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS candidate (
    id INTEGER PRIMARY KEY, sid INTEGER NOT NULL, golden TEXT NOT NULL, score REAL NOT NULL, evidence BLOB,
    status TEXT NOT NULL DEFAULT 'open', created REAL NOT NULL, decided REAL, decided_by TEXT
);
CREATE INDEX IF NOT EXISTS candidate_status ON candidate (status, id);
CREATE INDEX IF NOT EXISTS candidate_sid ON candidate (sid);
CREATE TABLE IF NOT EXISTS not_match (source TEXT NOT NULL, local_id TEXT NOT NULL, golden TEXT NOT NULL,
    PRIMARY KEY (source, local_id, golden)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    sid INTEGER, golden TEXT, detail BLOB
);
CREATE INDEX IF NOT EXISTS audit_golden ON audit (golden, id);
CREATE TABLE IF NOT EXISTS name_freq (part TEXT NOT NULL, key TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (part, key)) WITHOUT ROWID;
"""


class SourceRow:
    """One stored source record (features left as JSON until needed)."""

    __slots__ = ("features", "golden", "id", "link", "local_id", "raw", "score", "source", "status")

    def __init__(self, row: tuple[Any, ...]) -> None:
        (self.id, self.source, self.local_id, self.golden, self.link, self.score, self.features, self.raw,
         self.status) = row

    def features_json(self) -> Any:
        return orjson.loads(self.features)

    def raw_json(self) -> Any:
        return orjson.loads(self.raw)


_SOURCE_COLS = "id, source, local_id, golden, link, score, features, raw, status"


class RegistryStore:
    """Thin, synchronous SQL layer; one connection, used under the registry's lock."""

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL", checkpoint_pages: int = 20000) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA busy_timeout=10000")  # worker processes share the file
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={synchronous}")
        self.db.execute("PRAGMA temp_store=MEMORY")
        self.db.execute("PRAGMA cache_size=-262144")  # 256 MiB page cache
        # checkpoint every ~80 MB of WAL instead of 4 MB: a hot page (name counts, the tails of the
        # source and audit tables) is copied back once per checkpoint, not once per few commits
        self.db.execute(f"PRAGMA wal_autocheckpoint={int(checkpoint_pages)}")
        self.db.executescript(SCHEMA)
        self._depth = 0

    def close(self) -> None:
        self.db.close()

    # -- transactions -------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Nestable: only the outermost level begins and commits."""
        if self._depth == 0:
            self.db.execute("BEGIN IMMEDIATE")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self.db.execute("ROLLBACK")
            raise
        self._depth -= 1
        if self._depth == 0:
            self.db.execute("COMMIT")

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction: rolled back alone when its block raises."""
        self.db.execute("SAVEPOINT one")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK TO one")
            self.db.execute("RELEASE one")
            raise
        self.db.execute("RELEASE one")

    # -- meta / frequencies --------------------------------------------------------------------------
    def meta(self, k: str, default: str = "") -> str:
        row = self.db.execute("SELECT v FROM meta WHERE k = ?", (k,)).fetchone()
        return row[0] if row else default

    def set_meta(self, k: str, v: str) -> None:
        self.db.execute("INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v", (k, v))

    def name_freqs(self) -> Iterable[tuple[str, str, int]]:
        return self.db.execute("SELECT part, key, n FROM name_freq")

    def bump_names(self, items: Iterable[tuple[str, str]], delta: int = 1) -> None:
        self.db.executemany(
            "INSERT INTO name_freq (part, key, n) VALUES (?, ?, ?) ON CONFLICT (part, key) DO UPDATE SET n = n + ?",
            [(p, k, delta, delta) for p, k in items if k])

    # -- source records ------------------------------------------------------------------------------
    def source_by_key(self, source: str, local_id: str) -> SourceRow | None:
        row = self.db.execute(f"SELECT {_SOURCE_COLS} FROM source WHERE source = ? AND local_id = ?",
                              (source, local_id)).fetchone()
        return SourceRow(row) if row else None

    def source_by_id(self, sid: int) -> SourceRow | None:
        row = self.db.execute(f"SELECT {_SOURCE_COLS} FROM source WHERE id = ?", (sid,)).fetchone()
        return SourceRow(row) if row else None

    def sources_by_ids(self, sids: list[int]) -> list[SourceRow]:
        out: list[SourceRow] = []
        for i in range(0, len(sids), 500):
            chunk = sids[i:i + 500]
            q = f"SELECT {_SOURCE_COLS} FROM source WHERE status = 'active' AND id IN ({','.join('?' * len(chunk))})"
            out.extend(SourceRow(r) for r in self.db.execute(q, chunk))
        return out

    def match_rows(self, sids: list[int]) -> list[tuple[int, str, bytes]]:
        """``(id, golden, features)`` of the active records among ``sids`` (what scoring needs, nothing more)."""
        out: list[tuple[int, str, bytes]] = []
        for i in range(0, len(sids), 500):
            chunk = sids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            out.extend(self.db.execute(
                f"SELECT id, golden, features FROM source WHERE status = 'active' AND id IN ({marks})", chunk))
        return out

    def sources_of_golden(self, golden: str) -> list[SourceRow]:
        return [SourceRow(r) for r in self.db.execute(
            f"SELECT {_SOURCE_COLS} FROM source WHERE golden = ? ORDER BY id", (golden,))]

    def insert_source(self, source: str, local_id: str, golden: str, link: str, score: float | None,
                      features: Any, raw: Any, flags: list[str]) -> int:
        now = time.time()
        cur = self.db.execute(
            "INSERT INTO source (source, local_id, golden, link, score, features, raw, flags, created, updated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (source, local_id, golden, link, score, orjson.dumps(features), orjson.dumps(raw), ",".join(flags),
             now, now))
        return int(cur.lastrowid or 0)

    def update_source_data(self, sid: int, features: Any, raw: Any, flags: list[str]) -> None:
        self.db.execute("UPDATE source SET features = ?, raw = ?, flags = ?, updated = ? WHERE id = ?",
                        (orjson.dumps(features), orjson.dumps(raw), ",".join(flags), time.time(), sid))

    def set_link(self, sid: int, golden: str, link: str, score: float | None = None) -> None:
        self.db.execute("UPDATE source SET golden = ?, link = ?, score = COALESCE(?, score), updated = ? WHERE id = ?",
                        (golden, link, score, time.time(), sid))

    def set_source_status(self, sid: int, status: str) -> None:
        self.db.execute("UPDATE source SET status = ?, updated = ? WHERE id = ?", (status, time.time(), sid))

    def count_sources(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM source").fetchone()[0])

    # -- blocking ------------------------------------------------------------------------------------
    def add_blocks(self, sid: int, keys: Iterable[str]) -> None:
        self.db.executemany("INSERT OR IGNORE INTO block (key, sid) VALUES (?, ?)", [(k, sid) for k in keys])

    def all_features(self, chunk: int = 20_000) -> Iterator[tuple[int, bytes]]:
        """``(id, features)`` of every source record, in id order, read ``chunk`` rows at a time."""
        last = 0
        while True:
            rows = self.db.execute("SELECT id, features FROM source WHERE id > ? ORDER BY id LIMIT ?",
                                   (last, chunk)).fetchall()
            if not rows:
                return
            yield from rows
            last = rows[-1][0]

    def rebuild_blocks(self, entries: Iterable[tuple[int, Iterable[str]]]) -> int:
        """Replace the whole blocking index by ``(sid, keys)`` entries (inside the caller's transaction)."""
        self.db.execute("DROP TABLE IF EXISTS block_new")
        self.db.execute("CREATE TABLE block_new (key TEXT NOT NULL, sid INTEGER NOT NULL, PRIMARY KEY (key, sid)) "
                        "WITHOUT ROWID")
        n = 0
        batch: list[tuple[str, int]] = []
        for sid, keys in entries:
            n += 1
            batch.extend((k, sid) for k in keys)
            if len(batch) >= 100_000:
                self.db.executemany("INSERT OR IGNORE INTO block_new (key, sid) VALUES (?, ?)", batch)
                batch = []
        self.db.executemany("INSERT OR IGNORE INTO block_new (key, sid) VALUES (?, ?)", batch)
        self.db.execute("DROP TABLE block")
        self.db.execute("ALTER TABLE block_new RENAME TO block")
        return n

    def remove_blocks(self, sid: int, keys: Iterable[str]) -> None:
        self.db.executemany("DELETE FROM block WHERE key = ? AND sid = ?", [(k, sid) for k in keys])

    def keys_with_prefix(self, prefix: str, limit: int) -> list[str]:
        """Distinct blocking keys starting with ``prefix`` (range scan on the clustered key)."""
        hi = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        return [r[0] for r in self.db.execute("SELECT DISTINCT key FROM block WHERE key >= ? AND key < ? LIMIT ?",
                                              (prefix, hi, limit))]

    def blocks_members(self, keys: list[str], limit: int) -> dict[str, list[int]]:
        """Members of several blocking keys in one query (at most ``limit`` each)."""
        if not keys:
            return {}
        q = " UNION ALL ".join(["SELECT * FROM (SELECT key, sid FROM block WHERE key = ? LIMIT ?)"] * len(keys))
        args: list[Any] = []
        for k in keys:
            args += [k, limit]
        out: dict[str, list[int]] = {}
        for k, sid in self.db.execute(q, args):
            out.setdefault(k, []).append(sid)
        return out

    def prefix_members(self, prefix: str, limit: int) -> list[int]:
        """Members of every key starting with ``prefix`` (at most ``limit``; a range scan)."""
        hi = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        return [r[0] for r in self.db.execute("SELECT sid FROM block WHERE key >= ? AND key < ? LIMIT ?",
                                              (prefix, hi, limit))]

    def block_members(self, key: str, limit: int) -> list[int]:
        return [r[0] for r in self.db.execute("SELECT sid FROM block WHERE key = ? LIMIT ?", (key, limit))]

    # -- golden --------------------------------------------------------------------------------------
    def insert_golden(self, gid: str, data: Any) -> None:
        now = time.time()
        self.db.execute("INSERT INTO golden (id, status, data, created, updated) VALUES (?, 'active', ?, ?, ?)",
                        (gid, orjson.dumps(data), now, now))

    def golden(self, gid: str) -> tuple[str, str | None, Any] | None:
        row = self.db.execute("SELECT status, merged_into, data FROM golden WHERE id = ?", (gid,)).fetchone()
        return (row[0], row[1], orjson.loads(row[2]) if row[2] else {}) if row else None

    def set_golden(self, gid: str, *, data: Any = None, status: str | None = None,
                   merged_into: str | None | bool = False) -> None:
        sets, args = ["updated = ?"], [time.time()]
        if data is not None:
            sets.append("data = ?")
            args.append(orjson.dumps(data))  # type: ignore[arg-type]
        if status is not None:
            sets.append("status = ?")
            args.append(status)  # type: ignore[arg-type]
        if merged_into is not False:
            sets.append("merged_into = ?")
            args.append(merged_into)  # type: ignore[arg-type]
        self.db.execute(f"UPDATE golden SET {', '.join(sets)} WHERE id = ?", (*args, gid))

    # -- review queue ---------------------------------------------------------------------------------
    def add_candidate(self, sid: int, golden: str, score: float, evidence: Any) -> int:
        cur = self.db.execute("INSERT INTO candidate (sid, golden, score, evidence, created) VALUES (?, ?, ?, ?, ?)",
                              (sid, golden, score, orjson.dumps(evidence), time.time()))
        return int(cur.lastrowid or 0)

    def candidates(self, status: str = "open", limit: int = 100, after: int = 0) -> list[tuple[Any, ...]]:
        return self.db.execute(
            "SELECT id, sid, golden, score, evidence, status, created, decided, decided_by FROM candidate "
            "WHERE status = ? AND id > ? ORDER BY id LIMIT ?", (status, after, limit)).fetchall()

    def candidate(self, cid: int) -> tuple[Any, ...] | None:
        return self.db.execute(
            "SELECT id, sid, golden, score, evidence, status, created, decided, decided_by FROM candidate "
            "WHERE id = ?", (cid,)).fetchone()

    def candidates_of(self, sid: int, status: str = "open") -> list[tuple[Any, ...]]:
        return self.db.execute("SELECT id, golden, score FROM candidate WHERE sid = ? AND status = ?",
                               (sid, status)).fetchall()

    def close_candidates(self, sid: int, status: str, actor: str, golden: str | None = None) -> None:
        q = "UPDATE candidate SET status = ?, decided = ?, decided_by = ? WHERE sid = ? AND status = 'open'"
        args: list[Any] = [status, time.time(), actor, sid]
        if golden is not None:
            q += " AND golden = ?"
            args.append(golden)
        self.db.execute(q, args)

    def count_candidates(self, status: str = "open") -> int:
        return int(self.db.execute("SELECT count(*) FROM candidate WHERE status = ?", (status,)).fetchone()[0])

    def add_not_match(self, source: str, local_id: str, golden: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO not_match (source, local_id, golden) VALUES (?, ?, ?)",
                        (source, local_id, golden))

    def not_matches(self, source: str, local_id: str) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT golden FROM not_match WHERE source = ? AND local_id = ?",
                                              (source, local_id))}

    # -- audit ---------------------------------------------------------------------------------------
    def audit(self, actor: str, action: str, sid: int | None, golden: str | None, detail: Any = None) -> int:
        cur = self.db.execute("INSERT INTO audit (at, actor, action, sid, golden, detail) VALUES (?, ?, ?, ?, ?, ?)",
                              (time.time(), actor, action, sid, golden,
                               orjson.dumps(detail) if detail is not None else None))
        return int(cur.lastrowid or 0)

    def audit_entry(self, aid: int) -> tuple[Any, ...] | None:
        return self.db.execute("SELECT id, at, actor, action, sid, golden, detail FROM audit WHERE id = ?",
                               (aid,)).fetchone()

    def audit_log(self, golden: str | None = None, limit: int = 100) -> list[tuple[Any, ...]]:
        if golden:
            return self.db.execute("SELECT id, at, actor, action, sid, golden, detail FROM audit WHERE golden = ? "
                                   "ORDER BY id DESC LIMIT ?", (golden, limit)).fetchall()
        return self.db.execute("SELECT id, at, actor, action, sid, golden, detail FROM audit ORDER BY id DESC "
                               "LIMIT ?", (limit,)).fetchall()

    def last_merge(self, golden: str) -> tuple[Any, ...] | None:
        return self.db.execute(
            "SELECT id, at, actor, action, sid, golden, detail FROM audit WHERE golden = ? AND action IN "
            "('merge', 'merge-a40') ORDER BY id DESC LIMIT 1", (golden,)).fetchone()
