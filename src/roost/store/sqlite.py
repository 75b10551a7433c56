"""The embedded default store: SQLite in WAL mode, one writer thread with group commit.

An `apply()` returns only after its transaction is committed with ``synchronous=FULL``, so a write
the API acknowledged survives ``kill -9`` of the agent and a power cut. Writers that arrive while a
commit is in flight are batched into the next transaction (one fsync for many registrations); each
write still gets its own index.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from roost.errors import Conflict, StoreUnavailable
from roost.store.feed import LocalFeed
from roost.store.protocol import Change

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    create_index INTEGER NOT NULL,
    modify_index INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_MAX_BATCH = 512

_Job = tuple[Mapping[str, "bytes | None"], "Mapping[str, int] | None", asyncio.Future[int]]


class SqliteStore:
    name = "sqlite"

    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / "roost.db"
        self._feed = LocalFeed()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._index = 0

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._loop = asyncio.get_running_loop()
        db = self._connect()
        row = db.execute("SELECT value FROM meta WHERE name = 'index'").fetchone()
        # As etcd: an empty store is at index 1 and the first write gets 2, so index 1, the floor
        # the API reports, is never the index of a change a watcher could miss.
        self._index = int(row[0]) if row else 1
        db.close()
        self._thread = threading.Thread(target=self._writer, name="roost-sqlite-writer", daemon=True)
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open the data store at {self.path}: {exc}") from exc
        return db

    async def close(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    async def apply(
        self, writes: Mapping[str, bytes | None], *, expect: Mapping[str, int] | None = None
    ) -> int:
        if self._loop is None or self._thread is None:
            raise StoreUnavailable("the store is not open")
        future: asyncio.Future[int] = self._loop.create_future()
        self._jobs.put((writes, expect, future))
        return await future

    async def snapshot(self) -> tuple[int, dict[str, tuple[int, int, bytes]]]:
        def read() -> tuple[int, dict[str, tuple[int, int, bytes]]]:
            db = self._connect()
            try:
                db.execute("BEGIN")
                row = db.execute("SELECT value FROM meta WHERE name = 'index'").fetchone()
                rows = db.execute("SELECT key, create_index, modify_index, value FROM kv").fetchall()
                db.execute("COMMIT")
            finally:
                db.close()
            return (int(row[0]) if row else 1), {k: (c, m, bytes(v)) for k, c, m, v in rows}

        return await asyncio.to_thread(read)

    def follow(self, since: int) -> AsyncIterator[list[Change]]:
        return self._feed.follow(since)

    def connected(self) -> tuple[bool, float]:
        return True, 0.0

    # -- the writer thread -------------------------------------------------------------------

    def _writer(self) -> None:
        db = self._connect()
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                batch = [job]
                stop = False
                while len(batch) < _MAX_BATCH:
                    try:
                        more = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    batch.append(more)
                self._commit(db, batch)
                if stop:
                    return
        finally:
            db.close()

    def _commit(self, db: sqlite3.Connection, batch: list[_Job]) -> None:
        results: list[tuple[asyncio.Future[int], int | BaseException]] = []
        changes: list[Change] = []
        index = self._index
        try:
            db.execute("BEGIN IMMEDIATE")
            for writes, expect, future in batch:
                db.execute("SAVEPOINT job")
                try:
                    for key, want in (expect or {}).items():
                        row = db.execute("SELECT modify_index FROM kv WHERE key = ?", (key,)).fetchone()
                        have = int(row[0]) if row else 0
                        if have != want:
                            raise Conflict(f"{key} changed (index {have}, expected {want})")
                    index += 1
                    for key, value in writes.items():
                        if value is None:
                            db.execute("DELETE FROM kv WHERE key = ?", (key,))
                        else:
                            db.execute(
                                "INSERT INTO kv (key, value, create_index, modify_index) VALUES (?, ?, ?, ?) "
                                "ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
                                "modify_index = excluded.modify_index",
                                (key, value, index, index),
                            )
                        changes.append(Change(index, key, value))
                    db.execute("RELEASE job")
                    results.append((future, index))
                except Conflict as exc:
                    db.execute("ROLLBACK TO job")
                    db.execute("RELEASE job")
                    results.append((future, exc))
            db.execute(
                "INSERT INTO meta (name, value) VALUES ('index', ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                (index,),
            )
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            error = StoreUnavailable(f"the data store failed to write: {exc}")
            self._deliver([], [(f, error) for _, _, f in batch])
            return
        self._index = index
        self._deliver(changes, results)

    def _deliver(
        self, changes: list[Change], results: list[tuple[asyncio.Future[int], int | BaseException]]
    ) -> None:
        def done() -> None:
            if changes:
                self._feed.publish(changes)
            for future, result in results:
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

        assert self._loop is not None
        self._loop.call_soon_threadsafe(done)
