"""Text made safe (omictl/errors.py): JSON that cannot break a write or a terminal."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from omictl.errors import json_text

#: Every code point, lone surrogates and controls included (JSON can carry them all).
ANY_TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=10,
)


@given(JSON)
def test_json_text_keeps_the_value_and_is_printable_utf8(value: Any) -> None:
    for layout in ({"indent": 2}, {"separators": (",", ":")}):
        text = json_text(value, sort_keys=True, **layout)
        assert json.loads(text) == value
        assert all(line.isprintable() for line in text.split("\n"))
        text.encode("utf-8")  # never a lone surrogate


def test_json_text_escapes_what_json_leaves_raw() -> None:
    value = {"a": "x\x9b2J \u202eevil \ud800 \U000e0001 \x7f é ✓"}
    text = json_text(value)
    assert text == '{"a": "x\\u009b2J \\u202eevil \\ud800 \\udb40\\udc01 \\u007f é ✓"}'
    assert json.loads(text) == value
