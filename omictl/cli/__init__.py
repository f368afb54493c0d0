"""The command-line layer (Typer). ``main`` is the console-script entry point."""

from __future__ import annotations

import sys


def main() -> None:
    """Entry point. ``omictl --version`` is answered before Typer is even imported."""
    if sys.argv[1:] == ["--version"]:
        from omictl import __version__

        print(f"omictl {__version__}")
        sys.exit(0)
    from omictl.cli.app import main as app_main

    app_main()
