"""``omictl config``: profiles in config.toml."""

from __future__ import annotations

from typing import Annotated

import typer

from omictl.cli.app import Invocation, get_invocation
from omictl.config import (
    PROFILE_KEYS,
    edit_config,
    key_ref_problem,
    missing_profile,
    parse_setting,
    profile_exists,
)
from omictl.errors import UsageError

app = typer.Typer(
    help="Show and change settings. Settings resolve: flag > environment > profile in "
    "config.toml > default. Keys: " + ", ".join(PROFILE_KEYS) + ".",
    no_args_is_help=True,
)


def _check_key(key: str) -> None:
    if key not in PROFILE_KEYS:
        raise UsageError(f"unknown setting {key!r}", hint=f"settings: {', '.join(PROFILE_KEYS)}")


def _existing(inv: Invocation) -> Invocation:
    """``inv``, whose profile must exist to be read (set makes one; a typo in --profile
    must not show the defaults as if they were that profile's)."""
    if not profile_exists(inv.settings):
        raise missing_profile(inv.settings.profile, inv.settings.paths.config_file)
    return inv


def _warn_invalid(inv: Invocation) -> None:
    """Say which settings other commands will refuse, and how to repair each."""
    for key, (message, repair) in inv.settings.invalid.items():
        refused = (
            "commands that use the default key refuse it"
            if key == "key"
            else "other commands refuse to run until it is fixed"
        )
        inv.out.warn(f"{message}: {refused} ({repair})")


@app.command("show")
def show_command(ctx: typer.Context) -> None:
    """Every setting in effect for this profile, and where it comes from."""
    inv = _existing(get_invocation(ctx))
    s = inv.settings
    values = {
        "registry": s.registry,
        "key": s.key,
        "timeout": s.timeout,
        "concurrency": s.concurrency,
        "output": s.output,
    }
    doc = {
        "profile": s.profile,
        "config_file": str(s.paths.config_file),
        "home": {
            "keys": str(s.paths.keys_dir),
            "state": str(s.paths.state_dir),
            "receipts": str(s.paths.receipts_dir),
            "pins": str(s.paths.pins_file),
        },
        "settings": {
            k: {"value": v, "source": s.sources.get(k, "default")} for k, v in values.items()
        },
    }
    if s.invalid:  # the next layer applies to each; other commands refuse to run
        doc["invalid"] = {k: {"error": m, "hint": h} for k, (m, h) in s.invalid.items()}
    _warn_invalid(inv)
    if inv.out.json_mode:
        inv.out.emit_json(doc)
        return
    inv.out.line(f"profile  {s.profile}  ({s.paths.config_file})")
    for key, entry in doc["settings"].items():  # type: ignore[attr-defined]
        shown = "-" if entry["value"] is None else entry["value"]
        inv.out.line(f"{key:<12} {shown!s:<40} ({entry['source']})")


@app.command("get")
def get_command(
    ctx: typer.Context, key: Annotated[str, typer.Argument(metavar="KEY", help="Setting.")]
) -> None:
    """Print one setting's effective value (empty line and exit 0 when unset)."""
    _check_key(key)
    inv = _existing(get_invocation(ctx))
    if key in inv.settings.invalid:
        message, repair = inv.settings.invalid[key]
        if key != "key" or key_ref_problem(inv.settings) != (message, repair):
            raise UsageError(message, hint=repair)  # the default applies: it would mislead
        _warn_invalid(inv)  # a key reference of a bad form is still what is set
    value = getattr(inv.settings, key)
    source = inv.settings.sources.get(key, "default")
    inv.out.result(
        {"key": key, "value": value, "source": source}, "" if value is None else str(value)
    )


@app.command("set")
def set_command(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="KEY", help="Setting.")],
    value: Annotated[str, typer.Argument(metavar="VALUE", help="Value.")],
) -> None:
    """Set a setting in the current profile (--profile), creating the profile if needed."""
    _check_key(key)
    inv = get_invocation(ctx)
    path = inv.settings.paths.config_file
    parsed = parse_setting(key, value, source="config set", check_ref=True)
    if key == "registry":
        from omictl.transport.http import check_url

        check_url(parsed, insecure=True, what="registry")
        try:  # stored as asked, but said now rather than at every later run
            check_url(parsed, what="registry")
        except UsageError:
            inv.out.warn(
                f"{parsed} is plain http:// to a host that is not loopback: every command "
                "that uses it will need --insecure (signed requests sent unencrypted)"
            )
    edit_config(path, inv.settings.profile, key, parsed)
    inv.out.result(
        {"profile": inv.settings.profile, "key": key, "value": parsed},
        f"{inv.settings.profile}.{key} = {parsed}",
    )


@app.command("unset")
def unset_command(
    ctx: typer.Context, key: Annotated[str, typer.Argument(metavar="KEY", help="Setting.")]
) -> None:
    """Remove a setting from the current profile."""
    inv = get_invocation(ctx)
    if key not in inv.settings.invalid:  # an unknown name in the file may be removed
        _check_key(key)
    path = inv.settings.paths.config_file
    removed = edit_config(path, inv.settings.profile, key, None)
    inv.out.result(
        {"profile": inv.settings.profile, "key": key, "removed": removed},
        f"{inv.settings.profile}.{key} " + ("removed" if removed else "was not set"),
    )
