"""The purge signal (PROTOCOL.md section 3, "Propagation"): sender and the Auth/Billing receivers.

The registry signs one ``SERVICE_REVOKED`` envelope (context ``purge``) per core service and
POSTs it over real HTTP to ``{target}/v1/purge`` with a short timeout. The registry records
each outcome (``deliveries``); a failure never undoes the revocation. The receivers verify the
envelope under the registry key, check context, freshness and nonce replay, and record it
(``purges``).
"""

from __future__ import annotations

import http.client
import secrets
from typing import Any
from urllib.parse import urlsplit

from omictl.core.envelope import Envelope, key_id, parse_hex, sign_envelope
from omictl.core.messages import CONTEXT_PURGE, NONCE_WINDOW_S, RequestError, verify_request
from omictl.errors import OmictlError
from omictl.sandbox.context import PURGE_TARGETS, Context, parse_request_body
from omictl.sandbox.problems import Reply, SandboxProblem, dump, problem_from, unavailable
from omictl.sandbox.store import BindingRow

EVENT_TYPE = "SERVICE_REVOKED"
_MAX_ANSWER = 64 * 1024


def propagate(
    ctx: Context, *, app_id: str, service_id: str, binding: BindingRow
) -> list[dict[str, Any]]:
    """Send the purge to every core service, one freshly signed envelope each.

    Returns the propagation list of the revocation record: one
    ``{"target", "status": "delivered"|"failed"[, "detail"]}`` per target. Never raises.
    """
    results: list[dict[str, Any]] = []
    for target in PURGE_TARGETS:
        envelope = sign_envelope(
            {
                "event_type": EVENT_TYPE,
                "app_id": app_id,
                "service_id": service_id,
                "service_public_key": binding.public_key.hex(),
                "timestamp": ctx.clock(),
                "nonce": secrets.token_urlsafe(16),
                "context": CONTEXT_PURGE,
            },
            ctx.registry_signer,
        )
        detail = _post(ctx.target_url(target) + "/v1/purge", envelope, timeout=ctx.purge_timeout)
        entry: dict[str, Any] = {"target": target, "status": "failed" if detail else "delivered"}
        if detail:
            entry["detail"] = detail
        results.append(entry)
    return results


def _post(url: str, envelope: Envelope, *, timeout: float) -> str | None:
    """POST ``envelope``; ``None`` on a 2xx answer, else a short reason."""
    parts = urlsplit(url)
    # http.client, not urllib: no proxies from the environment, no redirects followed.
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        conn.request("POST", parts.path, body=dump(envelope.to_json()), headers=_JSON_HEADERS)
        answer = conn.getresponse()
        answer.read(_MAX_ANSWER)
    except TimeoutError:
        return "timeout"
    except (OSError, http.client.HTTPException) as exc:
        return f"connection error: {type(exc).__name__}"
    finally:
        conn.close()
    if 200 <= answer.status < 300:
        return None
    return f"HTTP {answer.status}"


_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


def receive(ctx: Context, target: str, body: bytes, content_type: str | None) -> Reply:
    """``POST /{auth|billing}/v1/purge``: verify the registry's purge envelope and record it.

    Raises :class:`SandboxProblem`: ``malformed_request``/``unsupported_version`` for the
    shape, ``invalid_signature`` (not the registry key, or not context ``purge``),
    ``stale_request``, ``replayed_nonce``; ``service_unavailable`` under the
    ``purge_target_down`` fault (billing only).
    """
    envelope = parse_request_body(body, content_type, what="purge event")
    service = envelope.data.get("service_id")
    if target == "billing" and ctx.faults.take(
        "registry", "purge_target_down", service if isinstance(service, str) else None
    ):
        raise unavailable("billing is down (injected fault)")
    registry_key = ctx.registry_signer.public_key
    now = ctx.clock()
    try:
        request = verify_request(
            envelope.to_json(),
            public_key=registry_key,
            context=CONTEXT_PURGE,
            now=now,
            what="purge event",
        )
        if envelope.data.get("event_type") != EVENT_TYPE:
            raise RequestError(f"purge event_type must be {EVENT_TYPE!r}")
        parse_hex(
            envelope.data.get("service_public_key"),
            field="purge event service_public_key",
            length=32,
            error=RequestError,
        )
    except OmictlError as exc:
        raise problem_from(exc) from exc
    with ctx.store.write() as conn:
        if not ctx.store.remember_nonce(
            conn,
            receiver=target,
            signer=registry_key,
            nonce=request.nonce,
            now=now,
            window=NONCE_WINDOW_S,
        ):
            raise SandboxProblem(
                "replayed_nonce",
                f"nonce {request.nonce!r} from key {key_id(registry_key)} was already accepted",
            )
        conn.execute(
            "INSERT INTO purges (target, app_id, service_id, service_public_key, nonce, "
            "received_at, envelope) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                target,
                request.app_id,
                request.service_id,
                str(envelope.data["service_public_key"]).lower(),
                request.nonce,
                now,
                dump(envelope.to_json()).decode("utf-8"),
            ),
        )
    return Reply.json(
        {
            "status": "purged",
            "target": target,
            "app_id": request.app_id,
            "service_id": request.service_id,
        }
    )
