"""``omictl keys``: the local keystore (CLI.md "Keys").

Each command parses its arguments, calls one function of :mod:`omictl.keystore` or
:mod:`omictl.keyref`, and renders the result. Passphrase prompts and warnings go to
stderr; secrets are never printed and never taken from argv (only ``--passphrase-file``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from omictl.cli.common import ask_consent
from omictl.cli.output import Output, write_data
from omictl.errors import Aborted, KeystoreError, OmictlError, UsageError
from omictl.fsutil import refuse_missing_folder
from omictl.keystore import (
    KIND_GUARDIAN,
    KIND_MASTER,
    KeyFile,
    PassphraseSource,
    change_passphrase,
    check_keys_dir,
    delete_key,
    export_key_bytes,
    generate_key,
    import_key_bytes,
    import_seed,
    list_keys,
    load_key,
    parse_seed_text,
    weak_kdf,
    write_output_file,
)

if TYPE_CHECKING:
    from omictl.cli.app import Invocation

app = typer.Typer(
    help="Manage master and guardian keys in the local encrypted keystore.", no_args_is_help=True
)

#: Payloads and envelopes given to sign/verify are small JSON documents.
MAX_INPUT_BYTES = 1024 * 1024
NEW_PASSPHRASE_ENV = "OMICTL_NEW_PASSPHRASE"  # noqa: S105 - a variable name, not a secret

PassphraseFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        metavar="FILE",
        help="Read the passphrase from FILE (else OMICTL_PASSPHRASE, else a prompt).",
        show_default=False,
        dir_okay=False,
    ),
]
NoPassphraseOpt = Annotated[
    bool,
    typer.Option("--no-passphrase", help="Store the key UNENCRYPTED (not recommended)."),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace an existing key or file.")]


def get_invocation(ctx: typer.Context) -> Invocation:
    """The global options (imported here: ``cli.app`` imports this module)."""
    from omictl.cli.app import get_invocation as _get

    return _get(ctx)


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):
        return False


def _read_input(arg: str, *, what: str) -> bytes:
    """Read FILE, or stdin for ``-``, capped at :data:`MAX_INPUT_BYTES`."""
    try:
        if arg == "-":
            data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
        else:
            with Path(arg).expanduser().open("rb") as handle:
                data = handle.read(MAX_INPUT_BYTES + 1)
    except FileNotFoundError as exc:
        raise UsageError(f"{what} {arg} does not exist") from exc
    except OSError as exc:
        raise UsageError(f"cannot read {what} {arg}: {exc.strerror}") from exc
    if len(data) > MAX_INPUT_BYTES:
        raise UsageError(f"{what} is larger than {MAX_INPUT_BYTES} bytes")
    return data


def _new_key_passphrases(
    no_passphrase: bool, passphrase_file: Path | None
) -> PassphraseSource | None:
    """Where a new key's passphrase comes from; None for --no-passphrase, which a
    --passphrase-file given too contradicts (the key would silently be stored in clear)."""
    if not no_passphrase:
        return PassphraseSource(passphrase_file=passphrase_file)
    if passphrase_file is not None:
        raise UsageError(
            "--no-passphrase and --passphrase-file contradict each other",
            hint="give a passphrase, or store the key unencrypted, not both",
        )
    return None


def _warn_unencrypted(out: Output, name: str) -> None:
    out.warn(
        f"key {name} is stored UNENCRYPTED: anyone who can read {name}.json can sign as it. "
        "Protect it with: omictl keys passwd " + name
    )


def _info_text(key: KeyFile) -> str:
    rows = [
        ("name", key.name),
        ("kind", key.kind),
        ("key id", key.key_id),
        ("public key", key.public_key.hex()),
        ("created", key.created_at),
        ("encrypted", "yes" if key.encrypted else "NO"),
    ]
    return "\n".join(f"{label + ':':<12} {value}" for label, value in rows)


def _replaced_key_id(keys_dir: Path, name: str) -> str | None:
    """What ``--force`` is about to replace: the key id of the key file there (read
    whatever its permissions), ``"unreadable"`` for a file that is not a key file, or
    None when there is nothing to replace."""
    from omictl.keystore import key_file_present, key_path, read_key_file

    path = key_path(keys_dir, name)
    if not key_file_present(path) or not path.exists():  # nothing, or a dangling link
        return None
    try:
        return read_key_file(path, check_permissions=False).key_id
    except OmictlError:
        return "unreadable"


def _kind(guardian: bool) -> str:
    return KIND_GUARDIAN if guardian else KIND_MASTER


@app.command("generate")
def generate_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Key name, e.g. master.")],
    guardian: Annotated[bool, typer.Option("--guardian", help="A guardian key.")] = False,
    no_passphrase: NoPassphraseOpt = False,
    force: ForceOpt = False,
    passphrase_file: PassphraseFileOpt = None,
) -> None:
    """Create a new Ed25519 key, encrypted with a passphrase."""
    inv = get_invocation(ctx)
    passphrases = _new_key_passphrases(no_passphrase, passphrase_file)
    replaced = _replaced_key_id(inv.settings.paths.keys_dir, name) if force else None
    key = generate_key(
        inv.settings.paths.keys_dir,
        name,
        kind=_kind(guardian),
        passphrases=passphrases,
        force=force,
    )
    if no_passphrase:
        _warn_unencrypted(inv.out, name)
    if replaced is not None:
        which = "an unreadable key file" if replaced == "unreadable" else f"key id {replaced}"
        inv.out.warn(
            f"replaced key {name} ({which}): that private key is gone unless a backup holds "
            "it (omictl keys import)"
        )
    inv.out.success(f"created {key.kind} key {name} (key id {key.key_id})")
    inv.out.result(key.info(), _info_text(key))


@app.command("list")
def list_cmd(ctx: typer.Context) -> None:
    """List the keys in the keystore (never a private key)."""
    inv = get_invocation(ctx)
    listing = list_keys(inv.settings.paths.keys_dir)
    for _, problem in listing.problems:
        inv.out.warn(problem)
    if inv.out.json_mode:
        # as receipts list: a file omictl cannot use is reported, not silently left out
        unreadable = [{"path": str(path), "error": why} for path, why in listing.problems]
        inv.out.emit_json({"keys": [k.info() for k in listing.keys], "unreadable": unreadable})
        return
    if not listing.keys:
        inv.out.info(f"no keys in {inv.settings.paths.keys_dir}; create one: omictl keys generate")
        return
    header = ("NAME", "KIND", "KEY ID", "ENCRYPTED", "CREATED", "PUBLIC KEY")
    rows = [
        (
            k.name,
            k.kind,
            k.key_id,
            "yes" if k.encrypted else "NO",
            k.created_at,
            k.public_key.hex(),
        )
        for k in listing.keys
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        inv.out.line("  ".join([*cells, row[-1]]))


@app.command("show")
def show_cmd(
    ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="NAME", help="Key name.")]
) -> None:
    """Show a key's name, kind, key id, public key, creation time and encryption."""
    inv = get_invocation(ctx)
    key = load_key(inv.settings.paths.keys_dir, name)
    inv.out.result(key.info(), _info_text(key))


@app.command("export")
def export_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Key name.")],
    public: Annotated[bool, typer.Option("--public", help="Only the public key (hex).")] = False,
    out: Annotated[
        str | None,  # not a Path: Path("./-") is "-", and only "-" itself means stdout
        typer.Option(
            "--out",
            metavar="FILE",
            help="Write to FILE (atomically) instead of stdout (- is stdout too).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite FILE.")] = False,
) -> None:
    """Export a key: the encrypted key file (a portable backup), or --public."""
    inv = get_invocation(ctx)
    out_file = None if out in (None, "-") else Path(out)  # "-": stdout, as without --out
    if out_file is not None:
        refuse_missing_folder(out_file)  # before any warning about the key
    keys_dir = inv.settings.paths.keys_dir
    key = load_key(keys_dir, name)
    if public:
        content = (key.public_key.hex() + "\n").encode("ascii")
        payload: dict[str, Any] = {
            "name": key.name,
            "kind": key.kind,
            "key_id": key.key_id,
            "public_key": key.public_key.hex(),
        }
    else:
        content = export_key_bytes(keys_dir, name)
        if not key.encrypted:
            inv.out.warn(f"key {name} is stored unencrypted: this export holds its private key")
        payload = key.to_json()
    if out_file is not None:
        # A public key may be shared; a backup stays private.
        write_output_file(out_file, content, force=force, mode=0o644 if public else 0o600)
        inv.out.success(f"exported {'public key' if public else 'key'} {name} to {out}")
        inv.out.result(
            {"name": name, "key_id": key.key_id, "public": public, "path": out},
            str(out),
        )
        return
    if inv.out.json_mode:
        inv.out.emit_json(payload)
    else:
        write_data(content.decode("utf-8"), sys.stdout)


@app.command("import")
def import_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Name to store the key under.")],
    source: Annotated[
        str | None,
        typer.Argument(
            help="An omictl key file, or - for stdin (with --seed, a hidden prompt by default).",
            metavar="[FILE|-]",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[
        bool,
        typer.Option("--seed", help="The input is a raw 32-byte seed (hex or base64)."),
    ] = False,
    guardian: Annotated[bool, typer.Option("--guardian", help="With --seed: a guardian key.")] = (
        False
    ),
    no_passphrase: NoPassphraseOpt = False,
    force: ForceOpt = False,
    passphrase_file: PassphraseFileOpt = None,
) -> None:
    """Import an omictl key file (a backup), or a raw seed with --seed."""
    inv = get_invocation(ctx)
    keys_dir = inv.settings.paths.keys_dir
    check_keys_dir(keys_dir)  # before the seed or a passphrase is asked for
    if not seed and (guardian or no_passphrase or passphrase_file is not None):
        raise UsageError(
            "--guardian, --no-passphrase and --passphrase-file only apply with --seed",
            hint="an imported key file keeps its kind and encryption",
        )
    if seed:
        passphrases = _new_key_passphrases(no_passphrase, passphrase_file)  # before reading
        if source in (None, "-") and _stdin_is_tty():
            import getpass

            text: str | bytes = getpass.getpass("seed (hex or base64, hidden): ")
        else:
            text = _read_input(source or "-", what="seed file")
        raw_seed = parse_seed_text(text, what="the seed" if source in (None, "-") else source)
        key = import_seed(
            keys_dir, name, raw_seed, kind=_kind(guardian), passphrases=passphrases, force=force
        )
        if no_passphrase:
            _warn_unencrypted(inv.out, name)
    else:
        if source in (None, "-") and _stdin_is_tty():
            # it would wait, silently, for a paste, and a pasted key file (an unencrypted
            # one holds its seed) would be echoed into the terminal's scrollback
            raise UsageError(
                "no key file given, and stdin is a terminal"
                if source is None
                else "stdin is a terminal: a pasted key file would be echoed on it",
                hint=f"pass the file: omictl keys import {name} FILE, or pipe it in: "
                f"omictl keys import {name} - < FILE (a raw seed goes with --seed, which "
                "asks for it without echo)",
            )
        key = import_key_bytes(
            keys_dir, name, _read_input(source or "-", what="key file"), force=force
        )
        if not key.encrypted:
            _warn_unencrypted(inv.out, name)
        weak = weak_kdf(key)
        if weak is not None:
            inv.out.warn(weak)
    inv.out.success(f"imported {key.kind} key {name} (key id {key.key_id})")
    inv.out.result(key.info(), _info_text(key))


@app.command("delete")
def delete_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Key name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a key from the keystore (irreversible without a backup)."""
    inv = get_invocation(ctx)
    keys_dir = inv.settings.paths.keys_dir
    key = load_key_or_none(keys_dir, name)
    if not yes:
        if not _stdin_is_tty():
            raise UsageError(
                f"refusing to delete key {name} without confirmation: stdin is not a terminal",
                hint="pass --yes to delete without asking",
            )
        what = f"{key.kind} key {name} ({key.key_id})" if key else f"key {name}"
        inv.out.warn(f"this deletes {what}; without a backup it cannot be recovered")
        answer = ask_consent(f"type the key name ({name}) to confirm: ")
        if answer is None or answer.strip() != name:
            raise Aborted("not confirmed; nothing was deleted")
    deleted = delete_key(keys_dir, name)
    key_id = deleted.key_id if deleted else None
    inv.out.success(f"deleted key {name}" + (f" (key id {key_id})" if key_id else ""))
    inv.out.result({"name": name, "key_id": key_id, "deleted": True}, f"deleted {name}")


def load_key_or_none(keys_dir: Path, name: str) -> KeyFile | None:
    """The key file of ``name``, or None if it exists but cannot be parsed.

    Raises :class:`KeystoreError` if there is no such key.
    """
    try:
        return load_key(keys_dir, name)
    except KeystoreError as exc:
        if exc.code == "unknown_key":
            raise
        return None


@app.command("passwd")
def passwd_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Key name.")],
    passphrase_file: PassphraseFileOpt = None,
    new_passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--new-passphrase-file",
            metavar="FILE",
            help="Read the new passphrase from FILE (else OMICTL_NEW_PASSPHRASE, else a prompt).",
            show_default=False,
            dir_okay=False,
        ),
    ] = None,
    no_passphrase: Annotated[
        bool, typer.Option("--no-passphrase", help="Remove the encryption (not recommended).")
    ] = False,
) -> None:
    """Change a key's passphrase (atomically: the old file or the new, never a broken one)."""
    inv = get_invocation(ctx)
    if no_passphrase and new_passphrase_file is not None:
        raise UsageError(
            "--no-passphrase and --new-passphrase-file contradict each other",
            hint="give a new passphrase, or store the key unencrypted, not both",
        )
    new = (
        None
        if no_passphrase
        else PassphraseSource(
            passphrase_file=new_passphrase_file,
            env_var=NEW_PASSPHRASE_ENV,
            file_option="--new-passphrase-file",
        )
    )
    key = change_passphrase(
        inv.settings.paths.keys_dir,
        name,
        old=PassphraseSource(passphrase_file=passphrase_file),
        new=new,
    )
    if no_passphrase:
        _warn_unencrypted(inv.out, name)
    inv.out.success(f"changed the passphrase of key {name}")
    inv.out.result(key.info(), _info_text(key))


@app.command("sign")
def sign_cmd(
    ctx: typer.Context,
    key_ref: Annotated[str, typer.Argument(metavar="KEY", help="NAME, file:PATH or env:VAR.")],
    payload: Annotated[
        str, typer.Argument(metavar="PAYLOAD.json", help="The data object, or - for stdin.")
    ],
    context: Annotated[
        str, typer.Option("--context", metavar="CTX", help="Sets data.context.", show_default=False)
    ],
    passphrase_file: PassphraseFileOpt = None,
) -> None:
    """Sign PAYLOAD.json's data object; the envelope goes to stdout."""
    from omictl.core.envelope import parse_json, sign_envelope
    from omictl.keyref import load_signer

    inv = get_invocation(ctx)
    data = parse_json(_read_input(payload, what="payload"), what="payload", error=UsageError)
    if not isinstance(data, dict):
        raise UsageError("the payload must be a JSON object (the envelope's data)")
    if not context:
        raise UsageError("--context must not be empty")
    data = prepare_data(data, context=context)
    # the payload's own nonce and timestamp follow PROTOCOL.md section 1 too, and it must
    # canonicalize: both checked before the key is unlocked (a KDF second for nothing)
    from omictl.core.envelope import canonical_bytes
    from omictl.core.messages import parse_timestamp, validate_nonce

    try:
        validate_nonce(data["nonce"], error=UsageError)
    except UsageError as exc:
        raise UsageError(
            f"the payload's {exc.message}", hint="leave it out: omictl makes a fresh one"
        ) from None
    try:
        parse_timestamp(data["timestamp"], field="timestamp", error=UsageError)
    except UsageError as exc:
        raise UsageError(
            f"the payload's {exc.message}", hint="leave it out: omictl sets the current time"
        ) from None
    canonical_bytes(data)
    signer = load_signer(
        key_ref,
        keys_dir=inv.settings.paths.keys_dir,
        passphrases=PassphraseSource(passphrase_file=passphrase_file),
        warn=inv.out.warn,
    )
    envelope = sign_envelope(data, signer)
    inv.out.info(f"signed with key {signer.name} (key id {signer.key_id})")
    inv.out.emit_json(envelope.to_json())


def prepare_data(
    data: dict[str, Any],
    *,
    context: str,
    now: int | None = None,
    nonce: str | None = None,
) -> dict[str, Any]:
    """``data`` with ``context`` set and ``timestamp``/``nonce`` added when absent
    (PROTOCOL.md section 1: integer Unix seconds, 128-bit URL-safe nonce)."""
    import secrets

    out = dict(data)
    out["context"] = context
    if "timestamp" not in out:
        out["timestamp"] = int(time.time()) if now is None else now
    if "nonce" not in out:
        out["nonce"] = secrets.token_urlsafe(16) if nonce is None else nonce
    return out


@app.command("verify")
def verify_cmd(
    ctx: typer.Context,
    envelope_file: Annotated[
        str, typer.Argument(metavar="ENVELOPE.json", help="A signed envelope, or - for stdin.")
    ],
    public_key: Annotated[
        str,
        typer.Option(
            "--public-key",
            metavar="HEX",
            help="The signer's public key (64 hex).",
            show_default=False,
        ),
    ],
    context: Annotated[
        str | None,
        typer.Option(
            "--context",
            metavar="CTX",
            help="Also require data.context to be CTX.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Verify an envelope's signature: exit 0 if good, 5 if not (a file that is not JSON: 2)."""
    from omictl.core.envelope import key_id, parse_envelope, parse_hex, parse_json, verify_envelope

    inv = get_invocation(ctx)
    pub = parse_hex(public_key, field="--public-key", length=32, error=UsageError, typed=True)
    doc = parse_json(_read_input(envelope_file, what="envelope"), what="envelope", error=UsageError)
    # JSON that is no good envelope (another version, a signature that is not 128 hex, no
    # data) does not verify: exit 5, as receipts verify says of a bundle's envelopes, so a
    # script testing for 5 catches every envelope it must not trust
    envelope = parse_envelope(doc)
    verify_envelope(envelope, pub, context=context)
    kid = key_id(pub)
    inv.out.result(
        {"valid": True, "key_id": kid, "context": envelope.data.get("context")},
        f"good signature by key {kid}",
    )
