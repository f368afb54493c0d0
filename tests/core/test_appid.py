"""AppID parsing and registry URL derivation (PROTOCOL.md section 2)."""

from __future__ import annotations

import pytest

from omictl.core.appid import parse_app_id, registry_url_for, validate_service_id
from omictl.errors import UsageError


def test_parse_draft_app_id() -> None:
    """The draft's AppID parses into its parts."""
    app = parse_app_id("org.omiappreg.alice.business_app.7f8a9d")
    assert app.domain_labels == ("org", "omiappreg")
    assert (app.namespace, app.project, app.unique_hash) == ("alice", "business_app", "7f8a9d")
    assert str(app) == "org.omiappreg.alice.business_app.7f8a9d"


def test_registry_url_is_domain_reversed() -> None:
    """The default registry is https:// + the reversed domain labels."""
    assert registry_url_for("org.omiappreg.alice.business_app.7f8a9d") == "https://omiappreg.org"
    assert registry_url_for("io.example.reg.acme.shop.abcdef12") == "https://reg.example.io"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "omiappreg.alice.business_app.7f8a9d",  # domain of one label
        "org.omiappreg.alice.business_app.7F8A9D",  # upper-case hash
        "org.omiappreg.alice.business_app.7f8a9",  # hash too short
        "org.omiappreg.alice.business_app.xyzxyz",  # not hex
        "org.omiappreg.Alice.business_app.7f8a9d",  # upper case label
        "org..alice.business_app.7f8a9d",  # empty label
        "org.omiappreg.-alice.business_app.7f8a9d",  # leading dash
        "org.omiappreg.alice.business app.7f8a9d",  # space
        "org.omiappreg.alice/x.business_app.7f8a9d",  # slash
        "a" * 250 + ".b.c.d.7f8a9d",  # too long
    ],
)
def test_invalid_app_ids_are_rejected(bad: str) -> None:
    """Malformed AppIDs are usage errors with a hint."""
    with pytest.raises(UsageError) as info:
        parse_app_id(bad)
    assert info.value.hint


@pytest.mark.parametrize("bad", ["", "..", "a/b", "a b", "-x", "x" * 129, "é"])
def test_invalid_service_ids_are_rejected(bad: str) -> None:
    """Service ids must be safe path segments."""
    with pytest.raises(UsageError):
        validate_service_id(bad)


def test_valid_service_id() -> None:
    """The draft's service id is valid."""
    assert validate_service_id("cms-article-77") == "cms-article-77"
