"""Start and drive a sandbox from Python: what ``omictl sandbox``, ``omictl demo`` and the
e2e tests use.

>>> with start_sandbox(master_public_key=signer.public_key) as sb:  # doctest: +SKIP
...     sb.registry_url, sb.app_id, sb.service_ids
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from omictl.core.appid import parse_app_id, validate_service_id
from omictl.core.envelope import PUBLIC_KEY_BYTES, Signer, key_id
from omictl.errors import UsageError
from omictl.sandbox.context import Context
from omictl.sandbox.faults import Faults
from omictl.sandbox.server import SandboxServer
from omictl.sandbox.store import TABLES, Store

DEFAULT_HOST = "127.0.0.1"
DEFAULT_APP_PREFIX = "org.omiappreg.sandbox.demo"
MAX_SERVICES = 1000
#: (service_type, id prefix), cycled as services are added: cms-article-1, storage-blob-2, ...
SERVICE_KINDS = (
    ("CMS", "cms-article"),
    ("Storage", "storage-blob"),
    ("Search", "search-index"),
    ("Analytics", "analytics-events"),
    ("Mail", "mail-relay"),
)


@dataclass(frozen=True)
class ServiceInfo:
    """One bound service as a client would learn it from the registry."""

    service_id: str
    app_id: str
    service_type: str
    endpoint_url: str
    public_key: bytes


def _now() -> int:
    return int(time.time())


def start_sandbox(
    *,
    master_public_key: bytes,
    host: str = DEFAULT_HOST,
    port: int = 0,
    services: int = 3,
    state: Path | None = None,
    reset: bool = False,
    app_id: str | None = None,
    faults: Faults | None = None,
    clock: Callable[[], int] | None = None,
    allow_remote: bool = False,
    purge_timeout: float = 2.0,
) -> Sandbox:
    """Start registry, providers, Auth and Billing on ``host:port`` (0: a free port).

    The app ``app_id`` (default ``org.omiappreg.sandbox.demo.<12 hex of the key id>``) is
    registered with ``master_public_key`` and given at least ``services`` bindings. With
    ``state`` everything persists in that SQLite file (``reset`` deletes it first), so a
    restart keeps apps, bindings, keys, receipts, records and nonces; without it the state
    lives in memory. ``clock`` (integer Unix seconds) drives freshness, nonce expiry and
    timestamps.

    Raises :class:`UsageError` for a non-loopback ``host`` without ``allow_remote``, a bad
    key, AppID or count, an unusable state file, an ``app_id`` on file with another master
    key, or a port that cannot be bound.
    """
    bind_host, url_host, ipv6 = _check_host(host, allow_remote=allow_remote)
    if len(master_public_key) != PUBLIC_KEY_BYTES:
        raise UsageError(f"a master public key is {PUBLIC_KEY_BYTES} bytes")
    if not 0 <= services <= MAX_SERVICES:
        raise UsageError(f"--services must be between 0 and {MAX_SERVICES}")
    if not 0 <= port <= 65535:
        raise UsageError("--port must be between 0 and 65535")
    store = Store(state, reset=reset)
    try:
        context = Context(
            store=store,
            faults=faults if faults is not None else Faults(),
            clock=clock or _now,
            registry_signer=_registry_signer(store),
            purge_timeout=purge_timeout,
        )
        sandbox_app = _ensure_app(context, master_public_key, app_id)
        _ensure_services(context, sandbox_app, services)
        try:
            server = SandboxServer((bind_host, port), context, ipv6=ipv6)
        except OSError as exc:
            hint = (
                "pick another --port (0 picks a free one)"
                if exc.errno == errno.EADDRINUSE
                else None
            )
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}", hint=hint) from exc
    except BaseException:
        store.close()
        raise
    context.base_url = f"http://{url_host}:{server.server_address[1]}"
    return Sandbox(server, context, sandbox_app)


class Sandbox:
    """A running sandbox; a context manager that stops it on exit."""

    def __init__(self, server: SandboxServer, context: Context, app_id: str) -> None:
        self._server = server
        self._context = context
        self._store = context.store
        self.app_id = app_id
        self.registry_public_key: bytes = context.registry_signer.public_key
        self.faults: Faults = context.faults
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},  # stop() waits at most this long
            name="omictl-sandbox",
            daemon=True,
        )
        self._thread.start()

    # ---- URLs
    @property
    def registry_url(self) -> str:
        """The registry base URL (``OMICTL_REGISTRY``); the API is under ``/v1``."""
        return self._context.base_url

    @property
    def port(self) -> int:
        """The bound TCP port."""
        return int(self._server.server_address[1])

    @property
    def auth_url(self) -> str:
        """Auth's base URL; it receives purges at ``/v1/purge``."""
        return self._context.target_url("auth")

    @property
    def billing_url(self) -> str:
        """Billing's base URL; it receives purges at ``/v1/purge``."""
        return self._context.target_url("billing")

    @property
    def state_path(self) -> Path | None:
        """The state file, or ``None`` for in-memory state."""
        return self._store.path

    # ---- services
    @property
    def service_ids(self) -> list[str]:
        """The default app's service ids, in creation order (revoked ones included)."""
        return [row["service_id"] for row in self._bindings(self.app_id)]

    def service(self, service_id: str) -> ServiceInfo:
        """The binding of ``service_id``. Raises :class:`KeyError` if there is none."""
        rows = self._store.rows("SELECT * FROM bindings WHERE service_id=?", (service_id,))
        if not rows:
            raise KeyError(service_id)
        return self._info(rows[0])

    def services(self, app_id: str | None = None) -> list[ServiceInfo]:
        """Every binding of ``app_id`` (default: the sandbox's app)."""
        return [self._info(row) for row in self._bindings(app_id or self.app_id)]

    def add_app(
        self, master_public_key: bytes, *, app_id: str | None = None, services: int = 0
    ) -> str:
        """Register another app (or find it) and give it at least ``services`` bindings.

        Returns its AppID. Raises :class:`UsageError` like :func:`start_sandbox`.
        """
        if len(master_public_key) != PUBLIC_KEY_BYTES:
            raise UsageError(f"a master public key is {PUBLIC_KEY_BYTES} bytes")
        new_app = _ensure_app(self._context, master_public_key, app_id)
        _ensure_services(self._context, new_app, services)
        return new_app

    def add_service(
        self, app_id: str | None = None, *, service_type: str | None = None
    ) -> ServiceInfo:
        """Bind one more service (fresh service key, live tenant) to ``app_id``.

        Raises :class:`UsageError` for an app that is not registered.
        """
        service_id = _add_service(self._context, app_id or self.app_id, service_type)
        return self.service(service_id)

    # ---- observations (read from state)
    def binding_status(self, service_id: str) -> str:
        """``ACTIVE`` or ``REVOKED`` as stored. Raises :class:`KeyError` if unknown."""
        rows = self._store.rows("SELECT status FROM bindings WHERE service_id=?", (service_id,))
        if not rows:
            raise KeyError(service_id)
        return str(rows[0]["status"])

    def tenant(self, service_id: str) -> dict[str, Any]:
        """The provider's view of the tenant: ``terminated_at``, ``data_handling``,
        ``receipt_id`` and ``receipt`` (the original envelope, or ``None``)."""
        rows = self._store.rows("SELECT * FROM tenants WHERE service_id=?", (service_id,))
        if not rows:
            raise KeyError(service_id)
        row = rows[0]
        return {
            "app_id": row["app_id"],
            "terminated_at": row["terminated_at"],
            "data_handling": row["data_handling"],
            "receipt_id": row["receipt_id"],
            "receipt": None if row["receipt"] is None else json.loads(row["receipt"]),
        }

    def stored_receipt(self, service_id: str) -> dict[str, Any] | None:
        """The receipt the registry accepted with the unbind, or ``None``."""
        rows = self._store.rows("SELECT receipt FROM receipts WHERE service_id=?", (service_id,))
        return json.loads(rows[0]["receipt"]) if rows else None

    def revocation_record(self, service_id: str) -> dict[str, Any] | None:
        """The registry's stored revocation record envelope, or ``None``."""
        rows = self._store.rows("SELECT record FROM revocations WHERE service_id=?", (service_id,))
        return json.loads(rows[0]["record"]) if rows else None

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Every table of the state, row by row: tests compare two snapshots to prove a
        rejected request changed nothing."""
        return {
            table: self._store.rows(f"SELECT * FROM {table} ORDER BY rowid")  # noqa: S608
            for table in TABLES  # fixed names, not input
        }

    def delete_count(self, service_id: str) -> int:
        """DELETE requests that reached the provider of ``service_id`` (any outcome)."""
        return self._context.counters.get(self._context.counters.deletes, service_id)

    def unbind_count(self, service_id: str) -> int:
        """Unbind requests for ``service_id`` that reached the registry (any outcome)."""
        return self._context.counters.get(self._context.counters.unbinds, service_id)

    def purges(self) -> list[dict[str, Any]]:
        """Purge envelopes Auth and Billing accepted, oldest first."""
        rows = self._store.rows("SELECT * FROM purges ORDER BY id")
        for row in rows:
            row["envelope"] = json.loads(row["envelope"])
            del row["id"]
        return rows

    def deliveries(self) -> list[dict[str, Any]]:
        """The registry's record of each purge it sent: target, status, detail."""
        rows = self._store.rows(
            "SELECT app_id, service_id, target, status, detail, at FROM deliveries ORDER BY id"
        )
        return rows

    # ---- lifecycle
    def stop(self) -> None:
        """Stop serving, close the socket and the state. Safe to call twice."""
        if self._context.stopped:
            return
        self._context.stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._store.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _bindings(self, app_id: str) -> list[dict[str, Any]]:
        return self._store.rows("SELECT * FROM bindings WHERE app_id=? ORDER BY seq", (app_id,))

    def _info(self, row: dict[str, Any]) -> ServiceInfo:
        return ServiceInfo(
            service_id=row["service_id"],
            app_id=row["app_id"],
            service_type=row["service_type"],
            endpoint_url=self._context.endpoint_url(row["service_id"]),
            public_key=bytes.fromhex(row["public_key"]),
        )


def _check_host(host: str, *, allow_remote: bool) -> tuple[str, str, bool]:
    """(address to bind, host for URLs, is IPv6). Only IP literals (and ``localhost``)."""
    if host == "localhost":
        host = DEFAULT_HOST
    try:
        address = ipaddress.ip_address(host)
    except ValueError as exc:
        raise UsageError(
            f"--host must be an IP address, not {host!r}", hint="use 127.0.0.1"
        ) from exc
    if not address.is_loopback and not allow_remote:
        raise UsageError(
            f"the sandbox only listens on loopback addresses, not {host}",
            hint="it is a test peer with private keys in clear; use 127.0.0.1",
        )
    if address.version == 6:
        return str(address), f"[{address}]", True
    return str(address), str(address), False


def _registry_signer(store: Store) -> Signer:
    """The registry's signing key, created on first start and kept in the state."""
    with store.write() as conn:
        seed = store.meta(conn, "registry_seed")
        if seed is None:
            seed = os.urandom(32).hex()
            conn.execute("INSERT INTO meta VALUES ('registry_seed', ?)", (seed,))
    return Signer(bytes.fromhex(seed), name="sandbox-registry")


def default_app_id(master_public_key: bytes) -> str:
    """The sandbox's AppID for a master key: deterministic, a valid RDAID."""
    return f"{DEFAULT_APP_PREFIX}.{key_id(master_public_key)[:12]}"


def _ensure_app(context: Context, master_public_key: bytes, app_id: str | None) -> str:
    app_id = app_id if app_id is not None else default_app_id(master_public_key)
    parse_app_id(app_id, error=UsageError)
    with context.store.write() as conn:
        on_file = context.store.app_key(conn, app_id)
        if on_file is None:
            conn.execute(
                "INSERT INTO apps (app_id, master_public_key, created_at) VALUES (?, ?, ?)",
                (app_id, master_public_key.hex(), context.clock()),
            )
        elif on_file != master_public_key:
            raise UsageError(
                f"the sandbox state already has app {app_id} with master key "
                f"{key_id(on_file)}, not {key_id(master_public_key)}",
                hint="use another --state file, or start over with --reset",
            )
    return app_id


def _ensure_services(context: Context, app_id: str, count: int) -> None:
    with context.store.read() as conn:
        have = len(context.store.bindings(conn, app_id))
    for _ in range(count - have):
        _add_service(context, app_id, None)


def _add_service(context: Context, app_id: str, service_type: str | None) -> str:
    seed = os.urandom(32)
    public_key = Signer(seed).public_key
    with context.store.write() as conn:
        if context.store.app_key(conn, app_id) is None:
            raise UsageError(f"no app {app_id!r} in this sandbox")
        number = int(conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM bindings").fetchone()[0])
        kind, prefix = SERVICE_KINDS[(number - 1) % len(SERVICE_KINDS)]
        if service_type is not None:
            kind, prefix = service_type, service_type.lower()
        service_id = validate_service_id(f"{prefix}-{number}", error=UsageError)
        try:
            conn.execute(
                "INSERT INTO bindings (seq, service_id, app_id, service_type, public_key) "
                "VALUES (?, ?, ?, ?, ?)",
                (number, service_id, app_id, kind, public_key.hex()),
            )
        except sqlite3.IntegrityError as exc:
            raise UsageError(f"service id {service_id!r} is taken") from exc
        conn.execute("INSERT INTO service_keys VALUES (?, ?)", (service_id, seed.hex()))
        conn.execute("INSERT INTO tenants (service_id, app_id) VALUES (?, ?)", (service_id, app_id))
    return service_id
