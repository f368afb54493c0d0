"""Settings resolution: flag > environment > profile > default, one test per layer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from omictl.config import edit_config, load_config, resolve_settings
from omictl.errors import UsageError


def write_profile(home: Path, profile: str = "default", **values: object) -> None:
    save_config(home / "config.toml", {profile: dict(values)})


def save_config(path: Path, profiles: dict[str, dict[str, Any]]) -> None:
    """Write ``profiles`` the way `omictl config set` does, one setting at a time."""
    for name, table in profiles.items():
        for key, value in table.items():
            edit_config(path, name, key, value)


def test_default_layer(tmp_path: Path) -> None:
    """With nothing set, the defaults apply and are reported as such."""
    s = resolve_settings(home=str(tmp_path), profile=None, registry=None, output=None, env={})
    assert (s.registry, s.key, s.timeout, s.concurrency, s.output) == (
        None,
        "master",
        10.0,
        8,
        "text",
    )
    assert set(s.sources.values()) == {"default"}


def test_profile_layer(tmp_path: Path) -> None:
    """A profile's values beat the defaults."""
    write_profile(
        tmp_path, registry="https://reg.example", key="ci", timeout=3, concurrency=16, output="json"
    )
    s = resolve_settings(home=str(tmp_path), profile=None, registry=None, output=None, env={})
    assert (s.registry, s.key, s.timeout, s.concurrency, s.output) == (
        "https://reg.example",
        "ci",
        3.0,
        16,
        "json",
    )
    assert s.sources["registry"] == "profile"


def test_env_layer_beats_profile(tmp_path: Path) -> None:
    """Environment variables beat the profile."""
    write_profile(tmp_path, registry="https://profile.example", key="p")
    env = {
        "OMICTL_REGISTRY": "https://env.example",
        "OMICTL_KEY": "env:SEED",
        "OMICTL_TIMEOUT": "7",
        "OMICTL_CONCURRENCY": "2",
        "OMICTL_OUTPUT": "json",
    }
    s = resolve_settings(home=str(tmp_path), profile=None, registry=None, output=None, env=env)
    assert (s.registry, s.key, s.timeout, s.concurrency, s.output) == (
        "https://env.example",
        "env:SEED",
        7.0,
        2,
        "json",
    )
    assert s.sources["registry"] == "env"


def test_flag_layer_beats_env(tmp_path: Path) -> None:
    """Flags beat environment variables."""
    env = {"OMICTL_REGISTRY": "https://env.example", "OMICTL_OUTPUT": "json"}
    s = resolve_settings(
        home=str(tmp_path), profile=None, registry="https://flag.example", output="text", env=env
    )
    assert (s.registry, s.output) == ("https://flag.example", "text")
    assert s.sources["registry"] == "flag"
    assert s.with_overrides(timeout=2.5).timeout == 2.5


def test_named_profile_from_env(tmp_path: Path) -> None:
    """OMICTL_PROFILE selects a profile; --profile beats it."""
    save_config(tmp_path / "config.toml", {"ci": {"key": "ci-key"}, "dev": {"key": "dev-key"}})
    s = resolve_settings(
        home=str(tmp_path), profile=None, registry=None, output=None, env={"OMICTL_PROFILE": "ci"}
    )
    assert (s.profile, s.key) == ("ci", "ci-key")
    s = resolve_settings(
        home=str(tmp_path), profile="dev", registry=None, output=None, env={"OMICTL_PROFILE": "ci"}
    )
    assert (s.profile, s.key) == ("dev", "dev-key")


def test_unknown_profile_is_usage_error(tmp_path: Path) -> None:
    """Naming a profile that does not exist is a usage error with a hint."""
    with pytest.raises(UsageError) as info:
        resolve_settings(home=str(tmp_path), profile="nope", registry=None, output=None, env={})
    assert info.value.hint and "config set" in info.value.hint


@pytest.mark.parametrize(
    "text",
    [
        "[profiles.default]\ntimeout = -1\n",
        "[profiles.default]\nbogus = 1\n",
        "[profiles.default\n",
        "profiles = 3\n",
        '[profiles.default]\noutput = "xml"\n',
    ],
)
def test_bad_config_file_is_usage_error(tmp_path: Path, text: str) -> None:
    """A config file with bad TOML or bad values is a usage error naming the file."""
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(UsageError) as info:
        resolve_settings(home=str(tmp_path), profile=None, registry=None, output=None, env={})
    assert (
        "config.toml" in info.value.message
        or "timeout" in info.value.message
        or "output" in info.value.message
    )


def test_bad_env_value_names_the_variable(tmp_path: Path) -> None:
    """A bad environment value is a usage error naming the variable."""
    with pytest.raises(UsageError) as info:
        resolve_settings(
            home=str(tmp_path),
            profile=None,
            registry=None,
            output=None,
            env={"OMICTL_CONCURRENCY": "lots"},
        )
    assert "OMICTL_CONCURRENCY" in info.value.message


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    """edit_config writes TOML that load_config reads back, strings escaped, mode 0600."""
    profiles = {"default": {"registry": 'https://r.example/"q"', "timeout": 2.5, "concurrency": 4}}
    save_config(tmp_path / "config.toml", profiles)
    assert load_config(tmp_path / "config.toml") == profiles
    assert (tmp_path / "config.toml").stat().st_mode & 0o777 == 0o600


def test_config_set_keeps_what_the_user_wrote(tmp_path: Path) -> None:
    """Comments, other tables and other profiles (even one whose quoted name omictl would
    not accept on the command line) survive a set and an unset; the file is edited, not
    regenerated."""
    path = tmp_path / "config.toml"
    original = (
        "# my settings: keep this comment\n"
        "[tools]\n"
        'editor = "vi"  # and this one\n'
        "\n"
        "[profiles.default]\n"
        'registry = "https://r.example"  # production\n'
        "\n"
        '[profiles."team.shared"]\n'
        "timeout = 5\n"
    )
    path.write_text(original)
    assert edit_config(path, "default", "concurrency", 3)
    text = path.read_text()
    for kept in (
        "# my settings: keep this comment",
        'editor = "vi"  # and this one',
        'registry = "https://r.example"  # production',
        '[profiles."team.shared"]',
    ):
        assert kept in text
    assert load_config(path) == {
        "default": {"registry": "https://r.example", "concurrency": 3},
        "team.shared": {"timeout": 5.0},
    }
    assert edit_config(path, "default", "concurrency", None)
    assert not edit_config(path, "default", "concurrency", None)  # nothing to remove
    assert path.read_text() == original
    assert edit_config(path, "ci", "output", "json")  # a new profile is a new table
    assert load_config(path)["ci"] == {"output": "json"}
    assert "# my settings: keep this comment" in path.read_text()


def test_config_set_refuses_a_file_it_cannot_read_and_leaves_it(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[profiles.default]\nregistry = \n")
    with pytest.raises(UsageError, match="not valid TOML"):
        edit_config(path, "default", "timeout", 3.0)
    assert path.read_text() == "[profiles.default]\nregistry = \n"


@pytest.mark.parametrize(
    "original",
    ['profiles.ci.key = "k"\n', '[profiles]\nci.key = "k"\n', '[profiles.ci]\nkey = "k"\n'],
)
def test_unsetting_a_profiles_last_key_keeps_the_profile(tmp_path: Path, original: str) -> None:
    """However the profile was written (dotted keys too), unsetting its last key leaves it
    there, empty: `--profile ci` still names a profile."""
    path = tmp_path / "config.toml"
    path.write_text(original)
    assert edit_config(path, "ci", "key", None)
    assert load_config(path) == {"ci": {}}


def test_concurrent_config_sets_lose_nothing(tmp_path: Path) -> None:
    """Two writers at once (two `config set` in a CI script's background jobs): each
    read-modify-write holds the lock, so every setting lands."""
    import threading

    path = tmp_path / "config.toml"
    keys = [f"p{i}" for i in range(8)]

    def writer(profile: str) -> None:
        for n in range(1, 6):
            edit_config(path, profile, "concurrency", n)

    threads = [threading.Thread(target=writer, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert load_config(path) == {k: {"concurrency": 5} for k in keys}


@pytest.mark.parametrize("kind", ["file", "dangling", "loop"])
def test_a_symlinked_config_is_not_edited_through(tmp_path: Path, kind: str) -> None:
    """A config.toml that is a link (a dotfile manager's, or a dangling or looping one):
    `config set` says so (exit 2) and touches neither the link nor what it points to,
    nor creates anything there; reading through the link still works."""
    real = tmp_path / "dotfiles" / "omictl.toml"
    real.parent.mkdir()
    real.write_text("# mine\n[profiles.default]\ntimeout = 3\n")
    real.chmod(0o644)
    link = tmp_path / "home" / "config.toml"
    link.parent.mkdir()
    link.symlink_to({"file": real, "dangling": tmp_path / "nowhere" / "x.toml", "loop": link}[kind])
    with pytest.raises(UsageError, match="symlink"):
        edit_config(link, "default", "concurrency", 5)
    assert link.is_symlink() and not (tmp_path / "nowhere").exists()
    assert real.read_text() == "# mine\n[profiles.default]\ntimeout = 3\n"
    assert real.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in real.parent.iterdir()) == ["omictl.toml"]
    if kind == "file":
        assert load_config(link) == {"default": {"timeout": 3.0}}


def test_unsetting_what_is_not_set_writes_nothing(tmp_path: Path) -> None:
    """A no-op unset needs no write access: no folder, no lock file, no change."""
    path = tmp_path / "cfg" / "config.toml"
    assert not edit_config(path, "default", "timeout", None)
    assert not path.parent.exists()


def test_a_symlinked_config_is_refused_with_what_to_edit(tmp_path: Path) -> None:
    """The refusal names the link's target and, for an unset, says to remove the line."""
    real = tmp_path / "real.toml"
    real.write_text("[profiles.default]\ntimeout = 3\n")
    link = tmp_path / "config.toml"
    link.symlink_to(real)
    with pytest.raises(UsageError) as info:
        edit_config(link, "default", "timeout", None)
    assert str(real) in info.value.message
    assert "remove the line timeout" in (info.value.hint or "")
