"""``omictl registry``: inspect a registry and manage its pinned key (PROTOCOL.md section 3).

``show`` and ``pin`` (without ``--public-key``) contact the registry; ``pin --public-key``
and ``forget`` only touch the local pin file. httpx is imported inside the commands that
need it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from omictl.cli.app import Invocation, get_invocation
from omictl.config import parse_setting
from omictl.errors import UsageError

if TYPE_CHECKING:
    from omictl.transport.pins import PinChange, PinStore
    from omictl.transport.registry import RegistryClient, RegistryStatus

app = typer.Typer(
    help="Inspect App Registries and manage their pinned signing keys (like known_hosts).",
    no_args_is_help=True,
)

UrlArg = Annotated[
    str | None,
    typer.Argument(
        metavar="[URL]",
        help="Registry base URL, e.g. https://omiappreg.org [default: --registry].",
        show_default=False,
    ),
]
InsecureOpt = Annotated[
    bool,
    typer.Option(
        "--insecure", help="Allow plain http:// to a non-loopback registry (TLS is never off)."
    ),
]
TimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        help="Connect/read timeout in seconds [default: 10; env: OMICTL_TIMEOUT].",
        show_default=False,
    ),
]


def _url(inv: Invocation, url: str | None) -> str:
    chosen = url or inv.settings.registry
    if not chosen:
        raise UsageError(
            "no registry URL given",
            hint="pass it: omictl registry show https://omiappreg.org (or set --registry)",
        )
    return chosen


def _pins(inv: Invocation) -> PinStore:
    from omictl.transport.pins import PinStore

    return PinStore(inv.settings.paths.pins_file)


@contextlib.contextmanager
def _registry(
    inv: Invocation, url: str, *, insecure: bool, timeout: float | None
) -> Iterator[RegistryClient]:
    """A registry client (pins not used: the commands compare and pin themselves)."""
    from omictl.transport.http import RetryPolicy, make_client
    from omictl.transport.registry import RegistryClient
    from omictl.transport.urls import check_url, plain_http_warning

    seconds = (
        inv.settings.timeout
        if timeout is None
        else parse_setting("timeout", timeout, source="--timeout")
    )
    normal = check_url(url, insecure=insecure, what="registry URL")
    warning = plain_http_warning(normal, what="registry")
    if warning is not None:
        inv.out.warn(warning)
    client = make_client(timeout=seconds, insecure=insecure)
    try:
        yield RegistryClient(
            normal, client=client, policy=RetryPolicy(), pins=None, insecure=insecure
        )
    finally:
        client.close()


def _status_text(status: RegistryStatus) -> str:
    from omictl.core.envelope import key_id
    from omictl.transport.http import printable

    pinned = status.pinned or {}
    if status.pin_state == "pinned":
        pin = f"pinned (since {pinned.get('pinned_at')})"
    elif status.pin_state == "not_pinned":
        pin = "not pinned (the first decommission will pin this key)"
    else:
        pin = (
            f"MISMATCH: key {pinned.get('key_id')} is pinned (since {pinned.get('pinned_at')}), "
            "the registry presents another"
        )
    rows = [
        ("registry", status.url),
        ("name", printable(status.info.name)),
        ("key id", key_id(status.info.public_key)),
        ("public key", status.info.public_key.hex()),
        ("pin", pin),
    ]
    return "\n".join(f"{label + ':':<12} {value}" for label, value in rows)


@app.command("show")
def show_cmd(
    ctx: typer.Context,
    url: UrlArg = None,
    insecure: InsecureOpt = False,
    timeout: TimeoutOpt = None,
) -> None:
    """Show a registry's name and signing key, and whether that key is pinned here.

    A MISMATCH is reported (and warned about) but exits 0: show only looks.
    """
    from omictl.transport.pins import repin_hint
    from omictl.transport.registry import registry_status

    inv = get_invocation(ctx)
    pins = _pins(inv)
    with _registry(inv, _url(inv, url), insecure=insecure, timeout=timeout) as registry:
        status = registry_status(registry, pins)
    if status.pin_state == "mismatch":
        inv.out.warn(
            f"the key {status.url} presents is NOT the pinned one; it may be impersonated. "
            + repin_hint(status.url)
        )
    inv.out.result(status.to_json(), _status_text(status))


def _pin_text(change: PinChange) -> str:
    from omictl.core.envelope import key_id

    new = key_id(change.new_key)
    if change.settled:
        before = ", ".join(key_id(k) for k in change.settled)
        return f"settled the conflicting pins of {change.url} (keys {before}): pinned key {new}"
    if change.old_key is None:
        return f"pinned {change.url} to key {new}"
    if not change.changed:
        return f"{change.url} is already pinned to key {new}"
    return f"re-pinned {change.url}: key {key_id(change.old_key)} -> {new}"


@app.command("pin")
def pin_cmd(
    ctx: typer.Context,
    url: UrlArg = None,
    public_key: Annotated[
        str | None,
        typer.Option(
            "--public-key",
            metavar="HEX",
            help="Pin this key (64 hex chars), obtained out of band; replaces an older pin. "
            "Without it, pin the key the registry presents now (trust on first use).",
            show_default=False,
        ),
    ] = None,
    insecure: InsecureOpt = False,
    timeout: TimeoutOpt = None,
) -> None:
    """Pin a registry's signing key: records signed by another key are then refused."""
    from omictl.transport.pins import pin_explicit

    inv = get_invocation(ctx)
    pins = _pins(inv)
    target = _url(inv, url)
    if public_key is not None:
        change = pin_explicit(pins, target, public_key)
    else:
        from omictl.transport.registry import pin_presented

        with _registry(inv, target, insecure=insecure, timeout=timeout) as registry:
            change = pin_presented(registry, pins)
        if change.changed:
            inv.out.warn(
                "trust on first use: this is the key the registry presented just now; "
                "compare its key id with one obtained out of band"
            )
    inv.out.result(change.to_json(), _pin_text(change))


@app.command("forget")
def forget_cmd(ctx: typer.Context, url: UrlArg = None) -> None:
    """Remove a registry's pin; the next contact pins what it presents (exit 0 if none)."""
    from omictl.transport.urls import normalize_url

    inv = get_invocation(ctx)
    target = normalize_url(_url(inv, url), what="registry URL")
    removed = _pins(inv).forget(target)
    text = f"forgot the pin for {target}" if removed else f"no pin for {target}"
    inv.out.result({"url": target, "forgotten": removed}, text)
