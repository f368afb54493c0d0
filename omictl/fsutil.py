"""Crash-safe file writes: the file on disk is always the old or the new content.

A new file is created next to the target with ``O_CREAT | O_EXCL`` and its final mode
(never written and then chmod-ed), written, fsync-ed, then ``os.replace``-d over the target,
and the folder is fsync-ed so the rename itself survives a power cut.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from omictl.errors import OmictlError

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def ensure_private_dir(path: Path, *, error: type[OmictlError] = OmictlError) -> Path:
    """Create ``path`` (and parents) with mode 0700 if missing; return it.

    An existing folder is left as it is (its mode is the user's choice); a non-folder at
    ``path`` raises ``error``.
    """
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
) -> None:
    """Replace ``path`` with ``content`` atomically; the new file has ``mode`` from birth.

    Raises ``error`` on any OS failure, after removing the temporary file; the target is
    then untouched.
    """
    import secrets

    ensure_private_dir(path.parent, error=error)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    except OSError as exc:
        raise error(f"cannot write {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise error(f"cannot write {path}: {exc.strerror}") from exc
        raise
    fsync_dir(path.parent)


def atomic_write_json(
    path: Path,
    value: Any,
    *,
    mode: int = PRIVATE_FILE_MODE,
    error: type[OmictlError] = OmictlError,
) -> None:
    """:func:`atomic_write_bytes` of ``value`` as indented, key-sorted JSON plus a newline."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode, error=error)


def fsync_dir(path: Path) -> None:
    """fsync a folder so a rename in it is durable (best effort where unsupported)."""
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
