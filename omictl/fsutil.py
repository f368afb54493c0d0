"""Crash-safe file writes: the file on disk is always the old or the new content.

A new file is created next to the target with ``O_CREAT | O_EXCL`` and its final mode
(never written and then chmod-ed), written, fsync-ed, then ``os.replace``-d over the target,
and the folder is fsync-ed so the rename itself survives a power cut.

A writer killed mid-write (SIGKILL, power cut) leaves its temporary file
``.<name>.<12 hex>.tmp`` behind; the target itself is untouched. Such files never break a
later write (each write picks a fresh random name), but a key file's would keep a copy of
the (sealed) key after ``keys delete`` or ``keys passwd``, so writers of small, sensitive
files pass ``sweep_stale=True`` to remove their target's temporary files older than
:data:`STALE_TEMP_AGE_S`.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omictl.errors import (
    COMPACT_ENCODER,
    OmictlError,
    UsageError,
    compact_json_text,
    inert_json,
    json_text,
)

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
#: A temporary file of an atomic write untouched this long was left by a crashed writer: a
#: write in progress takes milliseconds.
STALE_TEMP_AGE_S = 15 * 60
_TEMP_TAIL_RE = re.compile(r"[0-9a-f]{12}\.tmp")


def ensure_private_dir(path: Path, *, error: type[OmictlError] = OmictlError) -> Path:
    """Create ``path`` (and parents) with mode 0700 if missing; return it.

    An existing folder is left as it is (its mode is the user's choice); a non-folder at
    ``path`` raises ``error``.
    """
    if os.path.isdir(path):  # the common case: one stat, no failed mkdir
        return path
    try:
        path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise error(f"{path} exists and is not a folder") from exc
    except OSError as exc:
        raise error(f"cannot create folder {path}: {exc.strerror}") from exc
    return path


def atomic_write_bytes(
    path: Path,
    content: bytes,
    *,
    mode: int = PRIVATE_FILE_MODE,
    error: type[OmictlError] = OmictlError,
    sweep_stale: bool = False,
) -> None:
    """Replace ``path`` with ``content`` atomically; the new file has ``mode`` from birth.

    ``sweep_stale`` first removes temporary files of ``path`` that crashed writers left
    (:func:`remove_stale_temps`); it lists the folder, so it is for files in small folders.
    Raises ``error`` on any OS failure, after removing the temporary file; the target is
    then untouched.
    """
    import secrets

    ensure_private_dir(path.parent, error=error)
    if sweep_stale:
        remove_stale_temps(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    except OSError as exc:
        raise _unwritable(error, path, exc) from exc
    try:
        try:
            write_all(fd, content)  # os.write, not a file object: no fstat, isatty or seek
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise _unwritable(error, path, exc) from exc
        raise
    fsync_dir(path.parent)


def _unwritable(error: type[OmictlError], path: Path, exc: OSError) -> OmictlError:
    """``cannot write PATH: <reason>``, with a hint that fits the reason; whatever was at
    ``path`` before is untouched (the write goes to a temporary file first)."""
    import errno

    folder = path.parent
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what = f"free space in {folder}"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        what = f"fix the permissions of {folder} (or choose another place)"
    elif exc.errno == errno.EISDIR:
        what = f"{path} is a folder: give a file name"
    else:
        what = f"check {folder}"
    return error(
        f"cannot write {path}: {exc.strerror}",
        hint=f"{what}, then re-run; nothing at {path.name} was replaced",
    )


@contextlib.contextmanager
def updating(path: Path, *, error: type[OmictlError] = OmictlError) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<path>.lock`` (created 0600 beside ``path``) for a
    read-modify-write of ``path``: across processes (and across threads, each ``open``
    being a lock of its own), none of two writers at once loses the other's change.
    Raises ``error`` if the lock file cannot be opened."""
    import fcntl

    ensure_private_dir(path.parent, error=error)
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise error(f"cannot open {lock_path}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def refuse_missing_folder(path: Path) -> None:
    """An output file's folder must exist (an export never makes folders), and the output
    must not be a folder itself (``--out ''`` is the current folder): raises
    :class:`~omictl.errors.UsageError` otherwise."""
    if path.is_dir():
        raise UsageError(f"--out {path} is a folder", hint="name a file, or - for stdout")
    if path.parent != Path() and not path.parent.is_dir():
        raise UsageError(
            f"folder {path.parent} does not exist", hint="create it first, or choose another file"
        )


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def atomic_write_json(
    path: Path,
    value: Any,
    *,
    mode: int = PRIVATE_FILE_MODE,
    error: type[OmictlError] = OmictlError,
    sweep_stale: bool = False,
    compact: bool = False,
    members: bool = False,
) -> None:
    """:func:`atomic_write_bytes` of ``value`` as key-sorted JSON plus a newline.

    Indented by default, for small files people read; ``compact`` writes one line;
    ``members`` (an object with string keys) starts each top-level member on its own line,
    its value on that line. Python's C encoder only runs without ``indent`` (on an evidence
    bundle: 120 µs indented, 40 µs as members, 30 µs compact), so hot paths use ``compact``
    or ``members``. Text is UTF-8, with characters that are not printable (controls, bidi
    overrides, lone surrogates a peer may send) as ``\\uXXXX`` escapes
    (:func:`~omictl.errors.inert_json`): the same value once parsed.
    """
    if members and isinstance(value, dict):
        text = json_members(value)
    elif compact or members:
        text = compact_json_text(value)
    else:
        text = json_text(value, indent=2, sort_keys=True)
    data = (text + "\n").encode("utf-8")
    atomic_write_bytes(path, data, mode=mode, error=error, sweep_stale=sweep_stale)


def json_members(value: dict[str, Any]) -> str:
    """``value`` as key-sorted JSON, each top-level member starting a line (no final
    newline), made :func:`~omictl.errors.inert_json`. Raises ``TypeError`` for a key that is
    not a string."""
    if not value:
        return "{}"
    encode = COMPACT_ENCODER.encode  # shared: encode keeps no state, so threads share it
    for key in value:
        if not isinstance(key, str):
            raise TypeError(f"JSON object keys must be strings, not {type(key).__name__}")
    lines = (f"  {encode(key)}: {encode(value[key])}" for key in sorted(value))
    return inert_json("{\n" + ",\n".join(lines) + "\n}")


def remove_stale_temps(
    path: Path, *, older_than: float = STALE_TEMP_AGE_S, now: float | None = None
) -> int:
    """Remove the temporary files crashed atomic writes of ``path`` left; return how many.

    Only regular files named exactly as :func:`atomic_write_bytes` names them
    (``.<name>.<12 hex>.tmp``, never a symlink) and not modified for ``older_than`` seconds
    are removed, so a write in progress is never disturbed (and should a writer stopped for
    longer resume, its rename fails and the target stays as it was). Best effort: never
    raises.
    """
    prefix = f".{path.name}."
    cutoff = (time.time() if now is None else now) - older_than
    removed = 0
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(prefix) or not _TEMP_TAIL_RE.fullmatch(
            entry.name[len(prefix) :]
        ):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except OSError:
            continue
    return removed


def fsync_dir(path: Path) -> None:
    """fsync a folder so a rename or a creation in it is durable (best effort where
    unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_private(path: Path) -> bool:
    """True when neither group nor others may read or write ``path``."""
    return not (path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))


def read_capped(path: Path, *, limit: int, error: type[OmictlError] = OmictlError) -> bytes:
    """Read at most ``limit`` bytes of ``path``; a larger file raises ``error``."""
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError as exc:
        raise error(f"{path} does not exist") from exc
    except IsADirectoryError as exc:
        raise error(f"{path} is a folder, not a file") from exc
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror}") from exc
    if len(data) > limit:
        raise error(f"{path} is larger than {limit} bytes")
    return data
