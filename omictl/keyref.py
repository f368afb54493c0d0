"""Key references: ``NAME`` | ``file:PATH`` | ``env:VAR``  ->  a signing key (CLI.md "Keys").

- ``NAME``: the keystore file ``<keys_dir>/NAME.json``;
- ``file:PATH``: an omictl key file anywhere (mode 0600 required, like the keystore);
- ``env:VAR``: the variable holds an omictl key file's JSON, or a raw 32-byte seed as hex
  or base64 (for CI secret stores).

The public key is always available without a passphrase: key files store it in clear,
and a raw seed derives it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from omictl.config import DEFAULT_KEY_REF
from omictl.errors import KeystoreError, UsageError
from omictl.keystore import (
    PassphraseSource,
    decrypt_seed,
    load_key,
    parse_key_bytes,
    parse_seed_text,
    read_key_file,
    unlock,
    validate_key_name,
)

if TYPE_CHECKING:
    from omictl.core.envelope import Signer
    from omictl.keystore import KeyFile

FILE_PREFIX = "file:"
ENV_PREFIX = "env:"


def default_key_ref(settings_key: str) -> str:
    """The key reference to use: the resolved setting (``OMICTL_KEY``, profile), else
    ``master``."""
    return settings_key or DEFAULT_KEY_REF


def describe_key_ref(ref: str) -> str:
    """A short human label of ``ref`` for messages (never its secret content)."""
    if ref.startswith(ENV_PREFIX):
        return f"${ref[len(ENV_PREFIX) :]}"
    if ref.startswith(FILE_PREFIX):
        return ref[len(FILE_PREFIX) :]
    return ref


def check_key_ref(ref: str) -> str:
    """``ref`` if it has the form of a key reference (``NAME``, ``file:PATH``,
    ``env:VAR``), without reading anything; raises :class:`UsageError` otherwise. Used
    where a reference is stored (``config set key``) or given, so a typo is said there and
    not at the first command that needs the key."""
    if not isinstance(ref, str) or not ref:
        raise UsageError("a key reference is empty", hint="use NAME, file:PATH or env:VAR")
    if ref.startswith(FILE_PREFIX):
        if not ref[len(FILE_PREFIX) :]:
            raise UsageError("key reference file: names no file", hint="use file:PATH")
    elif ref.startswith(ENV_PREFIX):
        var = ref[len(ENV_PREFIX) :]
        if not var or "=" in var or "\0" in var:
            raise UsageError(
                f"key reference env:{var} does not name a variable", hint="use env:VAR"
            )
    else:
        validate_key_name(ref)
    return ref


def _env_value(var: str, env: Mapping[str, str]) -> str:
    if not var or "=" in var:
        raise UsageError(f"key reference env:{var} does not name a variable")
    value = env.get(var)
    if value is None:
        raise KeystoreError(
            f"key reference env:{var}: the variable {var} is not set",
            hint=f"set {var} (in CI: the secret holding the key), or name another key",
            code="unknown_key",
        )
    if not value.strip():
        raise KeystoreError(
            f"key reference env:{var}: the variable {var} is empty or blank",
            hint=f"put the key in {var} (in CI: check that its secret is set for this job)",
        )
    return value


def _resolve(ref: str, keys_dir: Path, env: Mapping[str, str]) -> KeyFile | bytes:
    """The key file a reference points at, or the raw seed held by an ``env:`` variable."""
    if not isinstance(ref, str) or not ref:
        raise UsageError("a key reference is empty", hint="use NAME, file:PATH or env:VAR")
    if ref.startswith(FILE_PREFIX):
        raw_path = ref[len(FILE_PREFIX) :]
        if not raw_path:
            raise UsageError("key reference file: names no file", hint="use file:PATH")
        path = Path(raw_path).expanduser()
        if not path.exists():
            raise KeystoreError(f"key file {path} does not exist", code="unknown_key")
        return read_key_file(path)
    if ref.startswith(ENV_PREFIX):
        var = ref[len(ENV_PREFIX) :]
        value = _env_value(var, env)
        if value.lstrip().startswith("{"):
            # os.environ holds undecodable bytes as lone surrogates: pass them through as
            # (invalid) UTF-8 bytes, which the key file parser then refuses
            raw = value.encode("utf-8", "surrogatepass")
            return parse_key_bytes(raw, source=f"the variable {var}")
        # Error messages name the variable, never echo its value (a secret).
        return parse_seed_text(value, what=f"the variable {var}", error=KeystoreError)
    return load_key(keys_dir, ref)


def load_signer(
    ref: str,
    *,
    keys_dir: Path,
    passphrases: PassphraseSource,
    warn: Callable[[str], None] | None = None,
    env: Mapping[str, str] | None = None,
) -> Signer:
    """Return the signing key ``ref`` names, unlocking it with ``passphrases`` if needed.

    An unencrypted key file calls ``warn("key X is stored unencrypted")`` each time it is
    used; a raw seed in ``env:VAR`` does not (it is the CI secret store's to protect).
    Raises :class:`UsageError` for a malformed reference, :class:`KeystoreError` for an
    unknown key, unsafe permissions, a malformed file or seed, or a wrong passphrase.
    """
    from omictl.core.envelope import Signer

    found = _resolve(ref, keys_dir, os.environ if env is None else env)
    if isinstance(found, bytes):
        return Signer(found, name=ref)
    return unlock(found, passphrases, warn=warn)


def load_public_key(ref: str, *, keys_dir: Path, env: Mapping[str, str] | None = None) -> bytes:
    """The 32-byte public key ``ref`` names, without a passphrase.

    For a key file, the public key in its header (an unencrypted file is also checked
    against its seed); for a raw seed in ``env:VAR``, the derived key. Raises like
    :func:`load_signer`.
    """
    found = _resolve(ref, keys_dir, os.environ if env is None else env)
    if isinstance(found, bytes):
        from omictl.core.envelope import Signer

        return Signer(found).public_key
    if not found.encrypted:
        decrypt_seed(found, b"")
    return found.public_key
