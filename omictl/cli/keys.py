"""``omictl keys``: the local keystore."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Manage master and guardian keys in the local encrypted keystore.", no_args_is_help=True
)
