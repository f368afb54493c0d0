"""STYLE.md: imports flow one way, cli -> workflow -> transport/keystore -> core -> errors."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "omictl"

#: package part -> omictl parts it must never import (lazy imports included)
FORBIDDEN = {
    "core": {"cli", "workflow", "transport", "keystore", "keyref", "sandbox", "config", "fsutil"},
    "transport": {"cli", "workflow", "sandbox", "keystore", "keyref"},
    "keystore": {"cli", "workflow", "transport", "sandbox"},
    "keyref": {"cli", "workflow", "transport", "sandbox"},
    "workflow": {"cli", "sandbox"},
    "sandbox": {"cli", "workflow", "transport"},
    "errors": {
        "core",
        "cli",
        "workflow",
        "transport",
        "keystore",
        "keyref",
        "sandbox",
        "config",
        "fsutil",
    },
}
#: core is pure: no disk, network, environment or clock (STYLE.md)
CORE_BANNED_STDLIB = {
    "os",
    "pathlib",
    "time",
    "socket",
    "subprocess",
    "httpx",
    "datetime",
    "random",
    "secrets",
}


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _omictl_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found.update(names)
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if _part(p) in FORBIDDEN)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_flow_one_way(path: Path) -> None:
    """No module imports a layer above its own."""
    banned = FORBIDDEN[_part(path)]
    bad = {
        name
        for name in _omictl_imports(path)
        if name.startswith("omictl.") and name.split(".")[1] in banned
    }
    assert bad == set(), f"{path.relative_to(PACKAGE)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", sorted((PACKAGE / "core").glob("*.py")), ids=lambda p: p.name)
def test_core_is_pure(path: Path) -> None:
    """core/ imports nothing that touches disk, network, environment, clock or randomness."""
    bad = {name for name in _omictl_imports(path) if name.split(".")[0] in CORE_BANNED_STDLIB}
    assert bad == set(), f"{path.name} imports {sorted(bad)}"
