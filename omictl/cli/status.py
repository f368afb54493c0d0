"""``omictl status``: bindings as the registry sees them."""

from __future__ import annotations

from typing import Annotated

import typer

from omictl.cli.app import get_invocation
from omictl.cli.render import when


def status_command(
    ctx: typer.Context,
    app_id: Annotated[str, typer.Argument(help="The AppID.", metavar="APP_ID")],
    service_id: Annotated[
        str | None,
        typer.Argument(
            help="One service (default: all).", show_default=False, metavar="SERVICE_ID"
        ),
    ] = None,
    active_only: Annotated[
        bool, typer.Option("--active", help="Only ACTIVE bindings (what the swarm sees).")
    ] = False,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Allow plain http:// to non-loopback hosts.")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            help="Connect/read timeout in seconds [default: 10; env: OMICTL_TIMEOUT].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Show an app's service bindings (or one) as the registry sees them."""
    from omictl.core.appid import parse_app_id, validate_service_id
    from omictl.core.envelope import key_id
    from omictl.errors import inert
    from omictl.transport.pins import first_use_note
    from omictl.workflow.session import (
        open_session,
        registry_is_derived,
        registry_url_for_app,
    )

    inv = get_invocation(ctx)
    parse_app_id(app_id)
    if service_id is not None:
        validate_service_id(service_id)
    url = registry_url_for_app(inv.settings, app_id)
    settings = inv.settings
    if timeout is not None:
        from omictl.config import parse_setting

        settings = settings.with_overrides(
            timeout=parse_setting("timeout", timeout, source="--timeout")
        )
    derived = registry_is_derived(settings)
    with open_session(
        settings, registry_url=url, insecure=insecure, derived=derived, warn=inv.out.warn
    ) as session:
        # the bindings are not signed, but the registry's key is checked as for every
        # contact (PROTOCOL.md section 3): a registry that presents another key than the
        # pinned one is refused (exit 5) before its listing is shown as the truth
        registry_key = session.registry.registry_key()
        if session.registry.take_first_use_pin():
            inv.out.warn(first_use_note(url, registry_key))
        if service_id is not None:
            bindings = [session.registry.get_binding(app_id, service_id)]
        else:
            bindings = session.registry.list_services(app_id, active_only=active_only)
    if inv.out.json_mode:
        inv.out.emit_json(
            {
                "app_id": app_id,
                "registry": url,
                "registry_key_id": key_id(registry_key),
                "services": [b.to_json() for b in bindings],
            }
        )
        return
    if not bindings:
        inv.out.info(f"no {'ACTIVE ' if active_only else ''}bindings for {app_id}")
    else:  # a header row, as keys list has (scripts read -o json)
        inv.out.line(f"{'SERVICE':<24} {'STATUS':<8} {'TYPE':<10} ENDPOINT")
    for b in bindings:
        revoked = f" revoked_at={when(b.revoked_at)}" if b.revoked_at else ""
        inv.out.line(
            inert(  # the registry's words, on the user's terminal
                f"{b.service_id:<24} {b.status:<8} {b.service_type or '-':<10} "
                f"{b.endpoint_url}{revoked}"
            )
        )
