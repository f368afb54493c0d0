"""The files in examples/ run against the sandbox, so they cannot rot."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from omictl.core.envelope import Signer
from omictl.sandbox import Sandbox, start_sandbox

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
APP_ID = "org.omiappreg.acme.pr_1234.a1b2c3"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Sandbox, dict[str, str]]]:
    """A sandbox for the examples' AppID, and the environment a CI job would have."""
    seed = secrets.token_bytes(32)
    with start_sandbox(
        master_public_key=Signer(seed).public_key, services=3, app_id=APP_ID
    ) as sandbox:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OMICTL_")}
        env.update(
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            OMICTL_HOME=str(tmp_path / "home"),
            OMICTL_REGISTRY=sandbox.registry_url,
            OMICTL_KEY="env:OMICTL_MASTER_SEED",
            OMICTL_MASTER_SEED=seed.hex(),
        )
        yield sandbox, env


def run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``command`` as a CI runner would run it: no stdin, output captured, 2 minutes."""
    return subprocess.run(
        command,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def omictl(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "omictl", *args], env, cwd)


def test_plan_file_example(world: tuple[Sandbox, dict[str, str]], tmp_path: Path) -> None:
    """examples/plan.json: every entry REVOKED, retain and skip_provider honoured."""
    sandbox, env = world
    res = omictl(
        ["-o", "json", "decommission", "--from", str(EXAMPLES / "plan.json"), "--yes"],
        env,
        tmp_path,
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert [r["status"] for r in doc["results"]] == ["REVOKED"] * 3
    assert doc["summary"] == {"total": 3, "REVOKED": 3}
    by_id = {r["service_id"]: r for r in doc["results"]}
    assert by_id["storage-blob-2"]["receipt"]["data"]["data_handling"] == "retain"
    assert by_id["search-index-3"]["receipt_id"] is None
    assert sandbox.delete_count("search-index-3") == 0


def test_teardown_script_example(world: tuple[Sandbox, dict[str, str]], tmp_path: Path) -> None:
    """examples/teardown.sh tears down every ACTIVE service and exits 0."""
    sandbox, env = world
    res = run(["bash", str(EXAMPLES / "teardown.sh")], dict(env, APP_ID=APP_ID), tmp_path)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "teardown complete" in res.stdout
    assert all(sandbox.binding_status(s) == "REVOKED" for s in sandbox.service_ids)
    report = json.loads((tmp_path / "teardown-result.json").read_text())
    assert report["summary"]["REVOKED"] == 3


@pytest.mark.parametrize(
    ("change", "code", "says"),
    [
        ({"OMICTL_MASTER_SEED": ""}, 3, "error:"),  # the secret is missing: an error document
        ({"APP_ID": "not-an-app-id"}, 2, "error:"),
    ],
)
def test_teardown_script_keeps_omictls_exit_code(
    world: tuple[Sandbox, dict[str, str]],
    tmp_path: Path,
    change: dict[str, str],
    code: int,
    says: str,
) -> None:
    """When omictl prints only {"error": ...}, the script's report must not fail on it and
    replace omictl's exit status with its own (set -e once made it 1)."""
    _, env = world
    res = run(
        ["bash", str(EXAMPLES / "teardown.sh")], {**env, "APP_ID": APP_ID, **change}, tmp_path
    )
    assert res.returncode == code, res.stderr + res.stdout
    assert says in res.stdout and "Traceback" not in res.stderr


def _expand(value: str, known: dict[str, str]) -> str:
    def sub(match: re.Match[str]) -> str:
        return known[match.group(1).strip()]

    return re.sub(r"\$\{\{([^}]*)\}\}", sub, value)


def test_github_actions_example(world: tuple[Sandbox, dict[str, str]], tmp_path: Path) -> None:
    """The workflow's run steps, extracted and executed in order, tear the app down."""
    sandbox, env = world
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / "github-actions-teardown.yml").read_text())
    job = doc["jobs"]["teardown"]
    known = {
        "github.event.number": "1234",
        "secrets.OMI_MASTER_SEED": env["OMICTL_MASTER_SEED"],
        "runner.temp": str(tmp_path / "runner"),
    }
    job_env = {k: _expand(str(v), known) for k, v in job["env"].items()}
    assert job_env["APP_ID"] == APP_ID
    job_env["OMICTL_REGISTRY"] = sandbox.registry_url  # the sandbox stands in for the registry
    run_env = dict(env, **job_env)
    ran = 0
    for step in job["steps"]:
        if "run" not in step or step.get("name") == "Install omictl":
            continue  # omictl is already installed here; `uses:` steps are GitHub's
        res = run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            run_env,
            tmp_path,
        )
        assert res.returncode == 0, f"{step['name']}: {res.stderr}"
        ran += 1
    assert ran == 2
    assert all(sandbox.binding_status(s) == "REVOKED" for s in sandbox.service_ids)
    assert list((tmp_path / "runner" / "omictl" / "receipts").rglob("*.json"))
