"""Security tests: print the figures they gathered (fuzz examples, kills, files scanned)."""

from __future__ import annotations

import pytest

from tests.security.helpers import FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per figure, when any security test ran."""
    if not FIGURES:
        return
    terminalreporter.section("omictl security figures")
    for key in sorted(FIGURES):
        terminalreporter.write_line(f"{key:<60} {FIGURES[key]:>8}")
