"""The one error tree of omictl.

Every expected failure is an :class:`OmictlError` subclass carrying the exit code of
``CLI.md`` ("Exit codes"), a stable machine-readable ``code`` and an optional ``hint``
(what the user can do about it). Library code raises these (translating foreign
exceptions with ``raise ... from exc``); the CLI catches them in exactly one place.
"""

from __future__ import annotations

import json
import re
from enum import IntEnum
from typing import Any

#: How much of a peer's value an error message quotes (messages end up in journals,
#: JSON results and terminals; a peer must not be able to make them megabytes long).
SHOWN_LIMIT = 80


def shown(value: object) -> str:
    """``repr(value)`` cut to :data:`SHOWN_LIMIT` characters: a peer's value in a message."""
    text = repr(value)
    return text if len(text) <= SHOWN_LIMIT else text[: SHOWN_LIMIT - 3] + "..."


def inert(text: str) -> str:
    """``text`` made inert for a terminal: control and format characters (ANSI escapes,
    OSC hyperlinks, bidi overrides, newlines) shown as ``\\uXXXX``.

    Servers' words (service types, endpoints, receipt ids, purge targets, problem details)
    reach the user's terminal through step messages, errors and listings; nothing a peer
    sends may move the cursor, recolour, hide or forge a line (STYLE.md 6). Rich markup is
    escaped separately (``rich.markup.escape``) where text goes through Rich.
    """
    if text.isprintable():  # the common case, without a Python loop over the characters
        return text
    return _escape_unprintable(text)


def inert_json(text: str) -> str:
    """JSON text (from ``json.dumps(..., ensure_ascii=False)``) with every character that is
    not printable written as a ``\\uXXXX`` escape: C0 and C1 controls, format characters
    (bidi overrides, zero-width), line separators, and lone surrogates (``"\\ud800"`` is
    valid JSON a peer may send, but no UTF-8). Such characters can only stand inside JSON
    strings, where an escape means the same character: the JSON value is unchanged, the
    text always encodes as UTF-8, and printed on a terminal it cannot move the cursor,
    recolour or reorder anything. Newlines between lines (indentation) are kept."""
    if text.isprintable():  # the common case: one line, nothing to escape
        return text
    return "\n".join(map(inert, text.split("\n")))


#: C0 controls but tab and newline, DEL, and C1 controls: what drives a terminal (ESC and
#: CSI sequences, OSC hyperlinks and titles, BEL, the 8-bit CSI ``\x9b``).
_TERMINAL_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    """``text`` with every terminal control character (:data:`_TERMINAL_CONTROLS`) shown
    as ``\\uXXXX``; tabs, newlines and every printable or format character stay as they
    are. The last step of everything omictl prints (defence in depth: a caller that forgot
    :func:`inert` on a peer's word still cannot move the cursor, recolour, retitle or
    hyperlink), mild enough for data such as ``config get`` to come out unchanged. Peers'
    words still go through :func:`inert` first, which also escapes newlines and bidi
    overrides: only that stops a peer's value from starting a line of its own."""
    if text.isprintable():  # the common case
        return text
    return _TERMINAL_CONTROLS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _escape_unprintable(text: str) -> str:
    """Each character of ``text`` that is not printable as a ``\\uXXXX`` escape, astral ones
    as a surrogate pair (as JSON writes them, so the escape is never ambiguous)."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch.isprintable():
            out.append(ch)
        elif code > 0xFFFF:  # JSON escapes astral characters as a surrogate pair
            code -= 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
        else:
            out.append(f"\\u{code:04x}")
    return "".join(out)


def json_text(value: Any, **dumps: Any) -> str:
    """``json.dumps(value, ensure_ascii=False, **dumps)`` made :func:`inert_json`: readable
    UTF-8, but no character a peer sent can break a write (lone surrogates) or a terminal
    (controls, bidi overrides). For everything omictl writes as JSON, to files or streams."""
    return inert_json(json.dumps(value, ensure_ascii=False, **dumps))


#: One encoder for the compact, key-sorted form (``json.dumps`` with options builds a new
#: encoder per call: 4 µs of a 13 µs receipt, and most of a short string's cost).
COMPACT_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def compact_json_text(value: Any) -> str:
    """:func:`json_text` of ``value`` on one line, keys sorted: journals, compact files."""
    return inert_json(COMPACT_ENCODER.encode(value))


def short_message(exc: BaseException, limit: int = 200) -> str:
    """``str(exc)`` (or its type name) cut to ``limit`` characters, for one-line errors."""
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ExitCode(IntEnum):
    """Process exit statuses, as CLI.md fixes them."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    KEY = 3
    REJECTED = 4
    VERIFICATION = 5
    UNAVAILABLE = 6
    ABORTED = 7
    PARTIAL = 8
    #: stopped by SIGINT or SIGTERM (128 + SIGINT, as shells report a Ctrl-C)
    INTERRUPTED = 130


class OmictlError(Exception):
    """Base of every expected omictl failure.

    ``message`` is one line saying what is wrong; ``hint`` says what to do about it.
    ``details`` holds extra machine-readable facts for ``-o json`` error objects.
    """

    exit_code: ExitCode = ExitCode.INTERNAL
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code is not None:
            self.code = code
        self.details: dict[str, Any] = dict(details or {})

    def to_json(self) -> dict[str, Any]:
        """The error as the JSON object printed with ``-o json``."""
        out: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "exit_code": int(self.exit_code),
        }
        if self.hint:
            out["hint"] = self.hint
        if self.details:
            out["details"] = dict(self.details)  # a copy: callers may add to either
        return out


class UsageError(OmictlError):
    """Bad arguments or input files: nothing was attempted."""

    exit_code = ExitCode.USAGE
    code = "usage"


def refused_path(exc: BaseException) -> UsageError | None:
    """The usage error for an OSError about a path the user's environment gives omictl (a
    name too long for the filesystem, a file where a folder should be, a folder where a
    file should be, a loop, no permission, a read-only filesystem), whatever code path met
    it; ``None`` for any other exception, EIO or EMFILE included (those stay bugs)."""
    import errno

    if not isinstance(exc, OSError) or exc.filename is None or not exc.strerror:
        return None
    if exc.errno not in (
        errno.ENAMETOOLONG,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ELOOP,
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
    ):
        return None
    return UsageError(
        f"cannot use {exc.filename}: {exc.strerror}",
        hint="check the path given with --home, --out or the command's arguments",
    )


class KeystoreError(OmictlError):
    """A key or keystore problem: missing key, wrong passphrase, unsafe permissions."""

    exit_code = ExitCode.KEY
    code = "keystore"


class RemoteRejected(OmictlError):
    """A remote side answered with a problem+json 4xx (PROTOCOL.md section 5)."""

    exit_code = ExitCode.REJECTED
    code = "remote_rejected"

    def __init__(
        self,
        message: str,
        *,
        status: int,
        problem_type: str,
        title: str = "",
        detail: str = "",
        problem: dict[str, Any] | None = None,
        hint: str | None = None,
    ) -> None:
        short = problem_type.removeprefix("urn:omi:error:") if problem_type else "rejected"
        super().__init__(
            message,
            hint=hint,
            code=short,
            details={"status": status, "type": problem_type, "title": title, "detail": detail},
        )
        self.status = status
        self.problem_type = problem_type
        self.title = title
        self.detail = detail
        self.problem: dict[str, Any] = dict(problem or {})


class VerificationError(OmictlError):
    """A signature, id or answer did not verify: nothing that depends on it was done."""

    exit_code = ExitCode.VERIFICATION
    code = "verification_failed"


class ProtocolError(VerificationError):
    """A peer's answer broke the wire contract (not JSON, too large, wrong shape)."""

    code = "protocol_error"


class RemoteUnavailable(OmictlError):
    """Timeouts, connection errors, 5xx after retries."""

    exit_code = ExitCode.UNAVAILABLE
    code = "remote_unavailable"


class Aborted(OmictlError):
    """The user declined at the confirmation prompt."""

    exit_code = ExitCode.ABORTED
    code = "aborted"


class Interrupted(Aborted):
    """How a stop by SIGINT (Ctrl-C) or SIGTERM (a cancelled CI job, ``timeout``,
    Kubernetes) is reported: exit 130; a journal resumes any decommission it cut short.
    Never raised while the work runs (that is :class:`SignalInterrupt`)."""

    exit_code = ExitCode.INTERRUPTED
    code = "interrupted"

    #: the hint, unless the interrupted command set another (``RESUME_HINT_ATTR``)
    RESUME_HINT = "re-run the same command (an interrupted decommission resumes from its journal)"
    #: set on the interrupt by a command whose re-run does not resume (``omictl demo``)
    RESUME_HINT_ATTR = "omictl_resume_hint"

    @classmethod
    def of(cls, interrupt: KeyboardInterrupt, *, hint: str | None = None) -> Interrupted:
        """The report of ``interrupt``: a :class:`SignalInterrupt` names its signal; a plain
        KeyboardInterrupt is Python's own Ctrl-C (SIGINT). The hint is the one the
        interrupted command set, else ``hint``, else :data:`RESUME_HINT`."""
        return cls.by(
            getattr(interrupt, "signal_name", "SIGINT"),
            hint=getattr(interrupt, cls.RESUME_HINT_ATTR, None) or hint,
        )

    @classmethod
    def by(cls, signal_name: str, *, hint: str | None = None) -> Interrupted:
        return cls(f"interrupted ({signal_name})", hint=hint or cls.RESUME_HINT)


class SignalInterrupt(KeyboardInterrupt):
    """What a SIGINT or SIGTERM raises in the main thread while a command runs. A
    :class:`KeyboardInterrupt`, like Python's own Ctrl-C, so that no ``except Exception``
    or ``except OmictlError`` on the way takes it for a failure of its own (a bundle write,
    a listing); the CLI reports it as :class:`Interrupted`. ``partial`` is the result of
    the decommission it cut short, as JSON, when there was one."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.partial: dict[str, Any] | None = None
        #: set by whoever turned it into an answer of its own (a "no" at a prompt): the
        #: CLI then reports that answer, not an interruption
        self.answered = False


class PartiallyDone(OmictlError):
    """The provider terminated but the registry has not revoked yet; re-run to resume."""

    exit_code = ExitCode.PARTIAL
    code = "partially_done"
