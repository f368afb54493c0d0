"""Fuzzing every parser that reads the network or the disk.

Property: whatever the input (arbitrary JSON values, arbitrary bytes, mutations of a valid
document, absurdly deep nesting), only :class:`OmictlError` subclasses come out, and the
valid document still passes. Where a parser verifies signatures, anything it accepts
carries exactly the signed bytes of the valid document (a mutation of signed content is
never accepted).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omictl import keystore
from omictl.config import load_config
from omictl.core.envelope import key_id, parse_envelope, parse_json, verify_envelope
from omictl.core.evidence import verify_bundle
from omictl.core.messages import (
    CONTEXT_TERMINATION,
    Problem,
    parse_app,
    parse_binding,
    parse_binding_list,
    parse_problem,
    parse_registry_info,
    verify_receipt,
    verify_request,
    verify_revocation_record,
)
from omictl.errors import KeystoreError, OmictlError, UsageError
from omictl.keyref import load_public_key, load_signer
from omictl.keystore import PassphraseSource, decrypt_seed, plain_key, read_key_file, seal_seed
from omictl.transport.pins import PinStore
from omictl.workflow.archive import Archive
from omictl.workflow.batch import load_plan
from omictl.workflow.journal import JournalStore
from tests.security import helpers as h

#: Keep the folder well under a minute: a few hundred examples per parser and strategy.
JSON_EXAMPLES = 150
BYTES_EXAMPLES = 150
MUTATION_EXAMPLES = 200


def fuzz(examples: int) -> settings:
    """Hypothesis settings of one property: no deadline (crypto), no example database."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )


# ---------------------------------------------------------------------------- key files

KEY_SEED = bytes.fromhex("5eed" * 16)
KEY_PASS = b"fuzz passphrase \xc3\xa9"
#: MIN Argon2id cost: decrypting a mutated file stays a millisecond affair.
ENCRYPTED_KEY = seal_seed(
    KEY_SEED,
    KEY_PASS,
    name="fuzzkey",
    created_at="2025-01-16T12:00:00Z",
    limits=keystore.MIN_LIMITS,
).to_json()
PLAIN_KEY = plain_key(KEY_SEED, name="fuzzkey", created_at="2025-01-16T12:00:00Z").to_json()
#: A mutated file may ask for up to the production ceiling (1 GiB); the fuzzer still
#: parses such files but only runs Argon2id for costs this small.
DECRYPT_BUDGET = keystore.KdfLimits(opslimit=4, memlimit=16 * 1024 * 1024)


def _decrypt(key: keystore.KeyFile, passphrase: bytes) -> bytes | None:
    if key.kdf is not None and (
        key.kdf.opslimit > DECRYPT_BUDGET.opslimit or key.kdf.memlimit > DECRYPT_BUDGET.memlimit
    ):
        return None
    return decrypt_seed(key, passphrase)


# ---------------------------------------------------------------------------- the parsers


@dataclass(frozen=True)
class Spec:
    """One parser: how to feed it a JSON value or raw bytes, and what must hold if it accepts."""

    name: str
    valid: Any
    #: the parser on a JSON value (files: serialized first)
    on_value: Callable[[Any, Path], Any]
    #: the parser on raw bytes (objects: through parse_json, as the transport does)
    on_bytes: Callable[[bytes, Path], Any]
    #: invariant of an accepted input (the input, the parser's result)
    accepted: Callable[[Any], None]
    #: the valid document as bytes
    valid_bytes: bytes


def _no_check(result: Any) -> None:
    """Accepting is fine; nothing more to hold."""


def _signed(valid: dict[str, Any]) -> Callable[[Any], None]:
    """An accepted envelope carries exactly the valid document's signed bytes."""
    want = rfc8785.dumps(valid["data"])

    def check(result: Any) -> None:
        envelope = getattr(result, "envelope", result)
        assert rfc8785.dumps(envelope.data) == want

    return check


def obj_spec(
    name: str,
    valid: Any,
    parser: Callable[[Any], Any],
    accepted: Callable[[Any], None] = _no_check,
) -> Spec:
    """A parser of JSON values received over the network."""
    return Spec(
        name=name,
        valid=valid,
        on_value=lambda value, _where: parser(value),
        on_bytes=lambda raw, _where: parser(parse_json(raw, what=name)),
        accepted=accepted,
        valid_bytes=json.dumps(valid).encode(),
    )


def file_spec(
    name: str,
    valid: Any,
    reader: Callable[[Path], Any],
    accepted: Callable[[Any], None] = _no_check,
    *,
    relpath: str = "file.json",
    encode: Callable[[Any], bytes] = lambda value: json.dumps(value).encode("utf-8"),
) -> Spec:
    """A parser of a file omictl reads from disk (written here with mode 0600)."""

    def on_bytes(raw: bytes, where: Path) -> Any:
        path = where / relpath
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
        return reader(path)

    return Spec(
        name=name,
        valid=valid,
        on_value=lambda value, where: on_bytes(encode(value), where),
        on_bytes=on_bytes,
        accepted=accepted,
        valid_bytes=encode(valid),
    )


def _verify_termination(value: Any) -> Any:
    envelope = parse_envelope(value, what="termination request")
    return verify_envelope(
        envelope, h.MASTER.public_key, what="termination request", context=CONTEXT_TERMINATION
    )


def _receipt(value: Any) -> Any:
    return verify_receipt(
        value, service_public_key=h.SERVICE.public_key, app_id=h.APP_ID, service_id=h.SERVICE_ID
    )


def _record(value: Any) -> Any:
    return verify_revocation_record(
        value, registry_public_key=h.REGISTRY.public_key, app_id=h.APP_ID, service_id=h.SERVICE_ID
    )


def _request(value: Any) -> Any:
    return verify_request(
        value,
        public_key=h.MASTER.public_key,
        context=CONTEXT_TERMINATION,
        now=h.NOW,
        what="termination request",
    )


def _problem(value: Any) -> Problem | None:
    """parse_problem "never raises": not even an OmictlError."""
    try:
        return parse_problem(value, status=409)
    except OmictlError as exc:  # pragma: no cover - a failure of the property
        raise AssertionError(f"parse_problem raised {exc!r}") from exc


def _bundle_ok(report: Any) -> None:
    assert report.receipt_id == h.RECEIPT_ID
    assert report.revoked_at == h.NOW + 3
    assert report.master_key_id == key_id(h.MASTER.public_key)
    assert report.registry_key_id == key_id(h.REGISTRY.public_key)


def _key_file(passphrase: bytes) -> Callable[[Path], Any]:
    def read(path: Path) -> Any:
        key = read_key_file(path)
        return _decrypt(key, passphrase if key.encrypted else b"")

    return read


def _seed_ok(seed: Any) -> None:
    """A damaged key file either fails or still yields the genuine seed."""
    assert seed is None or seed == KEY_SEED


def _json_lines(value: Any) -> bytes:
    """A list as JSON Lines (the journal log); anything else as one JSON line."""
    lines = value if isinstance(value, list) else [value]
    return b"".join(json.dumps(line).encode("utf-8") + b"\n" for line in lines)


def _journal(path: Path) -> Any:
    return JournalStore(path.parents[1]).load(h.APP_ID, h.SERVICE_ID)


def _pins(path: Path) -> Any:
    store = PinStore(path)
    return store.all(), store.get(h.REGISTRY_URL)


def _archive(path: Path) -> Any:
    return verify_bundle(Archive.load(path))


def _toml(value: Any) -> bytes:
    return h.toml_document(value).encode("utf-8")


def _config_ok(profiles: Any) -> None:
    assert isinstance(profiles, dict)
    assert all(isinstance(table, dict) for table in profiles.values())


def _env_key(raw: bytes, where: Path) -> Any:
    """``env:VAR`` as the CLI reads it: os.environ decodes with surrogateescape."""
    value = raw.decode("utf-8", "surrogateescape")
    env = {"OMICTL_FUZZ_KEY": value}
    passphrases = PassphraseSource(env={"OMICTL_PASSPHRASE": KEY_PASS.decode()}, interactive=False)
    public = load_public_key("env:OMICTL_FUZZ_KEY", keys_dir=where, env=env)
    parsed_doc = value.lstrip().startswith("{")
    if parsed_doc and '"encrypted": true' in value:
        # an encrypted document: unlock only at a cost the fuzzer can afford
        key = keystore.parse_key_bytes(value.encode("utf-8", "surrogateescape"), source="env")
        return public, _decrypt(key, KEY_PASS)
    signer = load_signer("env:OMICTL_FUZZ_KEY", keys_dir=where, passphrases=passphrases, env=env)
    assert signer.public_key == public
    return public, None


SPECS = [
    Spec(
        name="parse_json",
        valid=h.termination_request(),
        on_value=lambda value, _w: parse_json(json.dumps(value), what="fuzz"),
        on_bytes=lambda raw, _w: parse_json(raw, what="fuzz"),
        accepted=_no_check,
        valid_bytes=json.dumps(h.termination_request()).encode(),
    ),
    obj_spec("parse_envelope", h.termination_request(), parse_envelope),
    obj_spec(
        "verify_envelope",
        h.termination_request(),
        _verify_termination,
        _signed(h.termination_request()),
    ),
    obj_spec("verify_request", h.termination_request(), _request, _signed(h.termination_request())),
    obj_spec("verify_receipt", h.receipt(), _receipt, _signed(h.receipt())),
    obj_spec(
        "parse_binding",
        h.binding(),
        lambda v: parse_binding(v, app_id=h.APP_ID, service_id=h.SERVICE_ID),
    ),
    obj_spec(
        "parse_binding_list", h.binding_list(), lambda v: parse_binding_list(v, app_id=h.APP_ID)
    ),
    obj_spec("parse_app", h.app(), lambda v: parse_app(v, app_id=h.APP_ID)),
    obj_spec("parse_registry_info", h.registry_info(), parse_registry_info),
    obj_spec(
        "verify_revocation_record", h.revocation_record(), _record, _signed(h.revocation_record())
    ),
    obj_spec("parse_problem", h.problem(), _problem),
    obj_spec("verify_bundle", h.bundle(), verify_bundle, _bundle_ok),
    file_spec(
        "key file (encrypted)", ENCRYPTED_KEY, _key_file(KEY_PASS), _seed_ok, relpath="k.json"
    ),
    file_spec("key file (unencrypted)", PLAIN_KEY, _key_file(b""), _seed_ok, relpath="k.json"),
    file_spec("load_plan", h.plan(), load_plan),
    file_spec(
        "load_config",
        {"profiles": h.config_profiles()},
        load_config,
        _config_ok,
        relpath="config.toml",
        encode=_toml,
    ),
    file_spec(
        "JournalStore.load",
        h.journal_log(),
        _journal,
        relpath=f"v2/state/{h.APP_ID}/{h.SERVICE_ID}.journal",
        encode=_json_lines,
    ),
    file_spec(
        "JournalStore.load (format 1)",
        h.journal(),
        _journal,
        relpath=f"state/{h.APP_ID}/{h.SERVICE_ID}.json",
    ),
    file_spec("PinStore", h.pins(), _pins, relpath="known_registries.json"),
    file_spec("Archive.load+verify_bundle", h.bundle(), _archive, _bundle_ok),
]
IDS = [spec.name for spec in SPECS]


@pytest.fixture(scope="module")
def where(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch folder shared by every example of the module."""
    path = tmp_path_factory.mktemp("fuzz")
    path.chmod(0o700)
    return path


def feed(spec: Spec, kind: str, call: Callable[[], Any]) -> None:
    """Run one example: an OmictlError is a clean refusal, anything else fails the test."""
    h.count(f"fuzz {spec.name} [{kind}]")
    try:
        result = call()
    except OmictlError:
        return
    spec.accepted(result)


# ---------------------------------------------------------------------------- properties


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_valid_example_passes(spec: Spec, where: Path) -> None:
    """The valid document is accepted, from a value and from its bytes."""
    for result in (spec.on_value(spec.valid, where), spec.on_bytes(spec.valid_bytes, where)):
        spec.accepted(result)
        assert result is not None


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@fuzz(JSON_EXAMPLES)
@given(data=st.data())
def test_arbitrary_json_values(spec: Spec, where: Path, data: st.DataObject) -> None:
    """Arbitrary JSON values (and values shaped like the valid one) raise only OmictlError."""
    value = data.draw(h.json_inputs(spec.valid), label="value")
    feed(spec, "json", lambda: spec.on_value(value, where))


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@fuzz(BYTES_EXAMPLES)
@given(data=st.data())
def test_arbitrary_bytes(spec: Spec, where: Path, data: st.DataObject) -> None:
    """Arbitrary bytes (and byte-level damage of the valid document) raise only OmictlError."""
    raw = data.draw(h.any_bytes(spec.valid_bytes), label="raw")
    feed(spec, "bytes", lambda: spec.on_bytes(raw, where))


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@fuzz(MUTATION_EXAMPLES)
@given(data=st.data())
def test_mutations_of_valid_document(spec: Spec, where: Path, data: st.DataObject) -> None:
    """Mutations of a valid document raise only OmictlError; accepted ones keep the signed bytes."""
    value = data.draw(h.mutated(spec.valid), label="mutated")
    feed(spec, "mutation", lambda: spec.on_value(value, where))


DEPTHS = (200, 900, 990, 1000, 1100, 5000, 100_000)


def _deep_inputs(spec: Spec) -> Iterator[bytes]:
    """The valid document with its root or one top-level member nested absurdly deep."""
    if spec.name == "load_config":
        for depth in DEPTHS:
            for nested in ("[" * depth + "]" * depth, "{a=" * depth + "1" + "}" * depth):
                yield f"x = {nested}\n".encode()
                yield f"[profiles.default]\nregistry = {nested}\n".encode()
        return
    marker = '"__omictl_deep__"'
    texts = [marker]
    if isinstance(spec.valid, dict):
        for key in spec.valid:
            doc = dict(spec.valid)
            doc[key] = "__omictl_deep__"
            texts.append(json.dumps(doc))
    for text in texts:
        for depth in DEPTHS:
            for nested in ("[" * depth + "]" * depth, '{"a":' * depth + "0" + "}" * depth):
                yield text.replace(marker, nested).encode()


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_deep_nesting(spec: Spec, where: Path) -> None:
    """Nesting past the interpreter's recursion limit raises only OmictlError."""
    for raw in _deep_inputs(spec):
        feed(spec, "deep", lambda raw=raw: spec.on_bytes(raw, where))  # type: ignore[misc]


# ---------------------------------------------------------------------------- env:VAR keys

SEED_SPELLINGS = [
    KEY_SEED.hex(),
    KEY_SEED.hex().upper(),
    h.encodings(KEY_SEED)["base64"].decode(),
    h.encodings(KEY_SEED)["base64-unpadded"].decode(),
    h.encodings(KEY_SEED)["base64url"].decode(),
    "  " + KEY_SEED.hex()[:32] + "\n" + KEY_SEED.hex()[32:] + "\n",
    json.dumps(PLAIN_KEY),
    json.dumps(ENCRYPTED_KEY),
]
ENV_KEY = Spec(
    name="keyref env:VAR",
    valid=SEED_SPELLINGS[0],
    on_value=lambda value, where: _env_key(
        (value if isinstance(value, str) else json.dumps(value)).encode("utf-8", "surrogateescape"),
        where,
    ),
    on_bytes=_env_key,
    accepted=_no_check,
    valid_bytes=SEED_SPELLINGS[0].encode(),
)
KEY_PUBLIC = plain_key(KEY_SEED, name="x").public_key


@pytest.mark.parametrize("spelling", SEED_SPELLINGS, ids=range(len(SEED_SPELLINGS)))
def test_env_key_valid_spellings_pass(spelling: str, where: Path) -> None:
    """Every seed spelling (hex, HEX, base64, base64url, key file JSON) loads the known key."""
    public, seed = _env_key(spelling.encode(), where)
    assert public == KEY_PUBLIC
    assert seed in (None, KEY_SEED)


@fuzz(BYTES_EXAMPLES)
@given(
    raw=st.one_of(
        st.binary(max_size=120),
        h.ANY_TEXT.map(lambda s: s.encode("utf-8", "surrogatepass")),
        st.sampled_from(SEED_SPELLINGS).map(str.encode).flatmap(h.mutated_bytes),
    )
)
def test_env_key_arbitrary_values(raw: bytes, where: Path) -> None:
    """Any env:VAR value (bytes, text, damaged seed spellings) raises only OmictlError."""
    feed(ENV_KEY, "bytes", lambda: _env_key(raw, where))


@fuzz(JSON_EXAMPLES)
@given(
    doc=st.one_of(h.mutated(PLAIN_KEY), h.mutated(ENCRYPTED_KEY), h.JSON_VALUES),
)
def test_env_key_mutated_documents(doc: Any, where: Path) -> None:
    """A mutated key file document in env:VAR raises only OmictlError or yields the real key."""
    text = json.dumps(doc)

    def call() -> Any:
        public, seed = _env_key(text.encode("utf-8", "surrogateescape"), where)
        if isinstance(doc, dict) and doc.get("public_key") == KEY_PUBLIC.hex():
            assert seed in (None, KEY_SEED)
        return public

    feed(ENV_KEY, "mutation", call)


# ---------------------------------------------------------------------------- config edges

CONFIG_EDGES = [
    "x = " + "1" * 5000 + "\n",  # past Python's int-from-string digit limit
    "[profiles.default]\ntimeout = " + "9" * 400 + "\n",  # an int no float can hold
    "[profiles.default]\ntimeout = nan\n",
    "[profiles.default]\ntimeout = inf\n",
    "[profiles.default]\nconcurrency = " + "9" * 4000 + "\n",
    "[profiles.default]\nconcurrency = 1e400\n",
    "[profiles.default]\noutput = [1, 2]\n",
    "[profiles.default]\nregistry = 1979-05-27T07:32:00Z\n",
    "profiles = 3\n",
    "[profiles]\ndefault = 1\n",
]


@pytest.mark.parametrize("text", CONFIG_EDGES, ids=range(len(CONFIG_EDGES)))
def test_config_edge_values_raise_usage_error(text: str, where: Path) -> None:
    """Huge integers, NaN, infinities, dates and wrong shapes in config.toml are a UsageError."""
    path = where / "edge.toml"
    path.write_text(text)
    h.count("fuzz load_config [edge]")
    with pytest.raises(UsageError):
        load_config(path)


# ---------------------------------------------------------------------------- registry URLs

#: Characters that matter to urllib: brackets, user info, ports, NFKC-decomposing forms.
URL_CHARS = st.sampled_from([*"htps:/[]@?#%.0123456789abcdefv-_", "\uff03", "\u2100", "\uff0f"])
URL_SPEC = Spec(
    name="registry URL (normalize_url, pin file keys)",
    valid=h.REGISTRY_URL,
    on_value=lambda value, where: _url(str(value), where),
    on_bytes=lambda raw, where: _url(raw.decode("utf-8", "replace"), where),
    accepted=_no_check,
    valid_bytes=h.REGISTRY_URL.encode(),
)


def _url(url: str, where: Path) -> Any:
    """normalize_url on ``url``, then a pin file keyed by it."""
    from omictl.transport.urls import normalize_url

    try:
        normalize_url(url)
    finally:
        doc = h.pins()
        doc["registries"] = {url: doc["registries"][h.REGISTRY_URL]}
        path = where / "url-pins.json"
        path.write_text(json.dumps(doc))
        path.chmod(0o600)
        PinStore(path).all()


@fuzz(BYTES_EXAMPLES)
@given(
    scheme=st.sampled_from(["https://", "http://", "HTTPS://", "https:", "", "ftp://"]),
    rest=st.text(URL_CHARS, max_size=30),
)
def test_registry_urls_raise_only_omictl_errors(scheme: str, rest: str, where: Path) -> None:
    """Any registry URL (CLI flag, config or pin file key) raises only OmictlError."""
    feed(URL_SPEC, "text", lambda: URL_SPEC.on_value(scheme + rest, where))


@pytest.mark.parametrize("url", ["https://[abc", "http://]x[", "https://a\uff03b", "https://[::1"])
def test_malformed_url_is_a_usage_error(url: str, where: Path) -> None:
    """URLs urllib itself refuses (unbalanced brackets, NFKC tricks) are a UsageError."""
    from omictl.transport.urls import normalize_url

    h.count("fuzz registry URL (normalize_url, pin file keys) [edge]")
    with pytest.raises(UsageError):
        normalize_url(url)
    with pytest.raises(UsageError):
        _url(url, where)


@pytest.mark.parametrize("value", ["{\udc80}", "{\ud800", '{"format": "\udcff"}'])
def test_env_key_with_undecodable_bytes_is_a_keystore_error(value: str, where: Path) -> None:
    """An env:VAR key document holding bytes that are not UTF-8 is a KeystoreError."""
    h.count("fuzz keyref env:VAR [edge]")
    with pytest.raises(KeystoreError, match="OMICTL_FUZZ_KEY is not a valid key file"):
        load_public_key("env:OMICTL_FUZZ_KEY", keys_dir=where, env={"OMICTL_FUZZ_KEY": value})
