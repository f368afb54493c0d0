"""Shared pieces of the security tests: known keys, valid protocol documents, hypothesis
strategies (arbitrary JSON, arbitrary bytes, mutations of a valid document) and the
figures counter printed at the end of a run (see ``conftest.py``)."""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections import Counter
from typing import Any

from hypothesis import strategies as st

from omictl.core.envelope import Signer, sign_envelope
from omictl.core.evidence import build_bundle
from omictl.core.messages import (
    CONTEXT_RECORD,
    problem_json,
    termination_request_data,
    unbind_request_data,
)

# ---------------------------------------------------------------------------- figures

#: examples run per parser, kills per writer, corrupt files per writer, ...
FIGURES: Counter[str] = Counter()


def count(key: str, n: int = 1) -> None:
    """Add ``n`` to the figure ``key`` (printed by the security conftest)."""
    FIGURES[key] += n


# ---------------------------------------------------------------------------- known keys

APP_ID = "org.omiappreg.alice.business_app.7f8a9d"
SERVICE_ID = "cms-article-77"
RECEIPT_ID = "RCPT-9921-X"
NOW = 1_705_412_600
REGISTRY_URL = "https://omiappreg.org"

MASTER = Signer(hashlib.sha256(b"omictl-security master").digest(), name="master")
SERVICE = Signer(hashlib.sha256(b"omictl-security service").digest(), name="service")
REGISTRY = Signer(hashlib.sha256(b"omictl-security registry").digest(), name="registry")
NONCE_A = "AAAAAAAAAAAAAAAAAAAAAA"
NONCE_B = "BBBBBBBBBBBBBBBBBBBBBB"


# ---------------------------------------------------------------------------- valid documents


def termination_request() -> dict[str, Any]:
    """A DELETE envelope signed by MASTER."""
    data = termination_request_data(
        app_id=APP_ID, service_id=SERVICE_ID, timestamp=NOW, nonce=NONCE_A
    )
    return sign_envelope(data, MASTER).to_json()


def receipt() -> dict[str, Any]:
    """A termination receipt signed by SERVICE."""
    data = {
        "app_id": APP_ID,
        "service_id": SERVICE_ID,
        "status": "success",
        "message": "Instance purged",
        "receipt_id": RECEIPT_ID,
        "terminated_at": NOW + 1,
        "data_handling": "wipe",
    }
    return sign_envelope(data, SERVICE).to_json()


def unbind_request() -> dict[str, Any]:
    """An unbind envelope signed by MASTER, embedding :func:`receipt`."""
    data = unbind_request_data(
        app_id=APP_ID, service_id=SERVICE_ID, timestamp=NOW + 2, nonce=NONCE_B, receipt=receipt()
    )
    return sign_envelope(data, MASTER).to_json()


def revocation_record() -> dict[str, Any]:
    """A revocation record signed by REGISTRY."""
    data = {
        "app_id": APP_ID,
        "service_id": SERVICE_ID,
        "status": "REVOKED",
        "revoked_at": NOW + 3,
        "receipt_id": RECEIPT_ID,
        "context": CONTEXT_RECORD,
        "propagation": [
            {"target": "auth", "status": "delivered"},
            {"target": "billing", "status": "failed", "detail": "timeout"},
        ],
    }
    return sign_envelope(data, REGISTRY).to_json()


def binding() -> dict[str, Any]:
    """An ACTIVE binding of SERVICE_ID."""
    return {
        "app_id": APP_ID,
        "service_id": SERVICE_ID,
        "service_type": "CMS",
        "endpoint_url": "https://article.cms.io/api/v1",
        "public_key": SERVICE.public_key.hex(),
        "status": "ACTIVE",
        "revoked_at": None,
    }


def binding_list() -> dict[str, Any]:
    """A service list with one ACTIVE and one REVOKED binding."""
    revoked = dict(binding(), service_id="billing-1", status="REVOKED", revoked_at=NOW)
    return {"app_id": APP_ID, "services": [binding(), revoked]}


def app() -> dict[str, Any]:
    """The app record."""
    return {"app_id": APP_ID, "master_public_key": MASTER.public_key.hex(), "status": "ACTIVE"}


def registry_info() -> dict[str, Any]:
    """``GET /v1/registry``."""
    return {"name": "OMI App Registry", "public_key": REGISTRY.public_key.hex(), "version": "1.0"}


def problem() -> dict[str, Any]:
    """A problem+json body carrying a record, as an ``already_revoked`` answer does."""
    return problem_json(
        "already_revoked", "Already revoked", 409, "binding was revoked", record=revocation_record()
    )


def bundle() -> dict[str, Any]:
    """A complete, valid evidence bundle."""
    return build_bundle(
        app_id=APP_ID,
        service_id=SERVICE_ID,
        created_at=NOW + 4,
        registry_url=REGISTRY_URL,
        master_public_key=MASTER.public_key,
        service_public_key=SERVICE.public_key,
        registry_public_key=REGISTRY.public_key,
        termination_request=termination_request(),
        receipt=receipt(),
        unbind_request=unbind_request(),
        revocation_record=revocation_record(),
    )


def plan() -> list[dict[str, Any]]:
    """A two-entry decommission plan."""
    return [
        {"app_id": APP_ID, "service_id": SERVICE_ID},
        {"app_id": APP_ID, "service_id": "billing-1", "data_handling": "retain"},
        {"app_id": APP_ID, "service_id": "auth-2", "skip_provider": True},
    ]


def pins() -> dict[str, Any]:
    """A pin file with one registry."""
    from omictl.core.envelope import key_id

    return {
        "version": 1,
        "registries": {
            REGISTRY_URL: {
                "public_key": REGISTRY.public_key.hex(),
                "key_id": key_id(REGISTRY.public_key),
                "pinned_at": "2025-01-16T12:00:00Z",
                "name": "OMI App Registry",
            }
        },
    }


def journal_log() -> list[dict[str, Any]]:
    """A journal log (format 2, one object per line) in phase ``receipt_held``."""
    return [
        {
            "format": "omictl-journal",
            "format_version": 2,
            "app_id": APP_ID,
            "service_id": SERVICE_ID,
        },
        {
            "at": NOW,
            "phase": "termination_sent",
            "set": {
                "data_handling": "wipe",
                "skip_provider": False,
                "termination_request": termination_request(),
            },
        },
        {"at": NOW, "phase": "receipt_held", "set": {"receipt": receipt()}},
    ]


def journal() -> dict[str, Any]:
    """A format-1 journal (one whole document, before the log) in phase ``receipt_held``."""
    return {
        "format": "omictl-journal",
        "format_version": 1,
        "app_id": APP_ID,
        "service_id": SERVICE_ID,
        "phase": "receipt_held",
        "data_handling": "wipe",
        "skip_provider": False,
        "termination_request": termination_request(),
        "receipt": receipt(),
        "rejected_receipt": None,
        "rejection_reason": None,
        "unbind_request": None,
        "revocation_record": None,
        "bundle_path": None,
        "history": [{"phase": "termination_sent", "at": NOW}, {"phase": "receipt_held", "at": NOW}],
    }


def config_profiles() -> dict[str, dict[str, Any]]:
    """Profiles as ``config.load_config`` returns them."""
    return {
        "default": {"registry": REGISTRY_URL, "key": "master", "timeout": 12.5},
        "ci": {"key": "env:OMICTL_SEED", "concurrency": 4, "output": "json"},
    }


# ---------------------------------------------------------------------------- TOML


def toml_value(value: Any) -> str:
    """An inline TOML spelling of a JSON value (None becomes an empty string)."""
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return (
        "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    )


def toml_document(doc: Any) -> str:
    """A TOML text for ``doc``: a table of tables becomes ``[a.b]`` sections."""
    if not isinstance(doc, dict):
        return f"value = {toml_value(doc)}\n"
    lines: list[str] = []
    for key, value in doc.items():
        if key == "profiles" and isinstance(value, dict):
            for name, table in value.items():
                if isinstance(table, dict):
                    lines.append(f"[profiles.{json.dumps(str(name))}]")
                    lines.extend(
                        f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in table.items()
                    )
                else:
                    lines.append(f"profiles.{json.dumps(str(name))} = {toml_value(table)}")
        else:
            lines.insert(0, f"{json.dumps(str(key))} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- strategies

#: Integers JSON and JCS handle differently: past 2**53, past 64 bits, negative zero-ish.
BIG_INTS = st.sampled_from([2**53 - 1, 2**53, -(2**53) - 1, 2**63, 2**64 + 1, 10**400, -(10**300)])
#: Every code point, lone surrogates included.
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=16)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    BIG_INTS,
    st.floats(allow_nan=True, allow_infinity=True),
    ANY_TEXT,
    st.sampled_from(["", "1.0", "success", "REVOKED", "ACTIVE", "decommission", "0" * 128]),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(ANY_TEXT, inner, max_size=5),
    max_leaves=8,
)
#: Cheaper values for members of a shaped document.
SMALL_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=5,
)


def deep(depth: int, *, dict_level: bool = False) -> Any:
    """A value nested ``depth`` levels (lists, or single-member objects)."""
    value: Any = 0
    for _ in range(depth):
        value = {"a": value} if dict_level else [value]
    return value


def paths(doc: Any) -> list[tuple[Any, ...]]:
    """Every node's path in a JSON document, the root first (at most 200 of them)."""
    found: list[tuple[Any, ...]] = []
    todo: list[tuple[tuple[Any, ...], Any]] = [((), doc)]
    while todo and len(found) < 200:
        prefix, node = todo.pop()
        found.append(prefix)
        if isinstance(node, dict):
            todo.extend(((*prefix, key), value) for key, value in node.items())
        elif isinstance(node, list):
            todo.extend(((*prefix, index), value) for index, value in enumerate(node))
    return found


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    _get(doc, path[:-1])[path[-1]] = value
    return doc


MUTATIONS = ("retype", "drop", "tweak", "add", "swap", "deep")


@st.composite
def mutated(draw: st.DrawFn, valid: Any) -> Any:
    """``valid`` with 1-3 mutations: a node's type flipped, a member dropped, a character
    or number changed, a member added, a node replaced by another node, or a deep value."""
    doc = copy.deepcopy(valid)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(doc)))
        op = draw(st.sampled_from(MUTATIONS))
        node = _get(doc, path)
        if op == "retype":
            doc = _set(doc, path, draw(JSON_VALUES))
        elif op == "drop" and path:
            del _get(doc, path[:-1])[path[-1]]
        elif op == "tweak":
            doc = _set(doc, path, draw(_tweak(node)))
        elif op == "add" and isinstance(node, dict):
            known = ["version", "data", "signature", "context", "status", "app_id", "seed"]
            key = draw(st.sampled_from(known) | ANY_TEXT)
            node[key] = draw(JSON_VALUES)
        elif op == "add" and isinstance(node, list):
            node.append(draw(JSON_VALUES))
        elif op == "swap":
            other = draw(st.sampled_from(paths(doc)))
            doc = _set(doc, path, copy.deepcopy(_get(doc, other)))
        elif op == "deep":
            doc = _set(doc, path, deep(draw(st.integers(20, 200)), dict_level=draw(st.booleans())))
    return doc


def _tweak(node: Any) -> st.SearchStrategy[Any]:
    """A small change of one scalar: one character, +-1, a sign, a type of the same value."""
    if isinstance(node, bool):
        return st.sampled_from([not node, int(node), str(node).lower()])
    if isinstance(node, int):
        return st.sampled_from(
            [node + 1, node - 1, -node, _float(node), str(node), node + 2**64, True, None]
        )
    if isinstance(node, float):
        whole = int(node) if math.isfinite(node) else 0
        return st.sampled_from([node + 0.5, whole, math.nan, math.inf, str(node)])
    if isinstance(node, str):
        if not node:
            return ANY_TEXT
        return st.builds(
            _change_char,
            st.just(node),
            st.integers(0, len(node) - 1),
            st.characters(codec=None, exclude_categories=()) | st.sampled_from("aF0 ."),
            st.sampled_from(["replace", "delete", "insert", "upper"]),
        )
    return JSON_VALUES


def _float(value: int) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _change_char(text: str, index: int, char: str, how: str) -> str:
    if how == "replace":
        return text[:index] + char + text[index + 1 :]
    if how == "delete":
        return text[:index] + text[index + 1 :]
    if how == "insert":
        return text[:index] + char + text[index:]
    return text.upper()


@st.composite
def mutated_bytes(draw: st.DrawFn, valid: bytes) -> bytes:
    """``valid`` bytes truncated, with a byte flipped, bytes inserted or a span repeated."""
    raw = bytearray(valid)
    for _ in range(draw(st.integers(1, 3))):
        if not raw:
            break
        at = draw(st.integers(0, len(raw) - 1))
        op = draw(st.sampled_from(["truncate", "flip", "insert", "repeat", "delete"]))
        if op == "truncate":
            raw = raw[:at]
        elif op == "flip":
            raw[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            raw[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "repeat":
            raw[at:at] = raw[at : at + draw(st.integers(1, 40))]
        else:
            del raw[at : at + draw(st.integers(1, 8))]
    return bytes(raw)


def any_bytes(valid: bytes) -> st.SearchStrategy[bytes]:
    """Arbitrary bytes, arbitrary JSON text as bytes, and byte-level damage of ``valid``."""
    return st.one_of(
        st.binary(max_size=600),
        JSON_VALUES.map(lambda v: json.dumps(v).encode("utf-8")),
        mutated_bytes(valid),
    )


@st.composite
def shaped(draw: st.DrawFn, valid: Any, depth: int = 0) -> Any:
    """A value with ``valid``'s member names (two levels deep) holding arbitrary values."""
    if isinstance(valid, dict) and depth < 2 and (depth == 0 or len(valid) <= 8):
        out: dict[str, Any] = {}
        for key, value in valid.items():
            choice = draw(st.integers(0, 4))
            if choice == 0:
                continue
            out[key] = draw(shaped(value, depth + 1)) if choice < 3 else draw(SMALL_VALUES)
        return out
    if isinstance(valid, list) and valid and depth < 2:
        return [draw(shaped(valid[0], depth + 1)) for _ in range(draw(st.integers(0, 2)))]
    if isinstance(valid, dict | list):
        return draw(st.just(valid) | SMALL_VALUES)
    return draw(SMALL_VALUES)


def json_inputs(valid: Any) -> st.SearchStrategy[Any]:
    """Arbitrary JSON values, and arbitrary values in ``valid``'s shape."""
    return st.one_of(JSON_VALUES, shaped(valid))


# ---------------------------------------------------------------------------- secrets


def encodings(secret: bytes) -> dict[str, bytes]:
    """The spellings of ``secret`` a leak could take: raw, hex, upper hex, base64 (std and
    URL-safe, padded or not)."""
    import base64

    std = base64.b64encode(secret)
    url = base64.urlsafe_b64encode(secret)
    return {
        "raw": secret,
        "hex": secret.hex().encode(),
        "HEX": secret.hex().upper().encode(),
        "base64": std,
        "base64-unpadded": std.rstrip(b"="),
        "base64url": url,
        "base64url-unpadded": url.rstrip(b"="),
    }
