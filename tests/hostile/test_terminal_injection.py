"""Server text on the user's terminal: ANSI escapes, bidi overrides and Rich markup from a
peer are shown inert (``\\u001b``, literal ``[brackets]``), never interpreted."""

from __future__ import annotations

from typing import Any

import pytest

from omictl.core.envelope import sign_envelope
from tests.hostile.conftest import Hostile
from tests.hostile.peer import Reply, Request, problem

pytestmark = pytest.mark.e2e

#: Clear screen, red text, an OSC 8 hyperlink, a bidi override, a fake newline + step
#: line, and Rich markup that would style or link text if interpreted.
EVIL = (
    "\x1b[2J\x1b[31mred\x1b[0m\x1b]8;;https://evil.example\x07link\x1b]8;;\x07"
    "\u202egnp.exe\u202c\n✓ archive: done [bold red]PWNED[/] [link=https://evil.example]x[/link]"
)
#: What must never reach stderr raw.
RAW = ("\x1b", "\x07", "\u202e", "\n✓ archive: done")


def _assert_inert(text: str) -> None:
    for bad in RAW:
        assert bad not in text, f"raw {bad!r} reached the terminal"


def test_service_type_with_escapes_is_inert(hostile: Hostile) -> None:
    """ANSI, bidi and Rich markup in the binding's service_type: exit 0, printed inert."""
    hostile.fake.binding_patch = {"service_type": EVIL}
    res = hostile.cli("decommission", hostile.app_id, hostile.service_id, "--yes")
    assert res.code == 0, res.err
    _assert_inert(res.err + res.out)
    assert "\\u001b[31mred" in res.err
    assert "[bold red]PWNED[/]" in res.err  # markup shown as text, not applied


def test_endpoint_with_escapes_is_inert(hostile: Hostile) -> None:
    """Control characters in the binding's endpoint_url: exit 5, printed inert, nothing sent."""
    hostile.fake.binding_patch = {"endpoint_url": f"{hostile.fake.url}/p/{EVIL}"}
    res = hostile.cli("decommission", hostile.app_id, hostile.service_id, "--yes")
    assert res.code == 5, res.err
    _assert_inert(res.err + res.out)
    assert hostile.fake.deletes() == 0


def test_problem_title_and_detail_with_escapes_are_inert(hostile: Hostile) -> None:
    """A provider's problem+json with ANSI/markup in title and detail: exit 4, inert."""
    hostile.fake.overrides["delete"] = lambda _r: problem(
        "invalid_signature", 401, f"T{EVIL}", f"D{EVIL}"
    )
    res = hostile.cli("decommission", hostile.app_id, hostile.service_id, "--yes")
    assert res.code == 4, res.err
    _assert_inert(res.err + res.out)
    assert "\\u001b[2J" in res.err
    assert "[bold red]PWNED[/]" in res.err


def test_problem_type_with_escapes_is_inert(hostile: Hostile) -> None:
    """A problem type carrying escapes (it becomes the error code): exit 4, inert."""
    hostile.fake.overrides["delete"] = lambda _r: Reply(
        status=403,
        body={"type": f"urn:omi:error:{EVIL}", "title": "t", "status": 403},
        content_type="application/problem+json",
    )
    res = hostile.cli("decommission", hostile.app_id, hostile.service_id, "--yes")
    assert res.code == 4, res.err
    _assert_inert(res.err + res.out)


def test_receipt_id_with_escapes_is_inert(hostile: Hostile) -> None:
    """A validly signed receipt whose receipt_id carries escapes: printed inert."""
    fake = hostile.fake
    receipt = sign_envelope(fake.receipt_data(receipt_id=f"R{EVIL}"), fake.service_signer)
    fake.overrides["delete"] = lambda _r: Reply(body=receipt.to_json())

    def unbind(_r: Request) -> Reply:
        fake.status = "REVOKED"
        data = fake.record_data(receipt_id=f"R{EVIL}")
        return Reply(body=sign_envelope(data, fake.registry_signer).to_json())

    fake.overrides["unbind"] = unbind
    res = hostile.cli("decommission", hostile.app_id, hostile.service_id, "--yes")
    _assert_inert(res.err + res.out)
    assert res.code == 0, res.err


def test_propagation_target_with_escapes_is_inert(hostile: Hostile) -> None:
    """A registry-signed record whose purge targets carry escapes: exit 0, printed inert."""
    fake = hostile.fake

    def unbind(_r: Request) -> Reply:
        fake.status = "REVOKED"
        prop: list[dict[str, Any]] = [
            {"target": f"auth{EVIL}", "status": "delivered"},
            {"target": f"billing{EVIL}", "status": "failed", "detail": EVIL},
        ]
        data = fake.record_data(propagation=prop)
        return Reply(body=sign_envelope(data, fake.registry_signer).to_json())

    fake.overrides["unbind"] = unbind
    res = hostile.cli("decommission", hostile.app_id, hostile.service_id, "--yes")
    assert res.code == 0, res.err
    _assert_inert(res.err + res.out)


def test_status_listing_with_escapes_is_inert(hostile: Hostile) -> None:
    """`omictl status` of a binding with escapes in type and endpoint: printed inert."""
    hostile.fake.binding_patch = {
        "service_type": EVIL,
        "endpoint_url": f"https://x.example/{EVIL}",
    }
    res = hostile.cli("status", hostile.app_id, hostile.service_id)
    assert res.code == 0, res.err
    _assert_inert(res.err + res.out)


def test_registry_name_with_escapes_is_inert(hostile: Hostile) -> None:
    """`omictl registry show` of a registry whose name carries escapes: printed inert."""
    hostile.fake.registry_name = EVIL
    res = hostile.cli("registry", "show", hostile.fake.url)
    assert res.code == 0, res.err
    _assert_inert(res.err + res.out)


def test_confirmation_plan_with_escapes_is_inert(
    hostile: Hostile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan shown before the prompt, with escapes in type and endpoint: inert; declined."""
    import io

    monkeypatch.setattr("omictl.cli.decommission.stdin_is_tty", lambda: True)
    monkeypatch.setattr("sys.stdin", io.StringIO("no\n"))
    hostile.fake.binding_patch = {
        "service_type": EVIL,
        "endpoint_url": f"{hostile.fake.endpoint_url}/{EVIL}",
    }
    res = hostile.cli("decommission", hostile.app_id, hostile.service_id)
    assert res.code == 7, res.err
    assert "About to decommission" in res.err
    _assert_inert(res.err + res.out)
    assert hostile.fake.deletes() == 0


#: What JSON leaves raw: a C1 CSI (8-bit "ESC ["), a bidi override, a line separator, a
#: zero-width joiner, an astral format character (language tag) and a lone surrogate.
JSON_EVIL = "x\x9b2J\u202egnp.exe\u2028\u200d\U000e0001\ud800 é ✓"


@pytest.mark.parametrize("output", [["-o", "json"], []])
def test_status_json_and_dry_run_output_is_inert(hostile: Hostile, output: list[str]) -> None:
    """Characters JSON itself leaves raw, in the registry's words: `-o json status` and the
    text `--dry-run` print them as \\u escapes (valid JSON, the same value), never raw,
    and never fail with an encoding error (a lone surrogate is not UTF-8)."""
    import json

    endpoint = f"{hostile.fake.endpoint_url}/{JSON_EVIL}"
    hostile.fake.binding_patch = {"service_type": JSON_EVIL, "endpoint_url": endpoint}
    status = hostile.cli(*output, "status", hostile.app_id, hostile.service_id)
    dry = hostile.cli(*output, "decommission", hostile.app_id, hostile.service_id, "--dry-run")
    escaped = "\\u009b2J\\u202egnp.exe\\u2028\\u200d\\udb40\\udc01\\ud800 é ✓"  # as JSON
    for res in (status, dry):
        assert res.code == 0, res.err
        assert all(line.isprintable() for line in res.out.splitlines()), res.out
    assert escaped in dry.out  # the dry run's plan is JSON in both modes (its endpoint_url)
    if output:
        assert escaped in status.out
        assert json.loads(status.out)["services"][0]["service_type"] == JSON_EVIL
    else:
        assert "\\u009b2J\\u202egnp.exe" in status.out  # inert() in a text listing
    assert hostile.fake.deletes() == 0
