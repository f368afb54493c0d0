"""``omictl sandbox``: serve the reference registry, providers, Auth and Billing on loopback."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from omictl.cli.app import get_invocation
from omictl.cli.common import default_key_ref, stop_on_signals
from omictl.cli.output import Output

if TYPE_CHECKING:
    from omictl.sandbox import Sandbox

DEFAULT_PORT = 8470


def sandbox(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option(
            "--host", metavar="HOST", help="Loopback address to listen on (nothing else)."
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", metavar="PORT", help="TCP port; 0 picks a free one.")
    ] = (DEFAULT_PORT),
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            metavar="KEY",
            help="Key reference whose public key is the app's master key "
            "(NAME, file:PATH, env:VAR) [default: the settings' key].",
            show_default=False,
        ),
    ] = None,
    services: Annotated[int, typer.Option("--services", metavar="N", help="Services to bind.")] = 3,
    state: Annotated[
        Path | None,
        typer.Option(
            "--state",
            metavar="FILE",
            help="SQLite file that keeps the sandbox across restarts (default: in memory).",
            show_default=False,
        ),
    ] = None,
    reset: Annotated[bool, typer.Option("--reset", help="Delete --state first.")] = False,
) -> None:
    """Serve a strict reference App Registry with Domain Services, Auth and Billing.

    Registers an app whose master key is KEY's public part, binds SERVICES services, prints
    the registry URL, the AppID and the endpoints, then serves until Ctrl-C.
    """
    from omictl.errors import UsageError
    from omictl.keyref import load_public_key
    from omictl.sandbox import start_sandbox

    inv = get_invocation(ctx)
    if reset and state is None:
        raise UsageError("--reset needs --state FILE (without it the state is in memory)")
    master = load_public_key(key or default_key_ref(inv), keys_dir=inv.settings.paths.keys_dir)
    running = start_sandbox(
        master_public_key=master,
        host=host,
        port=port,
        services=services,
        state=state,
        reset=reset,
    )
    with running, stop_on_signals() as stop:
        _log_requests_to_stderr()
        _announce(inv.out, running)  # after the handlers: a signal right after it is clean
        while not stop.wait(0.5):
            pass
    inv.out.info("sandbox stopped")


def _announce(out: Output, sb: Sandbox) -> None:
    from omictl.core.envelope import key_id

    export = f"export OMICTL_REGISTRY={sb.registry_url}"
    services = [
        {
            "service_id": info.service_id,
            "service_type": info.service_type,
            "endpoint_url": info.endpoint_url,
            "public_key": info.public_key.hex(),
            "status": sb.binding_status(info.service_id),
        }
        for info in sb.services()
    ]
    if out.json_mode:
        out.emit_json(
            {
                "registry_url": sb.registry_url,
                "registry_public_key": sb.registry_public_key.hex(),
                "registry_key_id": key_id(sb.registry_public_key),
                "app_id": sb.app_id,
                "services": services,
                "auth_url": sb.auth_url,
                "billing_url": sb.billing_url,
                "state": None if sb.state_path is None else str(sb.state_path),
                "export": export,
            }
        )
    else:
        out.line(f"registry  {sb.registry_url}  (key {key_id(sb.registry_public_key)})")
        out.line(f"app_id    {sb.app_id}")
        for s in services:
            out.line(
                f"  {s['service_id']:<22} {s['service_type']:<10} {s['status']:<8} "
                f"{s['endpoint_url']}"
            )
        out.line(f"auth      {sb.auth_url}")
        out.line(f"billing   {sb.billing_url}")
        out.line(export)
    where = "in memory" if sb.state_path is None else f"in {sb.state_path}"
    out.info(f"sandbox serving (state {where}); Ctrl-C to stop")


def _log_requests_to_stderr() -> None:
    """One line per request on stderr ("talk"), so a user sees the flow as it happens."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("  %(message)s"))
    logger = logging.getLogger("omictl.sandbox")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
