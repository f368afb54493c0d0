"""Signed envelopes: the shared vectors, strict parsing, and verification failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from omictl.core.envelope import (
    EnvelopeError,
    Signer,
    canonical_bytes,
    key_id,
    parse_envelope,
    parse_hex,
    parse_json,
    sign_envelope,
    verify_envelope,
)
from omictl.errors import ExitCode, ProtocolError, UsageError, VerificationError

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).with_name("envelopes.json")).read_text(encoding="utf-8")
)["vectors"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_canonical_bytes(vector: dict[str, Any]) -> None:
    """canonical_bytes matches the vector's RFC 8785 form byte for byte."""
    assert canonical_bytes(vector["data"]) == vector["canonical_utf8"].encode("utf-8")


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_public_key_and_key_id(vector: dict[str, Any]) -> None:
    """The seed derives the vector's public key and key id."""
    signer = Signer(bytes.fromhex(vector["seed"]))
    assert signer.public_key.hex() == vector["public_key"]
    assert signer.key_id == vector["key_id"]
    assert key_id(bytes.fromhex(vector["public_key"])) == vector["key_id"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_signature(vector: dict[str, Any]) -> None:
    """Signing the vector's data gives the vector's (openssl-checked) signature."""
    signer = Signer(bytes.fromhex(vector["seed"]))
    envelope = sign_envelope(vector["data"], signer, hint=False)
    assert envelope.to_json() == vector["envelope"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_verifies(vector: dict[str, Any]) -> None:
    """The vector's envelope parses and verifies under its public key."""
    envelope = parse_envelope(vector["envelope"])
    assert verify_envelope(envelope, bytes.fromhex(vector["public_key"])) is envelope


def test_upper_case_signature_hex_is_accepted() -> None:
    """Readers accept upper-case hex (PROTOCOL.md section 1)."""
    vector = VECTORS[0]
    raw = dict(vector["envelope"], signature=vector["envelope"]["signature"].upper())
    verify_envelope(parse_envelope(raw), bytes.fromhex(vector["public_key"]))


def test_tampered_data_fails_verification() -> None:
    """Changing one data member breaks the signature."""
    vector = VECTORS[0]
    raw = json.loads(json.dumps(vector["envelope"]))
    raw["data"]["data_handling"] = "retain"
    with pytest.raises(VerificationError) as info:
        verify_envelope(parse_envelope(raw), bytes.fromhex(vector["public_key"]))
    assert info.value.code == "invalid_signature"
    assert info.value.exit_code == ExitCode.VERIFICATION


def test_wrong_key_fails_verification() -> None:
    """A signature does not verify under another key."""
    with pytest.raises(VerificationError):
        verify_envelope(
            parse_envelope(VECTORS[0]["envelope"]), bytes.fromhex(VECTORS[1]["public_key"])
        )


def test_extra_data_member_is_covered_by_signature() -> None:
    """An extra member inside data is signed; dropping it breaks verification."""
    signer = Signer(bytes(range(32)))
    env = sign_envelope({"a": 1, "extra": "x"}, signer).to_json()
    verify_envelope(parse_envelope(env), signer.public_key)
    del env["data"]["extra"]
    with pytest.raises(VerificationError):
        verify_envelope(parse_envelope(env), signer.public_key)


def test_unknown_top_level_members_are_ignored() -> None:
    """Top-level members other than the four known ones are ignored."""
    raw = dict(VECTORS[0]["envelope"], comment="hello")
    verify_envelope(parse_envelope(raw), bytes.fromhex(VECTORS[0]["public_key"]))


def test_context_mismatch_is_rejected() -> None:
    """A verifier expecting one context refuses another."""
    vector = VECTORS[0]
    with pytest.raises(VerificationError) as info:
        verify_envelope(
            parse_envelope(vector["envelope"]),
            bytes.fromhex(vector["public_key"]),
            context="decommission",
        )
    assert info.value.code == "wrong_context"


@pytest.mark.parametrize("version", ["2.0", 1.0, None, "1"])
def test_unsupported_version(version: object) -> None:
    """Any version but "1.0" is unsupported_version."""
    raw = dict(VECTORS[0]["envelope"], version=version)
    with pytest.raises(EnvelopeError) as info:
        parse_envelope(raw)
    assert info.value.code == "unsupported_version"


@pytest.mark.parametrize(
    "signature",
    ["", "zz" * 64, "ab" * 63, "ab" * 65, 12, None, "ab" * 63 + "a ", " " + "ab" * 63 + "a"],
)
def test_malformed_signature_names_the_field(signature: object) -> None:
    """A signature that is not 128 hex chars is malformed, and the error names the field."""
    raw = dict(VECTORS[0]["envelope"], signature=signature)
    with pytest.raises(EnvelopeError) as info:
        parse_envelope(raw)
    assert "signature" in info.value.message
    assert info.value.code == "malformed_request"


@pytest.mark.parametrize("raw", [[], "x", 1, {"version": "1.0"}, {"version": "1.0", "data": []}])
def test_malformed_envelope_shapes(raw: object) -> None:
    """Non-objects and missing/mistyped members are malformed."""
    with pytest.raises(EnvelopeError):
        parse_envelope(raw)


@pytest.mark.parametrize(
    "data",
    [{"n": float("nan")}, {"n": float("inf")}, {"n": 2**53}, {"s": "\ud800"}, {"b": b"x"}],
)
def test_signer_rejects_non_jcs_data(data: dict[str, Any]) -> None:
    """Data JCS cannot represent exactly is refused by the signer."""
    with pytest.raises(UsageError):
        sign_envelope(data, Signer(bytes(32)))


def test_verify_rejects_non_jcs_received_data() -> None:
    """Received data JCS cannot represent is a verification failure, not a crash."""
    env = parse_envelope({"version": "1.0", "data": {"n": 2**60}, "signature": "00" * 64})
    with pytest.raises(VerificationError):
        verify_envelope(env, Signer(bytes(32)).public_key)


def test_signer_repr_hides_seed() -> None:
    """A Signer's repr shows its key id, never seed bytes."""
    seed = bytes.fromhex(VECTORS[0]["seed"])
    text = repr(Signer(seed, name="master")) + str(Signer(seed))
    assert VECTORS[0]["seed"] not in text
    assert VECTORS[0]["key_id"] in text


def test_parse_hex_accepts_both_cases() -> None:
    """parse_hex accepts lower-case and upper-case hex."""
    assert parse_hex("abcd", field="f", length=2) == b"\xab\xcd"
    assert parse_hex("ABCD", field="f", length=2) == b"\xab\xcd"


def test_parse_hex_refuses_mixed_case() -> None:
    """PROTOCOL.md section 1: readers accept upper-case hex "and reject anything else with
    an error naming the field"; a mix of cases is neither encoding."""
    with pytest.raises(ProtocolError, match=r"^f must be 4 hex characters"):
        parse_hex("ABcd", field="f", length=2)
    # a key a person types on the command line may be in any case
    assert parse_hex("ABcd", field="--public-key", length=2, typed=True) == b"\xab\xcd"
    with pytest.raises(ProtocolError) as info:
        parse_hex("ABzz", field="--public-key", length=2, typed=True)
    assert info.value.hint == "hex: 0-9 and a-f, in either case"


@pytest.mark.parametrize("text", ['{"a":1,"a":2}', '{"a":NaN}', '{"a":Infinity}', "{", b"\xff"])
def test_parse_json_is_strict(text: str | bytes) -> None:
    """Duplicate members, NaN/Infinity, broken JSON and bad UTF-8 are protocol errors."""
    with pytest.raises(ProtocolError):
        parse_json(text, what="answer")


def test_parse_json_deep_nesting_is_an_error() -> None:
    """Pathologically deep nesting is an error, not a RecursionError."""
    with pytest.raises(ProtocolError):
        parse_json("[" * 100_000 + "]" * 100_000, what="answer")
