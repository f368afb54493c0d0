"""The sandbox's state: one SQLite database (stdlib ``sqlite3``, WAL) shared by every peer.

Everything a restart must keep lives here: apps, bindings, service keys, provider tenants
and their original receipts, the receipts the registry accepted, revocation records,
remembered nonces, purge deliveries (sent and received) and the registry's own signing
key. One connection is shared by all server threads behind a lock; every state change is
one ``BEGIN IMMEDIATE`` transaction, so a check and the write that depends on it can never
interleave with another request's (two unbinds of one service yield one revocation).

The file holds the sandbox's private keys in clear: it is test state, created 0600, and
never meant for real keys.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omictl.errors import UsageError

SCHEMA_VERSION = "1"
#: Every table, for snapshots.
TABLES = (
    "meta",
    "apps",
    "bindings",
    "service_keys",
    "tenants",
    "receipts",
    "revocations",
    "nonces",
    "deliveries",
    "purges",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS apps (
    app_id TEXT PRIMARY KEY,
    master_public_key TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'ACTIVE',
    created_at INTEGER NOT NULL
);
-- registry bindings; a service id is unique in one sandbox (it names the provider endpoint)
CREATE TABLE IF NOT EXISTS bindings (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id TEXT NOT NULL UNIQUE,
    app_id TEXT NOT NULL REFERENCES apps(app_id),
    service_type TEXT NOT NULL,
    public_key TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'REVOKED')),
    revoked_at INTEGER
);
-- the providers' side: each service's signing key and its tenant
CREATE TABLE IF NOT EXISTS service_keys (
    service_id TEXT PRIMARY KEY,
    seed TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tenants (
    service_id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    terminated_at INTEGER,
    data_handling TEXT,
    receipt_id TEXT,
    receipt TEXT
);
-- the registry's side: the receipt it accepted and the record it signed
CREATE TABLE IF NOT EXISTS receipts (
    service_id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    receipt_id TEXT NOT NULL,
    receipt TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS revocations (
    service_id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    revoked_at INTEGER NOT NULL,
    receipt_id TEXT,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS nonces (
    receiver TEXT NOT NULL,
    signer TEXT NOT NULL,
    nonce TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (receiver, signer, nonce)
);
CREATE INDEX IF NOT EXISTS nonces_expiry ON nonces (expires_at);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id TEXT NOT NULL,
    service_id TEXT NOT NULL,
    target TEXT NOT NULL,
    status TEXT NOT NULL,
    detail TEXT,
    at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS purges (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    target TEXT NOT NULL,
    app_id TEXT NOT NULL,
    service_id TEXT NOT NULL,
    service_public_key TEXT NOT NULL,
    nonce TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    envelope TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class BindingRow:
    """A binding as stored."""

    seq: int
    service_id: str
    app_id: str
    service_type: str
    public_key: bytes
    status: str
    revoked_at: int | None


class Store:
    """The sandbox database. Use :meth:`write` for changes and :meth:`read` for queries."""

    def __init__(self, path: Path | None, *, reset: bool = False) -> None:
        """Open (or create) the state at ``path``; ``None`` keeps it in memory.

        ``reset`` deletes an existing state file first. Raises :class:`UsageError` when
        the file cannot be opened or is not a sandbox state file.
        """
        if path is not None:
            path = path.expanduser()
            if reset:
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        Path(f"{path}{suffix}").unlink()
            _create_private(path)
        self.path = path
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(
                ":memory:" if path is None else str(path),
                isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
                check_same_thread=False,  # shared by server threads, guarded by self._lock
                timeout=10.0,
            )
            self._conn.row_factory = sqlite3.Row
            if path is not None:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            with self._lock:
                self._conn.executescript(_SCHEMA)  # idempotent: CREATE ... IF NOT EXISTS
            with self.write() as conn:
                row = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
                if row is None:
                    conn.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
                elif row["value"] != SCHEMA_VERSION:
                    raise UsageError(
                        f"{path} holds sandbox state of schema {row['value']!r}, "
                        f"this omictl writes {SCHEMA_VERSION!r}",
                        hint="start over with --reset",
                    )
        except sqlite3.DatabaseError as exc:
            raise UsageError(
                f"{path} is not a usable sandbox state file: {exc}",
                hint="pick another --state file, or start over with --reset",
            ) from exc

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One transaction (``BEGIN IMMEDIATE``): committed on success, rolled back if the
        body raises, so a rejected request leaves no trace."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """The connection for queries, held exclusively for the ``with`` body."""
        with self._lock:
            yield self._conn

    def close(self) -> None:
        """Close the database (checkpointing the WAL)."""
        with self._lock:
            self._conn.close()

    # ---- small typed queries shared by the peers

    def meta(self, conn: sqlite3.Connection, key: str) -> str | None:
        """A value from the ``meta`` table."""
        row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def app_key(self, conn: sqlite3.Connection, app_id: str) -> bytes | None:
        """The master public key on file for ``app_id``, or ``None``."""
        row = conn.execute(
            "SELECT master_public_key FROM apps WHERE app_id=?", (app_id,)
        ).fetchone()
        return None if row is None else bytes.fromhex(row["master_public_key"])

    def binding(self, conn: sqlite3.Connection, service_id: str) -> BindingRow | None:
        """The binding of ``service_id`` (whatever its app), or ``None``."""
        row = conn.execute("SELECT * FROM bindings WHERE service_id=?", (service_id,)).fetchone()
        return None if row is None else _binding(row)

    def bindings(self, conn: sqlite3.Connection, app_id: str) -> list[BindingRow]:
        """Every binding of ``app_id`` in creation order."""
        rows = conn.execute("SELECT * FROM bindings WHERE app_id=? ORDER BY seq", (app_id,))
        return [_binding(row) for row in rows]

    def remember_nonce(
        self,
        conn: sqlite3.Connection,
        *,
        receiver: str,
        signer: bytes,
        nonce: str,
        now: int,
        window: int,
    ) -> bool:
        """Record that ``receiver`` accepted (``signer``, ``nonce``) at ``now``.

        Returns ``False`` when the pair was already accepted within ``window`` seconds (a
        replay), ``window`` s ago included: a request timestamped 300 s ahead of the clock
        that accepted it is still fresh 600 s later, so forgetting it at exactly 600 s would
        let that same request through again. Expired pairs are forgotten first. Call inside
        :meth:`write`.
        """
        conn.execute("DELETE FROM nonces WHERE expires_at < ?", (now,))
        cursor = conn.execute(
            "INSERT OR IGNORE INTO nonces VALUES (?, ?, ?, ?)",
            (receiver, signer.hex(), nonce, now + window),
        )
        return cursor.rowcount == 1

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Run one query and return plain dicts (for tests and the ``Sandbox`` helpers)."""
        with self.read() as conn:
            return [dict(row) for row in conn.execute(sql, params)]


def _binding(row: sqlite3.Row) -> BindingRow:
    return BindingRow(
        seq=int(row["seq"]),
        service_id=str(row["service_id"]),
        app_id=str(row["app_id"]),
        service_type=str(row["service_type"]),
        public_key=bytes.fromhex(row["public_key"]),
        status=str(row["status"]),
        revoked_at=None if row["revoked_at"] is None else int(row["revoked_at"]),
    )


def _create_private(path: Path) -> None:
    """Create the state file 0600 from birth (it holds the sandbox's private keys)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise UsageError(f"cannot create sandbox state {path}: {exc.strerror}") from exc
    os.close(fd)
