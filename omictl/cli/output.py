"""Rendering: stdout is data, stderr is talk (STYLE.md convention 6).

With ``-o json`` stdout receives exactly one JSON document; everything else (progress,
prompts, warnings) goes to stderr. Text from servers is printed with Rich markup off.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape

from omictl.errors import OmictlError


def _no_color() -> bool:
    return "NO_COLOR" in os.environ


class Output:
    """One invocation's output channels."""

    def __init__(self, *, json_mode: bool, debug: bool = False) -> None:
        self.json_mode = json_mode
        self.debug = debug
        self.err = Console(
            file=sys.stderr,
            no_color=_no_color(),
            highlight=False,
            soft_wrap=True,
        )
        self.out = Console(
            file=sys.stdout,
            no_color=_no_color(),
            highlight=False,
            soft_wrap=True,
        )

    # ---- data (stdout)
    def emit_json(self, payload: Any) -> None:
        """Write ``payload`` as the one JSON document on stdout."""
        write_json(payload, sys.stdout)

    def line(self, text: str = "", *, style: str | None = None) -> None:
        """Print a plain data line on stdout (no markup interpretation)."""
        self.out.print(text, style=style, markup=False, highlight=False)

    def result(self, payload: Any, text: str) -> None:
        """JSON payload with ``-o json``, else ``text`` on stdout."""
        if self.json_mode:
            self.emit_json(payload)
        else:
            self.line(text)

    # ---- talk (stderr)
    def info(self, text: str, *, markup: bool = False) -> None:
        """A progress or information line on stderr."""
        self.err.print(text, markup=markup, highlight=False)

    def warn(self, text: str) -> None:
        """A warning on stderr."""
        self.err.print(f"[yellow]warning:[/yellow] {escape(text)}")

    def success(self, text: str) -> None:
        """A success line on stderr."""
        self.err.print(f"[green]✓[/green] {escape(text)}")


def write_json(payload: Any, stream: TextIO) -> None:
    """Write one JSON document and a newline."""
    stream.write(json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=False) + "\n")
    stream.flush()


def render_error(exc: OmictlError, *, json_mode: bool) -> None:
    """Print an expected error: ``omictl: error: ...`` + ``hint:`` on stderr, or a JSON
    error object on stdout with ``-o json`` (the one-line message still goes to stderr)."""
    if json_mode:
        write_json({"error": exc.to_json()}, sys.stdout)
    console = Console(file=sys.stderr, no_color=_no_color(), highlight=False, soft_wrap=True)
    console.print(f"[red]omictl: error:[/red] {escape(exc.message)}")
    if exc.hint:
        console.print(f"hint: {escape(exc.hint)}")
