"""Rendering: stdout is data, stderr is talk (STYLE.md convention 6).

With ``-o json`` stdout receives exactly one JSON document; everything else (progress,
prompts, warnings) goes to stderr. Text from servers is printed with Rich markup off.
"""

from __future__ import annotations

import os
import sys
from typing import IO, TYPE_CHECKING, Any, TextIO

from omictl.errors import OmictlError, inert, json_text, terminal_safe

if TYPE_CHECKING:
    from rich.console import Console


def _no_color() -> bool:
    """``NO_COLOR`` set to anything but the empty string (no-color.org)."""
    return bool(os.environ.get("NO_COLOR"))


def _styled() -> bool:
    """Colour, styles and live progress at all: CLI.md turns colour and spinners off
    under ``NO_COLOR`` and when stdout is not a terminal (output piped or redirected),
    whatever stderr is. A non-empty ``FORCE_COLOR`` (force-color.org) turns them back on
    for a piped stdout; ``NO_COLOR`` wins over it."""
    if _no_color():
        return False
    return bool(os.environ.get("FORCE_COLOR")) or is_terminal(sys.stdout)


class Output:
    """One invocation's output channels."""

    def __init__(self, *, json_mode: bool, debug: bool = False) -> None:
        self.json_mode = json_mode
        self.debug = debug
        self._err: Console | None = None
        self._out: Console | None = None

    # Rich is imported on first use, not at start-up: `omictl --version` never needs it.
    @property
    def err(self) -> Console:
        """The Rich console on stderr (talk)."""
        if self._err is None:
            self._err = _console(sys.stderr)
        return self._err

    @property
    def out(self) -> Console:
        """The Rich console on stdout (data)."""
        if self._out is None:
            self._out = _console(sys.stdout)
        return self._out

    def live(self) -> bool:
        """Whether progress on stderr may be live (a bar, "… step" lines) and styled:
        stderr is a terminal, and neither ``NO_COLOR`` nor a non-terminal stdout turns
        that off (:func:`_styled`)."""
        return _styled() and self.err_is_terminal()

    def err_is_terminal(self) -> bool:
        """Whether stderr is a terminal, as Rich decides; a plain pipe or file is told
        without importing Rich (about 50 ms of a CI run's start)."""
        if (
            self._err is None
            and not is_terminal(sys.stderr)
            and "FORCE_COLOR" not in os.environ  # Rich's overrides (force-color.org)
            and os.environ.get("TTY_COMPATIBLE", "") != "1"
        ):
            return False
        return self.err.is_terminal

    # ---- data (stdout)
    def emit_json(self, payload: Any) -> None:
        """Write ``payload`` as the one JSON document on stdout."""
        write_json(payload, sys.stdout)

    def line(self, text: str = "") -> None:
        """Print a plain data line on stdout: no markup, no highlighting, no wrapping."""
        write_data(terminal_safe(text) + "\n", sys.stdout)

    def result(self, payload: Any, text: str) -> None:
        """JSON payload with ``-o json``, else ``text`` on stdout."""
        if self.json_mode:
            self.emit_json(payload)
        else:
            self.line(text)

    # ---- talk (stderr): a reader that has gone (a broken pipe) silences it, stops nothing
    def info(self, text: str, *, markup: bool = False) -> None:
        """A progress or information line on stderr (Rich markup only when asked)."""
        try:
            if markup:
                self.err.print(text, markup=True, highlight=False)
            else:
                # one write, also when stderr is unbuffered
                sys.stderr.write(terminal_safe(text) + "\n")
                sys.stderr.flush()
        except BrokenPipeError:
            to_devnull(sys.stderr)

    def warn(self, text: str) -> None:
        """A warning on stderr."""
        from rich.markup import escape

        self.info(f"[yellow]warning:[/yellow] {escape(inert(text))}", markup=True)

    def success(self, text: str) -> None:
        """A success line on stderr."""
        from rich.markup import escape

        self.info(f"[green]✓[/green] {escape(inert(text))}", markup=True)


_console_class: type[Console] | None = None


def _console(stream: TextIO) -> Console:
    global _console_class
    if _console_class is None:
        from rich.console import Console

        class QuietOnBrokenPipe(Console):
            """Rich's own answer to a broken pipe is exit 1 (after pointing *stdout* at
            /dev/null); here the stream whose reader went away just goes quiet, and the
            run carries on (Rich's documented hook)."""

            def on_broken_pipe(self) -> None:
                self.quiet = True
                to_devnull(self.file)

        _console_class = QuietOnBrokenPipe
    return _console_class(
        file=stream,
        no_color=_no_color(),
        # no colour and no bold or dim either (Rich's no_color keeps those)
        color_system="auto" if _styled() else None,
        highlight=False,
        soft_wrap=True,
    )


#: Whether this process has written its JSON document (``-o json``: exactly one). An error
#: that comes after it (a late signal) is then told on stderr only.
document_written = False


def write_json(payload: Any, stream: TextIO) -> None:
    """Write one JSON document and a newline: indented for a terminal, on one line when
    piped or redirected (as ``gh`` does; a batch's result list is megabytes, and only the
    compact form runs Python's C encoder)."""
    global document_written
    if is_terminal(stream):
        text = json_text(payload, indent=2)
    else:
        text = json_text(payload, separators=(",", ":"))
    document_written = True
    write_data(text + "\n", stream)


def write_data(text: str, stream: TextIO) -> None:
    """Write ``text`` to stdout (``stream``). If its reader has gone (``omictl ... | head``:
    a broken pipe), the rest of the output goes to ``/dev/null`` and the run carries on: the
    work it reports is done, and the exit status still says how it went."""
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        to_devnull(stream)


def to_devnull(stream: IO[str]) -> None:
    """Point ``stream``'s descriptor at ``/dev/null`` (its reader has gone): later writes,
    and the flush at exit, succeed and go nowhere."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, stream.fileno())
        os.close(null)
    except (OSError, ValueError, AttributeError):  # pragma: no cover - no real descriptor
        pass


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or exotic stream
        return False


def render_error(exc: OmictlError, *, json_mode: bool) -> None:
    """Print an expected error: ``omictl: error: ...`` + ``hint:`` on stderr, or a JSON
    error object on stdout with ``-o json`` (the one-line message still goes to stderr)."""
    if json_mode and not document_written:
        write_json({"error": exc.to_json()}, sys.stdout)
    from rich.markup import escape

    console = _console(sys.stderr)
    try:
        console.print(f"[red]omictl: error:[/red] {escape(inert(exc.message))}")
        if exc.hint:
            console.print(f"hint: {escape(inert(exc.hint))}")
    except BrokenPipeError:
        to_devnull(sys.stderr)
