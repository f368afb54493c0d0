"""The Domain Service peer (PROTOCOL.md section 4): ``DELETE {endpoint_url}`` -> signed receipt.

Each service id is one provider with one tenant (the app it is bound to). Checks, in order:
parse and version; tenant lookup (``unknown_service`` 404 when the endpoint has no tenant
of ``data.app_id``); signature against the app's master key on file in the registry state,
with context ``permanent_termination`` (``invalid_signature``); ``data.service_id`` must
name this endpoint's service (else ``invalid_signature``: a signature over another
service's termination authorizes nothing here); shape and freshness; ``data_handling``
(``malformed_request``); nonce replay. Then the tenant is terminated once: the receipt is
stored as sent, and every later valid DELETE answers those same bytes.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from typing import Any

from omictl.core.envelope import Signer, key_id, sign_envelope
from omictl.core.messages import (
    CONTEXT_TERMINATION,
    DATA_HANDLING,
    NONCE_WINDOW_S,
)
from omictl.sandbox.context import MAX_BODY, Context, parse_request_body
from omictl.sandbox.problems import (
    Reply,
    SandboxProblem,
    dump,
    unavailable,
    verify_for,
)

RECEIVER_PREFIX = "provider:"


def delete(ctx: Context, service_id: str, body: bytes, content_type: str | None) -> Reply:
    """Terminate the tenant of ``service_id`` and answer the signed termination receipt.

    Provider faults (see :mod:`omictl.sandbox.faults`) are applied here. Raises
    :class:`SandboxProblem` with the PROTOCOL.md section 5 code of the first failed check;
    nothing is changed then.
    """
    early = _early_fault(ctx, service_id)
    if early is not None:
        return early
    envelope = parse_request_body(body, content_type, what="termination request")
    app_id = envelope.data.get("app_id")
    if not isinstance(app_id, str):
        raise SandboxProblem("malformed_request", "termination request needs a string app_id")
    now = ctx.clock()
    with ctx.store.write() as conn:
        tenant = conn.execute("SELECT * FROM tenants WHERE service_id=?", (service_id,)).fetchone()
        if tenant is None or tenant["app_id"] != app_id:
            raise SandboxProblem(
                "unknown_service", f"service {service_id!r} has no tenant for app {app_id!r}"
            )
        master = ctx.store.app_key(conn, app_id)
        if master is None:  # pragma: no cover - a tenant's app is always on file
            raise SandboxProblem("unknown_service", f"app {app_id!r} is not registered")
        request = verify_for(
            envelope,
            master=master,
            context=CONTEXT_TERMINATION,
            what="termination request",
            now=now,
            app_id=app_id,
            service_id=service_id,
        )
        handling = envelope.data.get("data_handling", "wipe")
        if handling not in DATA_HANDLING:
            raise SandboxProblem(
                "malformed_request",
                f"data_handling must be 'wipe' or 'retain', not {handling!r}",
            )
        if not ctx.store.remember_nonce(
            conn,
            receiver=RECEIVER_PREFIX + service_id,
            signer=master,
            nonce=request.nonce,
            now=now,
            window=NONCE_WINDOW_S,
        ):
            raise SandboxProblem(
                "replayed_nonce",
                f"nonce {request.nonce!r} from key {key_id(master)} was already accepted",
            )
        if tenant["receipt"] is not None:
            stored: str = tenant["receipt"]
        else:
            receipt = sign_envelope(
                {
                    "app_id": app_id,
                    "service_id": service_id,
                    "status": "success",
                    "message": "Instance purged",
                    "receipt_id": "RCPT-" + secrets.token_hex(6).upper(),
                    "terminated_at": now,
                    "data_handling": handling,
                },
                _service_signer(conn, service_id),
            )
            stored = dump(receipt.to_json()).decode("utf-8")
            conn.execute(
                "UPDATE tenants SET terminated_at=?, data_handling=?, receipt_id=?, receipt=? "
                "WHERE service_id=?",
                (now, handling, receipt.data["receipt_id"], stored, service_id),
            )
    return _late_fault(ctx, service_id, stored)


def _service_signer(conn: sqlite3.Connection, service_id: str) -> Signer:
    row = conn.execute("SELECT seed FROM service_keys WHERE service_id=?", (service_id,)).fetchone()
    return Signer(bytes.fromhex(row["seed"]), name=service_id)


def _early_fault(ctx: Context, service_id: str) -> Reply | None:
    """Faults that answer before anything is done (or delay the normal answer)."""
    faults = ctx.faults
    if faults.take("provider", "unavailable", service_id):
        return Reply(drop=True)
    if faults.take("provider", "status_503", service_id):
        return Reply.problem(unavailable("provider unavailable (injected fault)"))
    if faults.take("provider", "redirect", service_id):
        return Reply(
            status=302,
            body=b"",
            headers={"Location": f"{ctx.base_url}/elsewhere/{service_id}"},
        )
    slow = faults.take("provider", "slow", service_id)
    if slow is not None:
        time.sleep(slow.seconds)
    if faults.take("provider", "non_json", service_id):
        return Reply(
            body=b"<html><body>Service temporarily moved</body></html>",
            content_type="text/html; charset=utf-8",
        )
    if faults.take("provider", "oversize", service_id):
        pad = "x" * (MAX_BODY + 1024)
        return Reply.json({"status": "success", "padding": pad})
    return None


def _late_fault(ctx: Context, service_id: str, stored: str) -> Reply:
    """Faults that answer after the tenant was terminated; else the stored receipt."""
    faults = ctx.faults
    if faults.take("provider", "lost_receipt", service_id):
        return Reply(drop=True)
    original: dict[str, Any] = json.loads(stored)["data"]
    if faults.take("provider", "forged_receipt", service_id):
        forged = sign_envelope(original, Signer(os.urandom(32), name="forger"))
        return Reply.json(forged.to_json())
    if faults.take("provider", "wrong_service_receipt", service_id):
        with ctx.store.read() as conn:
            row = conn.execute(
                "SELECT service_id FROM bindings WHERE app_id=? AND service_id<>? ORDER BY seq",
                (original["app_id"], service_id),
            ).fetchone()
        data = {**original, "service_id": row[0] if row else f"{service_id}-other"}
    elif faults.take("provider", "failed_status_receipt", service_id):
        data = {**original, "status": "failure", "message": "Instance not purged"}
    else:
        return Reply.raw(stored.encode("utf-8"))
    with ctx.store.read() as conn:
        signer = _service_signer(conn, service_id)
    return Reply.json(sign_envelope(data, signer).to_json())
