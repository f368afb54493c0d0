"""The App Registry peer (PROTOCOL.md section 3): lookups, unbind, revocation records.

Unbind follows the section 3 order exactly: parse, version, app, binding, signature
(master key on file, context ``decommission``), freshness, nonce replay, already revoked,
receipt (service key on file), then revoke and propagate. Every check and the revocation
itself run in one ``BEGIN IMMEDIATE`` transaction, so a rejected request changes nothing
(its nonce included) and two concurrent unbinds of one service yield one revocation.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from omictl.core.envelope import Envelope, key_id, sign_envelope
from omictl.core.messages import (
    BINDING_STATUSES,
    CONTEXT_RECORD,
    CONTEXT_UNBIND,
    NONCE_WINDOW_S,
    SignedRequest,
    verify_receipt,
)
from omictl.errors import OmictlError
from omictl.sandbox import purge
from omictl.sandbox.context import PURGE_TARGETS, Context, parse_request_body
from omictl.sandbox.problems import (
    Reply,
    SandboxProblem,
    dump,
    unavailable,
    verify_for,
)
from omictl.sandbox.store import BindingRow

REGISTRY_NAME = "omictl sandbox registry"
RECEIVER = "registry"


def check_unavailable(ctx: Context, service_id: str | None) -> None:
    """Raise ``service_unavailable`` when the registry ``status_503`` fault fires."""
    if ctx.faults.take("registry", "status_503", service_id):
        raise unavailable("registry unavailable (injected fault)")


def registry_info(ctx: Context) -> Reply:
    """``GET /v1/registry``: the registry's name and signing key."""
    check_unavailable(ctx, None)
    return Reply.json(
        {
            "name": REGISTRY_NAME,
            "public_key": ctx.registry_signer.public_key.hex(),
            "version": "1.0",
        }
    )


def get_app(ctx: Context, app_id: str) -> Reply:
    """``GET /v1/apps/{app_id}``; ``unknown_app`` (404) if not registered."""
    check_unavailable(ctx, None)
    with ctx.store.read() as conn:
        row = conn.execute("SELECT * FROM apps WHERE app_id=?", (app_id,)).fetchone()
    if row is None:
        raise SandboxProblem("unknown_app", f"no app {app_id!r} in this registry")
    return Reply.json(
        {"app_id": app_id, "master_public_key": row["master_public_key"], "status": row["status"]}
    )


def list_services(ctx: Context, app_id: str, status: str | None) -> Reply:
    """``GET /v1/apps/{app_id}/services[?status=ACTIVE|REVOKED]``.

    Raises ``unknown_app`` (404), or ``malformed_request`` (400) for another status filter.
    """
    check_unavailable(ctx, None)
    if status is not None and status not in BINDING_STATUSES:
        raise SandboxProblem(
            "malformed_request", f"status filter must be ACTIVE or REVOKED, not {status!r}"
        )
    with ctx.store.read() as conn:
        if ctx.store.app_key(conn, app_id) is None:
            raise SandboxProblem("unknown_app", f"no app {app_id!r} in this registry")
        rows = ctx.store.bindings(conn, app_id)
    bindings = [binding_json(ctx, row) for row in rows]
    if status is not None:
        bindings = [b for b in bindings if b["status"] == status]
    return Reply.json({"app_id": app_id, "services": bindings})


def get_binding(ctx: Context, app_id: str, service_id: str) -> Reply:
    """``GET /v1/apps/{app_id}/services/{service_id}``; ``unknown_app``/``unknown_service``."""
    check_unavailable(ctx, service_id)
    with ctx.store.read() as conn:
        _, row = _lookup(ctx, conn, app_id, service_id)
    return Reply.json(binding_json(ctx, row))


def binding_json(ctx: Context, row: BindingRow) -> dict[str, Any]:
    """The wire form of a binding, with the ``revoked_before_unbind`` fault applied."""
    status, revoked_at = row.status, row.revoked_at
    if status == "ACTIVE" and ctx.faults.take("registry", "revoked_before_unbind", row.service_id):
        status, revoked_at = "REVOKED", ctx.clock()
    return {
        "app_id": row.app_id,
        "service_id": row.service_id,
        "service_type": row.service_type,
        "endpoint_url": ctx.endpoint_url(row.service_id),
        "public_key": row.public_key.hex(),
        "status": status,
        "revoked_at": revoked_at,
    }


def unbind(
    ctx: Context, app_id: str, service_id: str, body: bytes, content_type: str | None
) -> Reply:
    """``POST /v1/apps/{app_id}/services/{service_id}/unbind``: verify, revoke, propagate.

    Answers 200 with the registry-signed revocation record. Raises :class:`SandboxProblem`
    with the PROTOCOL.md section 5 code of the first failed check; ``already_revoked``
    carries the existing record in its ``record`` member.
    """
    check_unavailable(ctx, service_id)
    for mode in ("down", "unbind_503"):
        if ctx.faults.take("registry", mode, service_id):
            raise unavailable(f"registry unbind unavailable ({mode})")
    envelope = parse_request_body(body, content_type, what="unbind request")
    now = ctx.clock()
    with ctx.store.write() as conn:  # any problem raised below rolls all of it back
        master, binding = _lookup(ctx, conn, app_id, service_id)
        request = verify_for(
            envelope,
            master=master,
            context=CONTEXT_UNBIND,
            what="unbind request",
            now=now,
            app_id=app_id,
            service_id=service_id,
        )
        if not ctx.store.remember_nonce(
            conn,
            receiver=RECEIVER,
            signer=master,
            nonce=request.nonce,
            now=now,
            window=NONCE_WINDOW_S,
        ):
            raise SandboxProblem(
                "replayed_nonce",
                f"nonce {request.nonce!r} from key {key_id(master)} was already accepted",
            )
        if binding.status == "REVOKED":
            raise SandboxProblem(
                "already_revoked",
                f"{service_id} was revoked at {binding.revoked_at}",
                record=_stored_record(conn, service_id),
            )
        receipt_id, receipt = _check_receipt(request, binding)
        conn.execute(
            "UPDATE bindings SET status='REVOKED', revoked_at=? WHERE service_id=?",
            (now, service_id),
        )
        if receipt is not None:
            conn.execute(
                "INSERT INTO receipts VALUES (?, ?, ?, ?)",
                (service_id, app_id, receipt_id, dump(receipt.to_json()).decode("utf-8")),
            )
        pending = [{"target": t, "status": "pending"} for t in PURGE_TARGETS]
        record = _sign_record(ctx, app_id, service_id, now, receipt_id, pending)
        conn.execute(
            "INSERT INTO revocations VALUES (?, ?, ?, ?, ?)",
            (service_id, app_id, now, receipt_id, dump(record.to_json()).decode("utf-8")),
        )
    # Propagate outside the transaction: the receivers write to the same state.
    propagation = purge.propagate(ctx, app_id=app_id, service_id=service_id, binding=binding)
    record = _sign_record(ctx, app_id, service_id, now, receipt_id, propagation)
    with ctx.store.write() as conn:
        conn.executemany(
            "INSERT INTO deliveries (app_id, service_id, target, status, detail, at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (app_id, service_id, p["target"], p["status"], p.get("detail"), ctx.clock())
                for p in propagation
            ],
        )
        conn.execute(
            "UPDATE revocations SET record=? WHERE service_id=?",
            (dump(record.to_json()).decode("utf-8"), service_id),
        )
    return Reply.json(_faulty_record(ctx, record, service_id).to_json())


def _lookup(
    ctx: Context, conn: sqlite3.Connection, app_id: str, service_id: str
) -> tuple[bytes, BindingRow]:
    """The app's master key and the binding; ``unknown_app`` / ``unknown_service``."""
    master = ctx.store.app_key(conn, app_id)
    if master is None:
        raise SandboxProblem("unknown_app", f"no app {app_id!r} in this registry")
    row = ctx.store.binding(conn, service_id)
    if row is None or row.app_id != app_id:
        raise SandboxProblem("unknown_service", f"app {app_id!r} has no service {service_id!r}")
    return master, row


def _check_receipt(
    request: SignedRequest, binding: BindingRow
) -> tuple[str | None, Envelope | None]:
    raw = request.envelope.data.get("provider_receipt")
    if raw is None:
        return None, None
    try:
        receipt = verify_receipt(
            raw,
            service_public_key=binding.public_key,
            app_id=binding.app_id,
            service_id=binding.service_id,
        )
    except OmictlError as exc:
        raise SandboxProblem("invalid_receipt", exc.message) from exc
    return receipt.receipt_id, receipt.envelope


def _sign_record(
    ctx: Context,
    app_id: str,
    service_id: str,
    revoked_at: int,
    receipt_id: str | None,
    propagation: list[dict[str, Any]],
) -> Envelope:
    return sign_envelope(
        {
            "app_id": app_id,
            "service_id": service_id,
            "status": "REVOKED",
            "revoked_at": revoked_at,
            "receipt_id": receipt_id,
            "context": CONTEXT_RECORD,
            "propagation": propagation,
        },
        ctx.registry_signer,
    )


def _stored_record(conn: sqlite3.Connection, service_id: str) -> Any:
    row = conn.execute(
        "SELECT record FROM revocations WHERE service_id=?", (service_id,)
    ).fetchone()
    return None if row is None else json.loads(row["record"])


def _faulty_record(ctx: Context, record: Envelope, service_id: str) -> Envelope:
    """The record as answered: the stored one, unless a record fault is armed."""
    data = dict(record.data)
    changed = False
    if ctx.faults.take("registry", "record_for_other_service", service_id):
        data["service_id"] = f"{service_id}-other"
        changed = True
    if ctx.faults.take("registry", "unknown_purge_targets", service_id):
        data["propagation"] = [*data["propagation"], {"target": "dns", "status": "delivered"}]
        changed = True
    return sign_envelope(data, ctx.registry_signer) if changed else record
