"""`omictl sandbox`: wiring, output and a clean stop (the real CLI in a subprocess)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from omictl.core.envelope import Signer, key_id

OMICTL_VARS = (
    "OMICTL_HOME",
    "OMICTL_PROFILE",
    "OMICTL_REGISTRY",
    "OMICTL_KEY",
    "OMICTL_OUTPUT",
    "OMICTL_PASSPHRASE",
)


@pytest.fixture
def seed() -> bytes:
    """A raw master seed handed to the CLI through env:SANDBOX_TEST_SEED."""
    return os.urandom(32)


def _env(seed: bytes) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OMICTL_VARS}
    env["SANDBOX_TEST_SEED"] = seed.hex()
    env["NO_COLOR"] = "1"
    return env


def _start(tmp_path: Path, seed: bytes, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "omictl", "--home", str(tmp_path / "home"), *args],
        env=_env(seed),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def stop_all() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes started by a test, killed at the end if still running."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)


def _read_json_document(process: subprocess.Popen[str]) -> Any:
    """The document a running sandbox prints: one line, since stdout is a pipe."""
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, f"omictl exited early: {process.wait()} {process.stderr.read()}"  # type: ignore[union-attr]
    return json.loads(line)


def test_json_output_then_clean_stop_on_sigint(
    tmp_path: Path, seed: bytes, stop_all: list[subprocess.Popen[str]]
) -> None:
    """-o json prints one document with URLs and ids; Ctrl-C stops with exit 0."""
    process = _start(
        tmp_path,
        seed,
        "-o",
        "json",
        "sandbox",
        "--key",
        "env:SANDBOX_TEST_SEED",
        "--port",
        "0",
        "--services",
        "2",
    )
    stop_all.append(process)
    doc = _read_json_document(process)
    master = Signer(seed)
    assert doc["app_id"] == f"org.omiappreg.sandbox.demo.{master.key_id[:12]}"
    assert doc["registry_url"].startswith("http://127.0.0.1:")
    assert doc["export"] == f"export OMICTL_REGISTRY={doc['registry_url']}"
    assert [s["service_id"] for s in doc["services"]] == ["cms-article-1", "storage-blob-2"]
    assert doc["state"] is None
    with httpx.Client(trust_env=False, timeout=5) as http:
        info = http.get(doc["registry_url"] + "/v1/registry").json()
        app = http.get(f"{doc['registry_url']}/v1/apps/{doc['app_id']}").json()
    assert key_id(bytes.fromhex(info["public_key"])) == doc["registry_key_id"]
    assert app["master_public_key"] == master.public_key.hex()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=10)
    assert process.returncode == 0
    assert out == ""
    assert "sandbox stopped" in err


def test_text_output_lists_services_and_export_line(
    tmp_path: Path, seed: bytes, stop_all: list[subprocess.Popen[str]]
) -> None:
    """Text mode prints registry, AppID, each service endpoint and the export line; SIGTERM
    is a clean stop too."""
    state = tmp_path / "sb.db"
    process = _start(
        tmp_path,
        seed,
        "sandbox",
        "--key",
        "env:SANDBOX_TEST_SEED",
        "--port",
        "0",
        "--state",
        str(state),
    )
    stop_all.append(process)
    assert process.stdout is not None
    lines: list[str] = []
    while not (lines and lines[-1].startswith("export ")):
        lines.append(process.stdout.readline().rstrip("\n"))
    registry = lines[0].split()[1]
    assert lines[1] == f"app_id    org.omiappreg.sandbox.demo.{Signer(seed).key_id[:12]}"
    assert [line.split()[0] for line in lines[2:5]] == [
        "cms-article-1",
        "storage-blob-2",
        "search-index-3",
    ]
    assert lines[2].endswith(f"{registry}/providers/cms-article-1/api/v1")
    assert lines[-1] == f"export OMICTL_REGISTRY={registry}"
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=10)
    assert process.returncode == 0
    assert state.exists()


def test_non_loopback_host_exits_2(tmp_path: Path, seed: bytes) -> None:
    """--host 0.0.0.0 is refused before anything listens (exit 2)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "omictl",
            "--home",
            str(tmp_path / "home"),
            "sandbox",
            "--key",
            "env:SANDBOX_TEST_SEED",
            "--host",
            "0.0.0.0",
        ],
        env=_env(seed),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "only listens on loopback" in result.stderr


def test_missing_key_exits_3(tmp_path: Path, seed: bytes) -> None:
    """A key reference that names nothing is a key problem (exit 3)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "omictl",
            "--home",
            str(tmp_path / "home"),
            "sandbox",
            "--key",
            "no-such-key",
            "--port",
            "0",
        ],
        env=_env(seed),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 3
    assert result.stdout == ""
