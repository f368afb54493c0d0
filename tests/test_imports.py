"""Import hygiene: fast paths stay free of heavy modules, and the layers stay one-way."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "omictl"


def modules_after(argv: list[str]) -> set[str]:
    """Run ``omictl.cli.app.run(argv)`` in a fresh interpreter; return sys.modules' names."""
    code = (
        "import sys, json\n"
        "from omictl.cli.app import run\n"
        f"code = run({argv!r})\n"
        "sys.stdout.flush()\n"
        "sys.stderr.write('\\nMODULES=' + json.dumps(sorted(sys.modules)) + '\\n')\n"
        "sys.stderr.write('CODE=%d\\n' % code)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMICTL_")}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    lines = proc.stderr.splitlines()
    assert "CODE=0" in lines, proc.stderr
    marker = next(line for line in lines if line.startswith("MODULES="))
    return set(json.loads(marker[len("MODULES=") :]))


def test_version_does_not_import_httpx() -> None:
    """`omictl --version` loads neither httpx nor libsodium."""
    loaded = modules_after(["--version"])
    assert "httpx" not in loaded
    assert "nacl" not in loaded


def test_keys_list_does_not_import_httpx(tmp_path: Path) -> None:
    """`omictl keys list` loads neither httpx nor libsodium (public keys are stored in clear)."""
    loaded = modules_after(["--home", str(tmp_path), "keys", "list"])
    assert "httpx" not in loaded
    assert "nacl" not in loaded


def _imports(path: Path) -> set[str]:
    """Every module name ``path`` imports (at any depth, lazy imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted((PACKAGE / "cli").glob("*.py")), ids=lambda p: p.name)
def test_cli_never_imports_crypto_or_http(path: Path) -> None:
    """STYLE.md: `cli` never imports nacl, rfc8785 or httpx itself."""
    banned = {"nacl", "rfc8785", "httpx"}
    found = {name for name in _imports(path) if name.split(".")[0] in banned}
    assert found == set(), f"{path.name} imports {sorted(found)}"


@pytest.mark.parametrize("path", sorted((PACKAGE / "core").glob("*.py")), ids=lambda p: p.name)
def test_core_does_no_io_imports(path: Path) -> None:
    """STYLE.md: `core` is pure: no httpx, no omictl I/O layers."""
    banned = {"httpx", "omictl.keystore", "omictl.transport", "omictl.cli", "omictl.workflow"}
    found = {
        name
        for name in _imports(path)
        if name.split(".")[0] == "httpx" or any(name.startswith(b) for b in banned)
    }
    assert found == set(), f"{path.name} imports {sorted(found)}"
