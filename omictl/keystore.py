"""Encrypted key files: Argon2id + XSalsa20-Poly1305 (SecretBox), atomic 0600 writes.

A key file is ``<keys_dir>/NAME.json`` (format in ``docs/keystore.md``). The public key
and key id are stored in clear, so listing keys and checking which key an app expects
never needs the passphrase; the 32-byte Ed25519 seed is sealed with a key derived from the
passphrase by Argon2id. After decryption the seed must derive the public key written in
the file's header, so a file whose public key was swapped fails loudly.

Nothing here prints. Every failure is a :class:`~omictl.errors.KeystoreError` (exit 3) or,
for bad arguments, a :class:`~omictl.errors.UsageError` (exit 2), and no failure changes
a file on disk. libsodium (``nacl``) and the envelope core are imported inside the
functions that need them, so ``omictl keys list`` starts without loading them.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omictl.core.envelope import key_id, parse_json
from omictl.errors import KeystoreError, OmictlError, UsageError, short_message
from omictl.fsutil import (
    atomic_write_bytes,
    atomic_write_json,
    ensure_private_dir,
    is_private,
    refuse_missing_folder,
    remove_stale_temps,
)

if TYPE_CHECKING:
    from omictl.core.envelope import Signer

KEY_FORMAT = "omictl-key"
KEY_FORMAT_VERSION = 1
KIND_MASTER = "master"
KIND_GUARDIAN = "guardian"
KINDS = (KIND_MASTER, KIND_GUARDIAN)
KDF_NAME = "argon2id"
#: A key file is a few hundred bytes; anything beyond this is not one of ours.
MAX_KEY_FILE_BYTES = 64 * 1024
MAX_PASSPHRASE_FILE_BYTES = 4096
SEED_BYTES = 32
PUBLIC_KEY_BYTES = 32
SALT_BYTES = 16  # nacl.pwhash.argon2id.SALTBYTES
_NONCE_BYTES = 24  # nacl.secret.SecretBox.NONCE_SIZE
_MAC_BYTES = 16  # nacl.secret.SecretBox.MACBYTES
#: SecretBox output: nonce + encrypted seed + Poly1305 tag.
CIPHERTEXT_BYTES = _NONCE_BYTES + SEED_BYTES + _MAC_BYTES
PASSPHRASE_ENV = "OMICTL_PASSPHRASE"  # noqa: S105 - a variable name, not a secret

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_HEX_RE = re.compile(r"[0-9a-fA-F]*")


@dataclass(frozen=True)
class KdfLimits:
    """Argon2id cost: ``opslimit`` passes over ``memlimit`` bytes of memory."""

    opslimit: int
    memlimit: int


# libsodium's argon2id presets, spelled out so listing keys never loads libsodium (a test
# checks they equal nacl.pwhash.argon2id's constants).
MIN_LIMITS = KdfLimits(opslimit=1, memlimit=8192)
INTERACTIVE_LIMITS = KdfLimits(opslimit=2, memlimit=64 * 1024 * 1024)
MODERATE_LIMITS = KdfLimits(opslimit=3, memlimit=256 * 1024 * 1024)
SENSITIVE_LIMITS = KdfLimits(opslimit=4, memlimit=1024 * 1024 * 1024)

#: The cost new key files are sealed with (CLI.md: at least MODERATE, about 1 s to unlock).
#: Only tests lower it (they monkeypatch this constant); there is no environment override.
KDF_LIMITS: KdfLimits = MODERATE_LIMITS
#: The most a key file read from disk (or from ``env:VAR``) may ask for: libsodium's
#: SENSITIVE preset, 4 passes over 1 GiB, a few seconds. A hostile file asking for more is
#: refused before any memory is allocated.
KDF_CEILING: KdfLimits = SENSITIVE_LIMITS
#: The least a key file may ask for (libsodium refuses less anyway).
KDF_FLOOR: KdfLimits = MIN_LIMITS

Warn = Callable[[str], None]


# ---------------------------------------------------------------------------- names, paths


def validate_key_name(name: str) -> str:
    """Return ``name`` if it is a valid key name: ``[A-Za-z0-9][A-Za-z0-9_.-]{0,63}``.

    Raises :class:`UsageError` otherwise (so ``../x`` or ``a/b`` never reach the disk).
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise UsageError(
            f"key name {name!r} is not valid",
            hint="use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit",
        )
    return name


def key_path(keys_dir: Path, name: str) -> Path:
    """The file of key ``name`` in ``keys_dir``; raises :class:`UsageError` for a bad name."""
    return keys_dir / f"{validate_key_name(name)}.json"


#: The key id (PROTOCOL.md section 1): core.envelope's, which loads libsodium only to sign.
compute_key_id = key_id


def _now_rfc3339(now: datetime | None = None) -> str:
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------- passphrases


class PassphraseSource:
    """Where passphrases come from, in order (CLI.md "Keys"):

    1. ``passphrase_file`` (``--passphrase-file FILE``): its bytes, one trailing newline
       removed;
    2. the ``OMICTL_PASSPHRASE`` variable of ``env`` (default ``os.environ``); set but empty
       is refused, not treated as unset;
    3. a hidden prompt, only when ``interactive`` (default: stdin is a terminal); asked
       twice when ``confirm`` is true.

    With none of them :meth:`get` raises :class:`KeystoreError` naming the sources; it
    never waits on a stdin that is not a terminal. ``env_var`` lets ``keys passwd`` read
    the new passphrase from another variable.
    """

    def __init__(
        self,
        *,
        passphrase_file: Path | None = None,
        env: Mapping[str, str] | None = None,
        interactive: bool | None = None,
        env_var: str = PASSPHRASE_ENV,
        file_option: str = "--passphrase-file",
    ) -> None:
        self.passphrase_file = passphrase_file
        self.env: Mapping[str, str] = os.environ if env is None else env
        self._interactive = interactive
        self.env_var = env_var
        self.file_option = file_option

    @property
    def interactive(self) -> bool:
        """True when a hidden prompt may be shown (stdin is a terminal unless told)."""
        if self._interactive is not None:
            return self._interactive
        try:
            return sys.stdin is not None and sys.stdin.isatty()
        except (ValueError, OSError):  # closed or detached stdin
            return False

    def get(self, prompt: str, *, confirm: bool = False) -> bytes:
        """Return a non-empty passphrase from the first source that has one.

        Raises :class:`UsageError` for an unreadable or oversized passphrase file, and
        :class:`KeystoreError` when no source is available, for an empty passphrase (a
        file, a set-but-empty variable, a typed one) or when the two typed ones differ.
        """
        if self.passphrase_file is not None:
            return self._from_file(self.passphrase_file)
        if self.env_var in self.env:
            value = self.env[self.env_var]
            if not value:  # a CI secret that expanded to nothing: a passphrase problem (3)
                raise KeystoreError(
                    f"{self.env_var} is set but empty",
                    hint=f"unset it, or put the passphrase in it or in {self.file_option}",
                    code="no_passphrase",
                )
            return value.encode("utf-8")
        if not self.interactive:
            raise KeystoreError(
                f"a passphrase is needed but none was given: no {self.file_option}, "
                f"{self.env_var} is not set, and stdin is not a terminal to prompt on",
                hint=f"use {self.file_option} FILE or set {self.env_var}",
                code="no_passphrase",
            )
        first = self._prompt(prompt)
        if confirm:
            second = self._prompt("repeat the passphrase: ")
            if second != first:
                raise KeystoreError("the two passphrases do not match; nothing was changed")
        return first

    def _prompt(self, prompt: str) -> bytes:
        import getpass

        try:
            typed = getpass.getpass(prompt)
        except EOFError as exc:
            raise KeystoreError("no passphrase was typed (end of input)") from exc
        if not typed:
            raise KeystoreError(
                "an empty passphrase is not accepted",
                hint="type a passphrase, or use --no-passphrase to store a key unencrypted",
            )
        return typed.encode("utf-8")

    def _from_file(self, path: Path) -> bytes:
        try:
            with path.open("rb") as handle:
                raw = handle.read(MAX_PASSPHRASE_FILE_BYTES + 1)
        except OSError as exc:
            raise UsageError(
                f"cannot read passphrase file {path}: {exc.strerror or type(exc).__name__}"
            ) from exc
        if len(raw) > MAX_PASSPHRASE_FILE_BYTES:
            raise UsageError(
                f"passphrase file {path} is larger than {MAX_PASSPHRASE_FILE_BYTES} bytes"
            )
        # One trailing newline is what `echo` and editors add; it is not part of it.
        if raw.endswith(b"\r\n"):
            raw = raw[:-2]
        elif raw.endswith(b"\n"):
            raw = raw[:-1]
        if not raw:  # as an empty typed passphrase: a passphrase problem (exit 3)
            raise KeystoreError(f"passphrase file {path} is empty", code="no_passphrase")
        return raw


# ---------------------------------------------------------------------------- key files


@dataclass(frozen=True)
class KdfParams:
    """The Argon2id parameters stored in an encrypted key file."""

    opslimit: int
    memlimit: int
    salt: bytes

    def to_json(self) -> dict[str, Any]:
        """The ``kdf`` member of a key file."""
        return {
            "name": KDF_NAME,
            "opslimit": self.opslimit,
            "memlimit": self.memlimit,
            "salt": self.salt.hex(),
        }


@dataclass(frozen=True)
class KeyFile:
    """One parsed key file. Secret members never appear in its ``repr``."""

    name: str
    kind: str
    created_at: str
    public_key: bytes
    encrypted: bool
    kdf: KdfParams | None = None
    ciphertext: bytes | None = field(default=None, repr=False)
    seed: bytes | None = field(default=None, repr=False)
    path: Path | None = field(default=None, compare=False)

    @property
    def key_id(self) -> str:
        """The key id of the public key."""
        return compute_key_id(self.public_key)

    def info(self) -> dict[str, Any]:
        """The public facts ``keys show`` / ``list`` print: never any secret."""
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "key_id": self.key_id,
            "public_key": self.public_key.hex(),
            "created_at": self.created_at,
            "encrypted": self.encrypted,
        }
        if self.path is not None:
            out["path"] = str(self.path)
        return out

    def to_json(self) -> dict[str, Any]:
        """The key file document (see docs/keystore.md)."""
        doc: dict[str, Any] = {
            "format": KEY_FORMAT,
            "format_version": KEY_FORMAT_VERSION,
            "name": self.name,
            "kind": self.kind,
            "created_at": self.created_at,
            "public_key": self.public_key.hex(),
            "key_id": self.key_id,
            "encrypted": self.encrypted,
        }
        if self.encrypted:
            assert self.kdf is not None and self.ciphertext is not None
            doc["kdf"] = self.kdf.to_json()
            doc["ciphertext"] = self.ciphertext.hex()
        else:
            assert self.seed is not None
            doc["seed"] = self.seed.hex()
        return doc


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise UsageError(f"key kind must be 'master' or 'guardian', not {kind!r}")
    return kind


def _public_key_of(seed: bytes) -> bytes:
    from omictl.core.envelope import Signer

    return Signer(seed).public_key


def seal_seed(
    seed: bytes,
    passphrase: bytes,
    *,
    name: str,
    kind: str = KIND_MASTER,
    created_at: str | None = None,
    limits: KdfLimits | None = None,
) -> KeyFile:
    """Encrypt ``seed`` under ``passphrase`` and return the key file (not yet written).

    Argon2id with ``limits`` (default :data:`KDF_LIMITS`, at least MODERATE) and a fresh
    16-byte salt derives a SecretBox key; SecretBox picks a fresh random 24-byte nonce.
    Raises :class:`UsageError` for a seed that is not 32 bytes or an empty passphrase.
    """
    import nacl.pwhash
    import nacl.secret
    import nacl.utils

    if len(seed) != SEED_BYTES:
        raise UsageError(f"an Ed25519 seed is {SEED_BYTES} bytes, got {len(seed)}")
    if not passphrase:
        raise UsageError("an empty passphrase is not accepted")
    limits = KDF_LIMITS if limits is None else limits
    salt = nacl.utils.random(SALT_BYTES)
    box_key = nacl.pwhash.argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE,
        passphrase,
        salt,
        opslimit=limits.opslimit,
        memlimit=limits.memlimit,
    )
    ciphertext = bytes(nacl.secret.SecretBox(box_key).encrypt(seed))
    return KeyFile(
        name=validate_key_name(name),
        kind=_check_kind(kind),
        created_at=created_at or _now_rfc3339(),
        public_key=_public_key_of(seed),
        encrypted=True,
        kdf=KdfParams(opslimit=limits.opslimit, memlimit=limits.memlimit, salt=salt),
        ciphertext=ciphertext,
    )


def plain_key(
    seed: bytes, *, name: str, kind: str = KIND_MASTER, created_at: str | None = None
) -> KeyFile:
    """The key file of an unencrypted seed (``--no-passphrase``); not yet written."""
    if len(seed) != SEED_BYTES:
        raise UsageError(f"an Ed25519 seed is {SEED_BYTES} bytes, got {len(seed)}")
    return KeyFile(
        name=validate_key_name(name),
        kind=_check_kind(kind),
        created_at=created_at or _now_rfc3339(),
        public_key=_public_key_of(seed),
        encrypted=False,
        seed=bytes(seed),
    )


def _hex_member(doc: Mapping[str, Any], member: str, length: int, source: str) -> bytes:
    value = doc.get(member)
    if not isinstance(value, str) or len(value) != 2 * length or not _HEX_RE.fullmatch(value):
        raise KeystoreError(
            f"{source} is not a valid key file: {member} must be {2 * length} hex characters",
            code="corrupt_key_file",
        )
    return bytes.fromhex(value)


def _int_member(doc: Mapping[str, Any], member: str, source: str) -> int:
    value = doc.get(member)
    if not isinstance(value, int) or isinstance(value, bool):
        raise KeystoreError(
            f"{source} is not a valid key file: {member} must be an integer",
            code="corrupt_key_file",
        )
    return value


def check_kdf_limits(opslimit: int, memlimit: int, *, source: str) -> None:
    """Refuse Argon2id parameters outside [:data:`KDF_FLOOR`, :data:`KDF_CEILING`].

    Raises :class:`KeystoreError` (code ``hostile_kdf``) before anything is allocated.
    """
    if not KDF_FLOOR.opslimit <= opslimit <= KDF_CEILING.opslimit:
        raise KeystoreError(
            f"{source} asks for Argon2id opslimit {opslimit}; omictl accepts "
            f"{KDF_FLOOR.opslimit} to {KDF_CEILING.opslimit}",
            hint="the file is damaged or not from omictl; restore it from a backup",
            code="hostile_kdf",
        )
    if not KDF_FLOOR.memlimit <= memlimit <= KDF_CEILING.memlimit:
        raise KeystoreError(
            f"{source} asks for Argon2id memlimit {memlimit} bytes; omictl accepts "
            f"{KDF_FLOOR.memlimit} to {KDF_CEILING.memlimit}",
            hint="the file is damaged or not from omictl; restore it from a backup",
            code="hostile_kdf",
        )


def parse_key_document(obj: object, *, source: str, path: Path | None = None) -> KeyFile:
    """Check the shape of a key file document and return it (nothing decrypted yet).

    Checks format and version, name, kind, the public key and its key id, and either the
    seed or the KDF parameters (against the ceiling) and ciphertext length. Raises
    :class:`KeystoreError` naming ``source`` and the first bad member.
    """

    def bad(what: str, code: str = "corrupt_key_file") -> KeystoreError:
        return KeystoreError(f"{source} is not a valid key file: {what}", code=code)

    if not isinstance(obj, Mapping):
        raise bad("it is not a JSON object")
    if obj.get("format") != KEY_FORMAT:
        raise bad(f"format must be {KEY_FORMAT!r}")
    version = obj.get("format_version")
    if version != KEY_FORMAT_VERSION or isinstance(version, bool):
        raise bad(f"format_version {version!r} is not supported (this omictl reads 1)")
    name = obj.get("name")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise bad("name is missing or not a valid key name")
    kind = obj.get("kind")
    if kind not in KINDS:
        raise bad("kind must be 'master' or 'guardian'")
    created_at = obj.get("created_at")
    if not isinstance(created_at, str) or not created_at:
        raise bad("created_at must be an RFC 3339 time")
    try:
        datetime.fromisoformat(created_at.replace("Z", "+00:00"))
    except ValueError as exc:
        raise bad("created_at must be an RFC 3339 time") from exc
    public_key = _hex_member(obj, "public_key", PUBLIC_KEY_BYTES, source)
    stored_id = obj.get("key_id")
    if stored_id is not None and stored_id != compute_key_id(public_key):
        raise bad("key_id does not match public_key")
    encrypted = obj.get("encrypted")
    if not isinstance(encrypted, bool):
        raise bad("encrypted must be true or false")
    if not encrypted:
        if "ciphertext" in obj or "kdf" in obj:
            raise bad("an unencrypted key file has no kdf or ciphertext")
        seed = _hex_member(obj, "seed", SEED_BYTES, source)
        return KeyFile(
            name=name,
            kind=str(kind),
            created_at=created_at,
            public_key=public_key,
            encrypted=False,
            seed=seed,
            path=path,
        )
    if "seed" in obj:
        raise bad("an encrypted key file must not hold a seed")
    kdf = obj.get("kdf")
    if not isinstance(kdf, Mapping):
        raise bad("kdf must be an object")
    if kdf.get("name") != KDF_NAME:
        raise bad(f"kdf.name must be {KDF_NAME!r}")
    opslimit = _int_member(kdf, "opslimit", source)
    memlimit = _int_member(kdf, "memlimit", source)
    check_kdf_limits(opslimit, memlimit, source=source)
    salt = _hex_member(kdf, "salt", SALT_BYTES, source)
    ciphertext = _hex_member(obj, "ciphertext", CIPHERTEXT_BYTES, source)
    return KeyFile(
        name=name,
        kind=str(kind),
        created_at=created_at,
        public_key=public_key,
        encrypted=True,
        kdf=KdfParams(opslimit=opslimit, memlimit=memlimit, salt=salt),
        ciphertext=ciphertext,
        path=path,
    )


def parse_key_bytes(raw: bytes, *, source: str, path: Path | None = None) -> KeyFile:
    """Parse key file bytes (strict JSON, at most :data:`MAX_KEY_FILE_BYTES`).

    Raises :class:`KeystoreError` for oversized, non-JSON or malformed content.
    """
    if len(raw) > MAX_KEY_FILE_BYTES:
        raise KeystoreError(
            f"{source} is larger than {MAX_KEY_FILE_BYTES} bytes: not an omictl key file",
            code="corrupt_key_file",
        )
    try:
        doc = parse_json(raw, what=source, error=KeystoreError)
    except KeystoreError as exc:
        why = short_message(exc.__cause__, 120) if exc.__cause__ is not None else "not JSON"
        raise KeystoreError(
            f"{source} is not a valid key file: not JSON ({why}; truncated or damaged?)",
            hint="restore it from a backup (omictl keys import NAME BACKUP.json)",
            code="corrupt_key_file",
        ) from exc
    return parse_key_document(doc, source=source, path=path)


def check_private(path: Path) -> None:
    """Refuse a key file that group or others may read or write.

    Raises :class:`KeystoreError` (code ``unsafe_permissions``) with a ``chmod`` hint.
    POSIX only: on Windows the check is skipped (ACLs, not mode bits, apply there).
    """
    if os.name == "nt":  # pragma: no cover - POSIX mode bits do not apply
        return
    try:
        private = is_private(path)
        mode = path.stat().st_mode & 0o777
    except OSError as exc:
        raise KeystoreError(f"cannot read {path}: {exc.strerror}") from exc
    if not private:
        raise KeystoreError(
            f"key file {path} is accessible by other users (mode {mode:04o}); refusing to use it",
            hint=f"chmod 600 {path}",
            code="unsafe_permissions",
        )


def read_key_file(path: Path, *, check_permissions: bool = True) -> KeyFile:
    """Read and parse the key file at ``path`` (nothing decrypted).

    Raises :class:`KeystoreError` if it is missing, not private (unless
    ``check_permissions`` is false), larger than :data:`MAX_KEY_FILE_BYTES`, or malformed.
    """
    try:
        with path.open("rb") as handle:
            if check_permissions:
                check_private(path)
            raw = handle.read(MAX_KEY_FILE_BYTES + 1)
    except FileNotFoundError as exc:
        raise KeystoreError(f"key file {path} does not exist", code="unknown_key") from exc
    except IsADirectoryError as exc:
        raise KeystoreError(f"{path} is a folder, not a key file") from exc
    except OSError as exc:
        raise KeystoreError(f"cannot read key file {path}: {exc.strerror}") from exc
    return parse_key_bytes(raw, source=str(path), path=path)


def decrypt_seed(key: KeyFile, passphrase: bytes) -> bytes:
    """Decrypt ``key``'s seed and check it derives the file's public key.

    Raises :class:`KeystoreError` with code ``wrong_passphrase`` when the box does not
    open, and ``inconsistent_key_file`` when the seed does not match the stored public key
    (a swapped header). Unencrypted files are checked the same way.
    """
    label = key.path or key.name
    if key.encrypted:
        import nacl.exceptions
        import nacl.pwhash
        import nacl.secret

        assert key.kdf is not None and key.ciphertext is not None
        # Re-check even if the KeyFile was built by hand, not by parse_key_document.
        check_kdf_limits(key.kdf.opslimit, key.kdf.memlimit, source=str(label))
        try:
            box_key = nacl.pwhash.argon2id.kdf(
                nacl.secret.SecretBox.KEY_SIZE,
                passphrase,
                key.kdf.salt,
                opslimit=key.kdf.opslimit,
                memlimit=key.kdf.memlimit,
            )
            seed = bytes(nacl.secret.SecretBox(box_key).decrypt(key.ciphertext))
        except nacl.exceptions.CryptoError as exc:
            raise KeystoreError(
                f"wrong passphrase for key {key.name} (or its file {label} is damaged)",
                code="wrong_passphrase",
                hint="the passphrase came from --passphrase-file, else OMICTL_PASSPHRASE, "
                "else the prompt: check the one in use",
            ) from exc
    else:
        assert key.seed is not None
        seed = key.seed
    if len(seed) != SEED_BYTES or _public_key_of(seed) != key.public_key:
        raise KeystoreError(
            f"key file {label} is inconsistent: its private key does not match its "
            f"public key {key.key_id}; refusing to use it",
            hint="the file was altered; restore it from a backup",
            code="inconsistent_key_file",
        )
    return seed


def weak_kdf(key: KeyFile) -> str | None:
    """A warning when ``key`` is sealed with a cheaper Argon2id cost than omictl seals keys
    with (:data:`KDF_LIMITS`, at least MODERATE): a key file made by another tool, or by a
    test, is that much cheaper to brute-force offline. None otherwise."""
    kdf = key.kdf
    if not key.encrypted or kdf is None:
        return None
    if kdf.opslimit >= KDF_LIMITS.opslimit and kdf.memlimit >= KDF_LIMITS.memlimit:
        return None
    return (
        f"key {key.name} is sealed with a weak Argon2id cost (opslimit {kdf.opslimit}, "
        f"{kdf.memlimit // 1024} KiB; omictl uses at least {KDF_LIMITS.opslimit} and "
        f"{KDF_LIMITS.memlimit // (1024 * 1024)} MiB): re-seal it with "
        f"omictl keys passwd {key.name}"
    )


def unlock(
    key: KeyFile,
    passphrases: PassphraseSource,
    *,
    warn: Warn | None = None,
) -> Signer:
    """Return the :class:`Signer` of ``key``, asking ``passphrases`` if it is encrypted.

    An unencrypted key, or one sealed with a weak Argon2id cost (:func:`weak_kdf`), calls
    ``warn`` every time it is used. Raises :class:`KeystoreError` (wrong passphrase,
    inconsistent file, no passphrase source).
    """
    from omictl.core.envelope import Signer

    if key.encrypted:
        weak = weak_kdf(key)
        if weak is not None and warn is not None:
            warn(weak)
        passphrase = passphrases.get(f"passphrase for key {key.name}: ")
    else:
        passphrase = b""
        if warn is not None:
            warn(f"key {key.name} is stored unencrypted")
    return Signer(decrypt_seed(key, passphrase), name=key.name)


def key_file_present(path: Path) -> bool:
    """Whether anything (a file, a link, even a dangling one) is at ``path``. Raises
    :class:`KeystoreError` (exit 3) when the keys folder cannot be searched."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as exc:  # EACCES on the keys folder, ENOTDIR, ...
        raise KeystoreError(
            f"cannot look for {path}: {exc.strerror}",
            hint=f"check the permissions of {path.parent}",
        ) from exc
    return True


def _refuse_existing(path: Path, name: str) -> None:
    if key_file_present(path):
        raise KeystoreError(
            f"key {name} already exists ({path})",
            hint="choose another name, or pass --force to replace it (the old key is lost)",
            code="key_exists",
        )


def write_key_file(path: Path, key: KeyFile, *, overwrite: bool = False) -> None:
    """Write ``key`` to ``path`` atomically, mode 0600, its folder 0700. Callers check the
    folder first (:func:`check_keys_dir`, before any prompt), as every one here does.

    Raises :class:`KeystoreError` if ``path`` exists and ``overwrite`` is false, or on an
    OS error (the old file, if any, is then untouched).
    """
    if not overwrite:
        _refuse_existing(path, key.name)
    ensure_private_dir(path.parent, error=KeystoreError)
    atomic_write_json(path, key.to_json(), error=KeystoreError, sweep_stale=True)


# ---------------------------------------------------------------------------- operations


def check_keys_dir(keys_dir: Path) -> None:
    """A keys folder that group or others may write is refused (exit 3), as ``ssh``
    refuses such a ``~/.ssh``: whoever can write there can replace or remove the keys.
    A folder others may only read is left alone (each key file is 0600). A missing folder
    is fine (an empty keystore). POSIX only."""
    import stat

    if os.name != "posix":  # pragma: no cover - mode bits do not apply
        return
    try:
        mode = stat.S_IMODE(os.stat(keys_dir).st_mode)
    except OSError:
        return  # missing, or unreadable: the operation that follows says so
    if mode & 0o022:
        raise KeystoreError(
            f"keys folder {keys_dir} is writable by group or others (mode {mode:o}): "
            "anyone who can write there can replace or remove your keys",
            hint=f"chmod 700 {keys_dir}",
            code="unsafe_permissions",
        )


def load_key(keys_dir: Path, name: str) -> KeyFile:
    """The parsed key file of ``name`` in ``keys_dir`` (no passphrase needed).

    Raises :class:`UsageError` for a bad name, :class:`KeystoreError` for an unknown key,
    unsafe permissions (of the file or its folder) or a malformed file.
    """
    path = key_path(keys_dir, name)
    check_keys_dir(keys_dir)
    if not key_file_present(path):
        raise KeystoreError(
            f"no key named {name!r} in {keys_dir}",
            hint="see omictl keys list, or create it with omictl keys generate " + name,
            code="unknown_key",
        )
    key = read_key_file(path)
    # The file name is authoritative for keystore keys (a copied file keeps its old name).
    return replace(key, name=name) if key.name != name else key


def generate_key(
    keys_dir: Path,
    name: str,
    *,
    kind: str = KIND_MASTER,
    passphrases: PassphraseSource | None,
    force: bool = False,
    limits: KdfLimits | None = None,
) -> KeyFile:
    """Create a new Ed25519 key ``name`` from the OS CSPRNG and store it.

    ``passphrases`` None stores it unencrypted (``--no-passphrase``). Raises
    :class:`KeystoreError` if the key exists and ``force`` is false (checked before asking
    for a passphrase), or when no passphrase can be had.
    """
    path = key_path(keys_dir, name)
    check_keys_dir(keys_dir)  # before any prompt or key derivation
    _check_kind(kind)
    if not force:
        _refuse_existing(path, name)
    seed = os.urandom(SEED_BYTES)
    key = _seal_or_plain(seed, name=name, kind=kind, passphrases=passphrases, limits=limits)
    write_key_file(path, replace(key, path=path), overwrite=force)
    return replace(key, path=path)


def _seal_or_plain(
    seed: bytes,
    *,
    name: str,
    kind: str,
    passphrases: PassphraseSource | None,
    limits: KdfLimits | None,
    created_at: str | None = None,
) -> KeyFile:
    if passphrases is None:
        return plain_key(seed, name=name, kind=kind, created_at=created_at)
    passphrase = passphrases.get(f"new passphrase for key {name}: ", confirm=True)
    return seal_seed(seed, passphrase, name=name, kind=kind, created_at=created_at, limits=limits)


@dataclass(frozen=True)
class KeyListing:
    """What :func:`list_keys` found: the keys, and per file it could not use, that file
    and one line saying why (with what to do)."""

    keys: list[KeyFile]
    problems: list[tuple[Path, str]]


def list_keys(keys_dir: Path) -> KeyListing:
    """Every key in ``keys_dir``, sorted by name. A missing folder is an empty keystore.

    A file that cannot be parsed or is not private is reported in ``problems`` (with what
    to do), not raised, so one bad file does not hide the others.
    """
    keys: list[KeyFile] = []
    problems: list[tuple[Path, str]] = []
    check_keys_dir(keys_dir)
    try:
        entries = sorted(keys_dir.glob("*.json"))
    except OSError as exc:
        raise KeystoreError(f"cannot list {keys_dir}: {exc.strerror}") from exc
    for path in entries:
        name = path.name[: -len(".json")]
        if not _NAME_RE.fullmatch(name):
            continue
        try:
            keys.append(load_key(keys_dir, name))
        except OmictlError as exc:
            problems.append((path, exc.message + (f" (hint: {exc.hint})" if exc.hint else "")))
    return KeyListing(keys=keys, problems=problems)


def export_key_bytes(keys_dir: Path, name: str) -> bytes:
    """The key file of ``name`` as stored (validated first): a portable backup.

    Raises like :func:`load_key`.
    """
    key = load_key(keys_dir, name)
    assert key.path is not None
    try:
        return key.path.read_bytes()
    except OSError as exc:  # pragma: no cover - it was readable a moment ago
        raise KeystoreError(f"cannot read key file {key.path}: {exc.strerror}") from exc


def write_output_file(
    path: Path, content: bytes, *, force: bool = False, mode: int = 0o600
) -> None:
    """Write an export to ``path`` atomically with ``mode`` from birth.

    Raises :class:`UsageError` if ``path`` exists and ``force`` is false (an export never
    silently replaces a file, which could be another backup).
    """
    if not force and (path.exists() or path.is_symlink()):
        raise UsageError(f"{path} already exists", hint="choose another file or pass --force")
    refuse_missing_folder(path)
    atomic_write_bytes(path, content, mode=mode, error=KeystoreError)


def import_key_bytes(keys_dir: Path, name: str, raw: bytes, *, force: bool = False) -> KeyFile:
    """Store an omictl key file (e.g. a backup from ``keys export``) as key ``name``.

    The document is validated; an unencrypted one must derive its own public key (an
    encrypted one is checked the first time it is unlocked). Raises
    :class:`KeystoreError` for a malformed file or an existing key without ``force``.
    """
    path = key_path(keys_dir, name)
    check_keys_dir(keys_dir)  # before any prompt or key derivation
    key = parse_key_bytes(raw, source="the imported key file")
    if not key.encrypted:
        decrypt_seed(key, b"")
    key = replace(key, name=name, path=path)
    write_key_file(path, key, overwrite=force)
    return key


def parse_seed_text(
    text: str | bytes, *, what: str, error: type[OmictlError] = UsageError
) -> bytes:
    """Decode a raw Ed25519 seed given as 64 hex chars or base64 (standard or URL-safe).

    Surrounding whitespace is ignored. Raises ``error`` naming ``what`` (never echoing the
    value, which is a secret) for anything that is not exactly 32 bytes.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError as exc:
            raise error(f"{what} is not a seed: it is not ASCII hex or base64") from exc
    value = "".join(text.split())
    if len(value) == 2 * SEED_BYTES and _HEX_RE.fullmatch(value):
        return bytes.fromhex(value)
    candidate = value.replace("-", "+").replace("_", "/")
    candidate += "=" * (-len(candidate) % 4)
    try:
        raw = base64.b64decode(candidate, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != SEED_BYTES:
        raise error(
            f"{what} is not a 32-byte Ed25519 seed",
            hint="give it as 64 hex characters or 44 base64 characters",
        )
    return raw


def import_seed(
    keys_dir: Path,
    name: str,
    seed: bytes,
    *,
    kind: str = KIND_MASTER,
    passphrases: PassphraseSource | None,
    force: bool = False,
    limits: KdfLimits | None = None,
) -> KeyFile:
    """Store a raw seed as key ``name``, encrypted under a new passphrase.

    ``passphrases`` None stores it unencrypted. Raises :class:`KeystoreError` if the key
    exists and ``force`` is false.
    """
    path = key_path(keys_dir, name)
    check_keys_dir(keys_dir)  # before any prompt or key derivation
    if not force:
        _refuse_existing(path, name)
    key = _seal_or_plain(seed, name=name, kind=kind, passphrases=passphrases, limits=limits)
    key = replace(key, path=path)
    write_key_file(path, key, overwrite=force)
    return key


def delete_key(keys_dir: Path, name: str) -> KeyFile | None:
    """Remove key ``name``; return what it was, or None if its file was unreadable.

    A damaged or non-private file can still be deleted. Raises :class:`KeystoreError` if
    there is no such key.
    """
    path = key_path(keys_dir, name)
    key: KeyFile | None
    try:
        key = load_key(keys_dir, name)
    except KeystoreError as exc:
        if exc.code == "unknown_key":
            raise
        key = None
    try:
        path.unlink()
    except FileNotFoundError as exc:
        raise KeystoreError(f"no key named {name!r} in {keys_dir}", code="unknown_key") from exc
    except OSError as exc:
        raise KeystoreError(f"cannot delete {path}: {exc.strerror}") from exc
    remove_stale_temps(path)  # a crashed write's copy of the key, if old enough
    return key


def change_passphrase(
    keys_dir: Path,
    name: str,
    *,
    old: PassphraseSource,
    new: PassphraseSource | None,
    limits: KdfLimits | None = None,
) -> KeyFile:
    """Re-encrypt key ``name`` under a new passphrase, atomically.

    The old passphrase is checked first (nothing else is asked if it is wrong); the new
    file, with a fresh salt and nonce, replaces the old one in one ``os.replace``, so an
    interruption at any point leaves the old file or the new one, never a broken one.
    ``new`` None stores the key unencrypted. Raises :class:`KeystoreError`.
    """
    key = load_key(keys_dir, name)
    assert key.path is not None
    passphrase = old.get(f"current passphrase for key {name}: ") if key.encrypted else b""
    seed = decrypt_seed(key, passphrase)
    updated = _seal_or_plain(
        seed,
        name=name,
        kind=key.kind,
        passphrases=new,
        limits=limits,
        created_at=key.created_at,
    )
    updated = replace(updated, path=key.path)
    write_key_file(key.path, updated, overwrite=True)
    return updated
