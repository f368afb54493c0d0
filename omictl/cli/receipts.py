"""``omictl receipts``: the local archive of evidence bundles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from omictl.cli.app import get_invocation
from omictl.cli.render import when
from omictl.errors import UsageError, inert, json_text

app = typer.Typer(
    help="The local archive of termination receipts and revocation records (evidence "
    "bundles), and offline verification of a bundle.",
    no_args_is_help=True,
)


def _summary(path: Path, bundle: dict[str, Any]) -> dict[str, Any]:
    record = bundle.get("revocation_record") or {}
    data = record.get("data", {}) if isinstance(record, dict) else {}
    receipt = bundle.get("termination_receipt") or {}
    rdata = receipt.get("data", {}) if isinstance(receipt, dict) else {}
    return {
        "bundle_id": bundle.get("bundle_id"),
        "app_id": bundle.get("app_id"),
        "service_id": bundle.get("service_id"),
        "receipt_id": rdata.get("receipt_id") if isinstance(rdata, dict) else None,
        "revoked_at": data.get("revoked_at") if isinstance(data, dict) else None,
        "path": str(path),
    }


@app.command("list")
def list_command(
    ctx: typer.Context,
    app_id: Annotated[
        str | None, typer.Argument(metavar="APP_ID", help="Only this app.", show_default=False)
    ] = None,
) -> None:
    """List archived evidence bundles (oldest first)."""
    from omictl.workflow.archive import Archive

    inv = get_invocation(ctx)
    if app_id is not None:
        from omictl.core.appid import parse_app_id

        parse_app_id(app_id)
    found, damaged = Archive(inv.settings.paths.receipts_dir).scan(app_id)
    rows = [_summary(p, b) for p, b in found]
    for _, why in damaged:  # evidence gone bad is said, not skipped (`why` names the file)
        inv.out.warn(f"skipped: {why}")
    if inv.out.json_mode:
        unreadable = [{"path": str(p), "error": why} for p, why in damaged]
        inv.out.emit_json({"receipts": rows, "unreadable": unreadable})
        return
    if not rows:
        inv.out.info(f"no receipts in {inv.settings.paths.receipts_dir}")
        return
    for row in rows:
        inv.out.line(  # the bundle's words (a provider chose the receipt id): inert
            inert(f"{row['bundle_id']}  {row['app_id']}/{row['service_id']}")
            + f"  revoked_at={when(row['revoked_at'])}"
        )


@app.command("show")
def show_command(
    ctx: typer.Context,
    receipt_id: Annotated[
        str, typer.Argument(metavar="RECEIPT_ID", help="Receipt id or bundle id.")
    ],
) -> None:
    """Print one evidence bundle (JSON) from the archive."""
    from omictl.workflow.archive import Archive

    inv = get_invocation(ctx)
    path, bundle = Archive(inv.settings.paths.receipts_dir).find(receipt_id)
    if inv.out.json_mode:
        inv.out.emit_json(bundle)
    else:
        inv.out.info(f"# {path}")
        inv.out.line(json_text(bundle, indent=2))  # peers' words inside


@app.command("export")
def export_command(
    ctx: typer.Context,
    receipt_id: Annotated[
        str, typer.Argument(metavar="RECEIPT_ID", help="Receipt id or bundle id.")
    ],
    out: Annotated[
        str,  # not a Path: Path("./-") is "-", and only "-" itself means stdout
        typer.Option("--out", metavar="FILE", help="Where to write the bundle; - for stdout."),
    ],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write an evidence bundle to a file for an auditor (omictl receipts verify checks it)."""
    from omictl.fsutil import atomic_write_json, refuse_missing_folder
    from omictl.workflow.archive import Archive

    inv = get_invocation(ctx)
    _, bundle = Archive(inv.settings.paths.receipts_dir).find(receipt_id)
    if out == "-":  # as `keys import NAME -` and `--from -` read stdin
        inv.out.emit_json(bundle)
        return
    path = Path(out)
    refuse_missing_folder(path)  # as keys export: no folder is made, none written over
    if (path.exists() or path.is_symlink()) and not force:
        raise UsageError(f"{out} exists", hint="pass --force to overwrite it")
    atomic_write_json(path, bundle, mode=0o644, error=UsageError)
    inv.out.result({"path": out, "bundle_id": bundle.get("bundle_id")}, out)


@app.command("verify")
def verify_command(
    ctx: typer.Context,
    bundle_file: Annotated[
        Path, typer.Argument(metavar="BUNDLE.json", help="An evidence bundle (JSON).")
    ],
    master_key: Annotated[
        str | None,
        typer.Option(
            "--master-key",
            metavar="HEX",
            help="Require this master public key (hex).",
            show_default=False,
        ),
    ] = None,
    service_key: Annotated[
        str | None,
        typer.Option(
            "--service-key",
            metavar="HEX",
            help="Require this service public key (hex), e.g. from the registry's binding.",
            show_default=False,
        ),
    ] = None,
    registry_key: Annotated[
        str | None,
        typer.Option(
            "--registry-key",
            metavar="HEX",
            help="Require this registry public key (hex).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Verify an evidence bundle offline: every signature and every id.

    Exit 0 when it verifies, 5 when any check fails, 2 when the file is not a bundle.
    """
    from omictl.core.envelope import parse_hex
    from omictl.core.evidence import verify_bundle
    from omictl.errors import ProtocolError
    from omictl.workflow.archive import Archive

    inv = get_invocation(ctx)
    for option, value in (
        ("--master-key", master_key),
        ("--service-key", service_key),
        ("--registry-key", registry_key),
    ):
        if value is not None and not value.strip():  # "$UNSET": never "not given"
            raise UsageError(
                f"{option} is empty",
                hint="pass the public key you trust (64 hex characters), or leave the option "
                "out to take the bundle's own",
            )
    bundle = Archive.load(bundle_file)
    expect_master = (
        parse_hex(master_key, field="--master-key", length=32, error=UsageError, typed=True)
        if master_key is not None
        else None
    )
    expect_service = (
        parse_hex(service_key, field="--service-key", length=32, error=UsageError, typed=True)
        if service_key is not None
        else None
    )
    expect_registry = (
        parse_hex(registry_key, field="--registry-key", length=32, error=UsageError, typed=True)
        if registry_key is not None
        else None
    )
    try:
        report = verify_bundle(
            bundle,
            expect_master_key=expect_master,
            expect_registry_key=expect_registry,
            expect_service_key=expect_service,
        )
    except ProtocolError as exc:
        if exc.code == "protocol_error" and "bundle" in exc.message:
            raise UsageError(exc.message) from exc
        raise
    unpinned = [
        role
        for role, key in (
            ("master", expect_master),
            ("service", expect_service),
            ("registry", expect_registry),
        )
        if key is None and (role != "service" or report.provider_terminated)
    ]
    if inv.out.json_mode:
        # a bundle that brings its own keys verifies against itself: say which were
        # taken from it, so a script can tell "verified" from "verified under keys I trust"
        inv.out.emit_json({**report.to_json(), "keys_from_bundle": unpinned})
        return
    inv.out.success(f"bundle {inert(report.bundle_id)} verifies")
    for check in report.checks:
        inv.out.info(f"  ✓ {check}")
    # the bundle's words (a provider chose the receipt id): inert, so none starts a line
    receipt = inert(str(report.receipt_id)) if report.provider_terminated else "(none)"
    inv.out.line(
        f"VERIFIED {inert(report.app_id)}/{inert(report.service_id)} receipt={receipt} "
        f"revoked_at={when(report.revoked_at)} master={report.master_key_id} "
        f"service={report.service_key_id} registry={report.registry_key_id}"
    )
    if not report.provider_terminated:
        inv.out.warn(
            "no termination receipt: the binding was revoked with --skip-provider; this "
            "bundle does not show that the provider wiped anything"
        )
    if unpinned:
        inv.out.info(
            f"note: the {', '.join(unpinned)} key(s) were taken from the bundle itself; "
            "compare the key ids above with keys you trust, or pass "
            + " ".join(f"--{role}-key" for role in unpinned)
        )
