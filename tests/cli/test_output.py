"""The output channels: JSON documents on stdout, inert server text."""

from __future__ import annotations

import io
import json

from omictl.cli.output import write_json
from omictl.errors import inert

DOC = {"results": [{"service_id": "cms-1", "status": "REVOKED", "note": "é"}], "exit_code": 0}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_for_a_terminal_is_indented() -> None:
    stream = Terminal()
    write_json(DOC, stream)
    text = stream.getvalue()
    assert text.startswith('{\n  "results": [\n')
    assert json.loads(text) == DOC
    assert "é" in text  # UTF-8 as is, not \\u escapes


def test_json_piped_is_one_line() -> None:
    stream = io.StringIO()
    write_json(DOC, stream)
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("}\n")
    assert json.loads(text) == DOC
    assert "é" in text


def test_inert_keeps_printable_text_and_escapes_the_rest() -> None:
    assert inert("cms-article-77 REVOKED ✓") == "cms-article-77 REVOKED ✓"
    assert inert("ok\x1b[2Jgone\nforged") == "ok\\u001b[2Jgone\\u000aforged"
    assert inert("\u202eevil") == "\\u202eevil"


def test_json_with_a_lone_surrogate_is_written_escaped() -> None:
    """A peer's "\\ud800" (valid JSON, no UTF-8) in a document: written ASCII-escaped to a
    strict UTF-8 stream instead of failing mid-write, and it parses back the same."""
    doc = {"binding": {"service_type": "cms \ud800", "note": "é"}}
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", errors="strict")
    write_json(doc, stream)
    stream.flush()
    assert raw.getvalue().isascii() and b"\\ud800" in raw.getvalue()
    assert json.loads(raw.getvalue()) == doc
