"""The data-key store: wrapped data keys (DEKs) per key id and version.

``SqliteKeyStore`` is the embedded default for one machine. First use of a key id is an
``INSERT OR IGNORE`` on the primary key ``(key_id, version)``: when several processes
see a new subject at the same moment each proposes a freshly wrapped key, exactly one
row wins, and everyone reads the winner back. Usage counters are reserved in blocks
with one atomic ``UPDATE ... RETURNING``, so the total number of encryptions under a
DEK version is bounded across all processes. Erasure deletes the rows and records a
tombstone in one transaction; ``secure_delete`` overwrites the freed pages.

For a cluster, ``veil.transforms.crypto.kafka_store.KafkaKeyStore`` implements the same
interface on a compacted Kafka topic (``--veil_key_store kafka://TOPIC``); only wrapped
keys live in either store, never a plaintext key.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import NamedTuple

ACTIVE = "active"
RETIRED = "retired"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS data_keys (
    key_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    kek_id TEXT NOT NULL,
    kek_version INTEGER NOT NULL,
    wrapped BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'active',
    uses INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (key_id, version)
);
CREATE TABLE IF NOT EXISTS erased (
    key_id TEXT PRIMARY KEY,
    erased_ms INTEGER NOT NULL
);
"""


class StoredKey(NamedTuple):
    key_id: str
    version: int
    kek_id: str
    kek_version: int
    wrapped: bytes
    state: str
    uses: int
    created_ms: int


class SubjectErased(Exception):
    """The key id was crypto-shredded; no new key is created for it."""


class SqliteKeyStore:
    """Wrapped DEKs in one SQLite file shared by the processes of one machine."""

    def __init__(self, path):
        self._path = str(Path(path))
        Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        # Wrapped keys only, but still nobody else's business: owner-only from creation
        # (and SQLite's journal files take the database file's mode).
        os.close(os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600))
        if os.stat(self._path).st_mode & 0o077:
            os.chmod(self._path, 0o600)
        self._conn = self._connect()
        self._conn.executescript(_SCHEMA)

    def _connect(self):
        conn = sqlite3.connect(
            self._path, timeout=30, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA secure_delete=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def __getstate__(self):
        return {"path": self._path}

    def __setstate__(self, state):
        self.__init__(state["path"])

    def get(self, key_id: str, version: int) -> StoredKey | None:
        row = self._conn.execute(
            "SELECT * FROM data_keys WHERE key_id=? AND version=?", (key_id, version)
        ).fetchone()
        return StoredKey(*row) if row else None

    def primary(self, key_id: str) -> StoredKey | None:
        """The newest active version of ``key_id``."""
        row = self._conn.execute(
            "SELECT * FROM data_keys WHERE key_id=? AND state='active' "
            "ORDER BY version DESC LIMIT 1",
            (key_id,),
        ).fetchone()
        return StoredKey(*row) if row else None

    def latest_version(self, key_id: str) -> int:
        """The highest version of ``key_id`` in any state (0 when none)."""
        row = self._conn.execute(
            "SELECT MAX(version) FROM data_keys WHERE key_id=?", (key_id,)
        ).fetchone()
        return row[0] or 0

    def insert_if_absent(self, key: StoredKey) -> StoredKey:
        """Inserts ``key`` unless its (key id, version) exists; returns the stored row."""
        if self.is_erased(key.key_id):
            raise SubjectErased()
        self._conn.execute("INSERT OR IGNORE INTO data_keys VALUES (?,?,?,?,?,?,?,?)", tuple(key))
        return self.get(key.key_id, key.version)

    def reserve(self, key_id: str, version: int, count: int) -> int:
        """Adds ``count`` to the version's usage counter; returns the new total."""
        row = self._conn.execute(
            "UPDATE data_keys SET uses = uses + ? WHERE key_id=? AND version=? RETURNING uses",
            (count, key_id, version),
        ).fetchone()
        return row[0] if row else -1

    def set_state(self, key_id: str, version: int, state: str) -> None:
        self._conn.execute(
            "UPDATE data_keys SET state=? WHERE key_id=? AND version=?", (state, key_id, version)
        )

    def rewrap(self, key: StoredKey, kek_version: int, wrapped: bytes) -> bool:
        """Replaces the wrapping if nobody changed it meanwhile (compare and set)."""
        cur = self._conn.execute(
            "UPDATE data_keys SET kek_version=?, wrapped=? "
            "WHERE key_id=? AND version=? AND kek_version=? AND wrapped=?",
            (kek_version, wrapped, key.key_id, key.version, key.kek_version, key.wrapped),
        )
        return cur.rowcount == 1

    def erase(self, key_id: str) -> int:
        """Deletes every version of ``key_id`` and leaves a tombstone; returns the count."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            count = conn.execute("DELETE FROM data_keys WHERE key_id=?", (key_id,)).rowcount
            conn.execute(
                "INSERT OR REPLACE INTO erased VALUES (?, ?)", (key_id, int(time.time() * 1000))
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return count

    def is_erased(self, key_id: str) -> bool:
        return (
            self._conn.execute("SELECT 1 FROM erased WHERE key_id=?", (key_id,)).fetchone()
            is not None
        )

    def all_keys(self) -> list[StoredKey]:
        return [
            StoredKey(*r)
            for r in self._conn.execute("SELECT * FROM data_keys ORDER BY key_id, version")
        ]

    def erased_ids(self) -> list[str]:
        return [r[0] for r in self._conn.execute("SELECT key_id FROM erased ORDER BY key_id")]
