"""Small helpers shared by command modules: key loading, prompts, TTY checks."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from omictl.cli.app import Invocation
from omictl.errors import SignalInterrupt, UsageError

if TYPE_CHECKING:
    from omictl.core.envelope import Signer


def stdin_is_tty() -> bool:
    """True when a person can answer a prompt on stdin."""
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def ask(prompt: str) -> str | None:
    """Prompt on stderr and read one line from stdin; None on end of input."""
    sys.stderr.write(prompt)
    sys.stderr.flush()
    line = sys.stdin.readline()
    if not line:
        return None
    return line.rstrip("\r\n")


def ask_consent(prompt: str) -> str | None:
    """:func:`ask` for a confirmation prompt: Ctrl-C (or SIGTERM) there is a "no", as end
    of input is. Nothing has been sent at a prompt, so the run ends declined (exit 7, as
    CLI.md says of an abort at the confirmation prompt), not interrupted (exit 130, whose
    hint speaks of resuming)."""
    try:
        return ask(prompt)
    except KeyboardInterrupt as exc:
        if isinstance(exc, SignalInterrupt):
            exc.answered = True  # reported as the decline it became (cli.app.run)
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write("\n")  # off the prompt's line
        return None


def load_key(inv: Invocation, ref: str | None, passphrase_file: Path | None) -> Signer:
    """Unlock the signing key ``ref`` (default: settings' key), once.

    Raises :class:`~omictl.errors.KeystoreError` (exit 3) when it cannot.
    """
    from omictl.keyref import load_signer
    from omictl.keystore import PassphraseSource

    return load_signer(
        ref or default_key_ref(inv),
        keys_dir=inv.settings.paths.keys_dir,
        passphrases=PassphraseSource(passphrase_file=passphrase_file),
        warn=inv.out.warn,
    )


def default_key_ref(inv: Invocation) -> str:
    """The key reference the settings give (``OMICTL_KEY``, the profile's ``key``, else
    ``master``), its form checked here, when a command needs it: a malformed one is exit 2
    naming where it came from. Checked at use, not when settings resolve, so an explicit
    ``--key`` or a command that needs no key is never stopped by it."""
    from omictl.config import key_ref_problem

    problem = key_ref_problem(inv.settings)
    if problem is not None:
        message, hint = problem
        raise UsageError(message, hint=hint)
    return inv.settings.key


class Caught:
    """What :func:`interrupt_on_signals` saw: the interrupt it raised, if any."""

    def __init__(self) -> None:
        self.interrupt: SignalInterrupt | None = None


@contextlib.contextmanager
def interrupt_on_signals() -> Iterator[Caught]:
    """While the block runs, SIGINT and SIGTERM raise :class:`~omictl.errors.SignalInterrupt`
    in the main thread (a KeyboardInterrupt: no ``except Exception`` takes it), and the
    yielded :class:`Caught` keeps it: Typer turns any KeyboardInterrupt into a silent exit
    130, so the caller reports it from there (one line on stderr, the JSON error document
    with ``-o json``; exit 130). Before, SIGTERM killed the process with no word (exit
    143). A signal the parent ignores (``nohup``, a background job) stays ignored; a batch
    installs its own handlers (:func:`stop_on_signals`) while its services run."""
    import signal

    caught = Caught()
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if caught.interrupt is not None:
            return  # already stopping (GitHub sends SIGINT, then SIGTERM): let it finish
        caught.interrupt = SignalInterrupt("SIGTERM" if signum == signal.SIGTERM else "SIGINT")
        raise caught.interrupt

    with _handling(handler, keep_ignored=True):
        yield caught


@contextlib.contextmanager
def stop_on_signals(
    *,
    on_stop: Callable[[], None] | None = None,
    on_again: Callable[[int], None] | None = None,
) -> Iterator[threading.Event]:
    """An event set by the first SIGINT or SIGTERM (``on_stop`` runs then); a later one
    calls ``on_again(signum)`` (which may end the process). The previous handlers come
    back on exit. Main thread only (``signal.signal``). The callbacks only report: a
    failure in them (a closed stderr) is ignored."""

    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        again = stop.is_set()
        stop.set()
        with contextlib.suppress(Exception):
            if not again and on_stop is not None:
                on_stop()
            elif again and on_again is not None:
                on_again(signum)

    with _handling(handler, keep_ignored=False):
        yield stop


@contextlib.contextmanager
def _handling(
    handler: Callable[[int, FrameType | None], None], *, keep_ignored: bool
) -> Iterator[None]:
    """``handler`` for SIGINT and SIGTERM while the block runs, the previous handlers after
    it; with ``keep_ignored``, a signal the parent ignores stays ignored."""
    import signal

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        if not (keep_ignored and signal.getsignal(sig) is signal.SIG_IGN):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
