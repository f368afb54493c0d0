"""Where omictl keeps things, and which settings apply.

Settings resolve flag > environment > profile (``config.toml``) > default (CLI.md).
With ``--home DIR`` / ``OMICTL_HOME`` every file lives under DIR; otherwise platformdirs'
per-user folders are used.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from omictl.errors import UsageError, short_message
from omictl.fsutil import atomic_write_bytes, read_capped, updating

APP_NAME = "omictl"
DEFAULT_PROFILE = "default"
DEFAULT_KEY_REF = "master"
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_CONCURRENCY = 8
OUTPUT_FORMATS = ("text", "json")
#: The settings a profile may hold, with their parsers (``config set`` checks values).
PROFILE_KEYS = ("registry", "key", "timeout", "concurrency", "output")
MAX_CONFIG_BYTES = 256 * 1024
_PROFILE_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class Paths:
    """Every location omictl reads or writes."""

    config_file: Path
    keys_dir: Path
    state_dir: Path
    receipts_dir: Path
    pins_file: Path

    @classmethod
    def for_home(cls, home: Path | None) -> Paths:
        """Paths under ``home``, or platformdirs' per-user folders when ``home`` is None."""
        if home is not None:
            home = home.expanduser().absolute()
            return cls(
                config_file=home / "config.toml",
                keys_dir=home / "keys",
                state_dir=home / "state",
                receipts_dir=home / "receipts",
                pins_file=home / "known_registries.json",
            )
        import platformdirs  # lazy: only needed without --home

        dirs = platformdirs.PlatformDirs(APP_NAME, appauthor=False)
        data = Path(dirs.user_data_dir)
        return cls(
            config_file=Path(dirs.user_config_dir) / "config.toml",
            keys_dir=data / "keys",
            state_dir=Path(dirs.user_state_dir) / "state",
            receipts_dir=data / "receipts",
            pins_file=data / "known_registries.json",
        )


@dataclass(frozen=True)
class Invalid:
    """A profile value omictl cannot use, kept as written so that ``config set`` and
    ``config unset`` can repair the file it is in (see :func:`load_config`)."""

    #: the value as written, by its repr (a TOML ``nan`` is not equal to itself, and the
    #: edit's read-back compares the profiles before and after)
    raw: str
    message: str


@dataclass(frozen=True)
class Settings:
    """The resolved settings of one invocation."""

    paths: Paths
    profile: str = DEFAULT_PROFILE
    registry: str | None = None
    key: str = DEFAULT_KEY_REF
    timeout: float = DEFAULT_TIMEOUT_S
    concurrency: int = DEFAULT_CONCURRENCY
    output: str = "text"
    debug: bool = False
    #: where each setting came from: "flag", "env", "profile" or "default"
    sources: dict[str, str] = field(default_factory=dict, compare=False)
    #: settings whose profile or environment value is unusable (only when resolved with
    #: ``lenient``, for the ``config`` commands): key -> (what is wrong, how to repair it);
    #: the next layer (or the default) applies, except for a ``key`` reference of a bad
    #: form, which stays the value (the commands that use it refuse it)
    invalid: dict[str, tuple[str, str]] = field(default_factory=dict, compare=False)

    def with_overrides(self, **values: Any) -> Settings:
        """A copy with command-level flags applied (flag beats everything)."""
        given = {k: v for k, v in values.items() if v is not None}
        sources = dict(self.sources)
        sources.update({k: "flag" for k in given})
        return replace(self, sources=sources, **given)


#: The longest ``timeout`` (seconds).
MAX_TIMEOUT = 600


def validate_profile_name(name: str) -> str:
    """Profile names are 1-64 of ``[A-Za-z0-9_-]``."""
    if not _PROFILE_RE.fullmatch(name):
        raise UsageError(
            f"profile name {name!r} is not valid", hint="use letters, digits, '_' and '-'"
        )
    return name


def parse_setting(key: str, value: object, *, source: str, check_ref: bool = False) -> Any:
    """Check one setting's value; raise :class:`UsageError` naming ``source`` if wrong.

    ``check_ref`` also checks a ``key`` reference's form (``config set key``): elsewhere a
    stored reference is checked when it is used, so an explicit ``--key`` or a command
    that needs no key is never stopped by it (``cli.common.default_key_ref``)."""
    if key not in PROFILE_KEYS:
        raise UsageError(
            f"unknown setting {key!r} (from {source})", hint=f"settings: {', '.join(PROFILE_KEYS)}"
        )
    if key in ("registry", "key"):
        if not isinstance(value, str) or not value:
            raise UsageError(f"{key} (from {source}) must be a non-empty string")
        if key == "key" and check_ref:
            from omictl.keyref import check_key_ref  # lazy: keyref imports this module

            try:
                check_key_ref(value)
            except UsageError as exc:
                raise UsageError(f"key (from {source}): {exc.message}", hint=exc.hint) from exc
        return value
    if key == "timeout":
        try:
            timeout = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError) as exc:  # Overflow: a huge TOML integer
            raise UsageError(f"timeout (from {source}) must be a number of seconds") from exc
        if not 0 < timeout <= MAX_TIMEOUT:  # NaN fails both
            raise UsageError(
                f"timeout (from {source}) must be more than 0 and at most {MAX_TIMEOUT} seconds"
            )
        return timeout
    if key == "concurrency":
        try:
            conc = int(str(value))
        except ValueError as exc:
            raise UsageError(f"concurrency (from {source}) must be a whole number") from exc
        if not 1 <= conc <= 256:
            raise UsageError(f"concurrency (from {source}) must be between 1 and 256")
        return conc
    if value not in OUTPUT_FORMATS:
        raise UsageError(f"output (from {source}) must be 'text' or 'json'")
    return value


def load_config(path: Path, *, lenient: bool = False) -> dict[str, dict[str, Any]]:
    """Read ``config.toml``: ``[profiles.NAME]`` tables of settings. Missing file: empty.

    Raises :class:`UsageError` for a file that is not valid TOML or holds unknown settings
    or bad values; with ``lenient``, an unknown setting or a bad value is kept as an
    :class:`Invalid` instead (the file must still be TOML of the right shape).
    """
    if not path.exists():
        return {}
    return _profiles(_read_text(path), path, lenient=lenient)


def _read_text(path: Path) -> str:
    """config.toml's text ("" when there is none). Raises :class:`UsageError`."""
    if not path.exists():
        return ""
    raw = read_capped(path, limit=MAX_CONFIG_BYTES, error=UsageError)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{path} is not valid TOML: {short_message(exc)}", hint="fix it or remove it"
        ) from exc


def _profiles(text: str, path: Path, *, lenient: bool = False) -> dict[str, dict[str, Any]]:
    """The profiles of config.toml's ``text`` (see :func:`load_config`)."""
    import tomllib  # lazy: most runs have no config file

    try:
        doc = tomllib.loads(text)
    except (ValueError, RecursionError) as exc:
        # ValueError: TOMLDecodeError, and integers past the int-from-string digit limit;
        # RecursionError: arrays or inline tables nested deeper than the interpreter allows
        raise UsageError(
            f"{path} is not valid TOML: {short_message(exc)}", hint="fix it or remove it"
        ) from exc
    profiles = doc.get("profiles", {})
    if not isinstance(profiles, dict):
        raise UsageError(f"{path}: 'profiles' must be a table")
    out: dict[str, dict[str, Any]] = {}
    for name, table in profiles.items():
        if not isinstance(table, dict):
            raise UsageError(f"{path}: profiles.{name} must be a table")
        out[name] = {}
        for key, value in table.items():
            try:
                out[name][key] = parse_setting(key, value, source=f"{path} [profiles.{name}]")
            except UsageError as exc:
                if not lenient:
                    exc.hint = repair_hint(name, key)
                    raise
                out[name][key] = Invalid(repr(value), exc.message)
    return out


def key_ref_problem(settings: Settings) -> tuple[str, str] | None:
    """What is wrong with the form of the key reference the settings give (from
    ``OMICTL_KEY`` or the profile), with how to repair it; ``None`` when it is fine. It is
    checked where the default key is used (``cli.common.default_key_ref``) and shown by
    ``config show``, not when settings resolve: an explicit ``--key`` or a command that
    needs no key must not be stopped by it."""
    from omictl.keyref import check_key_ref  # lazy: keyref imports this module

    try:
        check_key_ref(settings.key)
    except UsageError as exc:
        source = settings.sources.get("key")
        # only the commands that use the default key refuse it: --key is a way out
        if source == "env":
            return (
                f"key (from OMICTL_KEY): {exc.message}",
                "fix or unset OMICTL_KEY, or pass --key REF",
            )
        where = f"{settings.paths.config_file} [profiles.{settings.profile}]"
        return (
            f"key (from {where}): {exc.message}",
            repair_hint(settings.profile, "key") + ", or pass --key REF",
        )
    return None


def missing_profile(profile: str, config_file: Path) -> UsageError:
    """The error for a ``--profile`` / ``OMICTL_PROFILE`` that config.toml does not hold."""
    return UsageError(
        f"profile {profile!r} is not in {config_file}",
        hint=f"create it with: omictl --profile {profile} config set registry URL",
    )


def profile_exists(settings: Settings) -> bool:
    """Whether the settings' profile is the default one or is in config.toml."""
    return settings.profile == DEFAULT_PROFILE or settings.profile in load_config(
        settings.paths.config_file, lenient=True
    )


def repair_hint(profile: str, key: str) -> str:
    """How to repair a bad ``key`` in ``profile`` (the config commands accept a bad file)."""
    chosen = "" if profile == DEFAULT_PROFILE else f"--profile {profile} "
    if key not in PROFILE_KEYS:
        return f"remove it: omictl {chosen}config unset {key}"
    return (
        f"fix it with: omictl {chosen}config set {key} VALUE (or omictl {chosen}config unset {key})"
    )


CONFIG_HEADER = "# omictl configuration: one [profiles.NAME] table per profile\n\n"


def edit_config(path: Path, profile: str, key: str, value: Any | None) -> bool:
    """Set ``key`` of ``profile`` in ``config.toml`` to ``value`` (already parsed by
    :func:`parse_setting`), or remove it when ``value`` is None; True if the file changed.

    Everything else in the file stays as the user wrote it: other profiles and tables,
    comments, order and layout (tomlkit edits the document in place; rewriting it from
    the parsed settings would drop all of that). The result is read back as omictl reads
    it and must hold exactly the change asked for, else nothing is written. Written
    atomically (mode 0600). A ``config.toml`` that is a symlink (a dotfile manager's) is
    not edited: the atomic write would replace the link (or, followed, another file's
    mode, owner and group), so the user is told to edit its target by hand. Raises
    :class:`UsageError` for an unreadable or invalid file, or a symlink.
    """
    validate_profile_name(profile)
    if value is None and key not in load_config(path, lenient=True).get(profile, {}):
        return False  # nothing to remove: no lock, no write (a read-only home is fine)
    _refuse_symlink(path, profile, key, value)  # said first, whatever else is wrong
    with updating(path, error=UsageError):  # two `config set` at once lose nothing
        _refuse_symlink(path, profile, key, value)  # and again, against another omictl
        return _edit_locked(path, profile, key, value)


def _refuse_symlink(path: Path, profile: str, key: str, value: Any | None) -> None:
    """A ``config.toml`` that is a symlink is not edited (see :func:`edit_config`)."""
    if not path.is_symlink():
        return
    if not path.exists():  # dangling, or a loop
        raise UsageError(
            f"{path} is a symlink that leads to no file ({os.readlink(path)})",
            hint=f"fix or remove the link {path}",
        )
    change = (
        f"remove the line {key} = ... from [profiles.{profile}]"
        if value is None
        else f"set {key} in [profiles.{profile}]"
    )
    raise UsageError(
        f"{path} is a symlink to {os.readlink(path)}; omictl does not edit through links",
        hint=f"edit that file by hand ({change}), or replace the link with a file",
    )


def _edit_locked(path: Path, profile: str, key: str, value: Any | None) -> bool:
    import tomlkit  # lazy: only `config set` and `config unset` edit the file
    from tomlkit.exceptions import TOMLKitError

    text = _read_text(path)
    # lenient: a bad value elsewhere in the file (or this one) must not stop its repair;
    # the file must still be TOML omictl can read
    expected = _profiles(text, path, lenient=True)
    table = expected.setdefault(profile, {})
    if value is None:
        if key not in table:
            return False
        del table[key]
    else:
        table[key] = value
    try:
        doc = tomlkit.parse(text or CONFIG_HEADER)
        profiles = doc.get("profiles")
        if profiles is None:
            profiles = tomlkit.table(is_super_table=True)
            doc["profiles"] = profiles
        if profile not in profiles:
            profiles[profile] = tomlkit.table()
        if value is None:
            del profiles[profile][key]
        else:
            profiles[profile][key] = value
        new_text = tomlkit.dumps(doc)
        written = _profiles(new_text, path, lenient=True)
        if profile not in written:
            # a profile written with dotted keys (profiles.ci.key = ...) is not written at
            # all once its last key goes: keep it, as an empty table (`--profile ci` works)
            profiles[profile] = tomlkit.table()
            new_text = tomlkit.dumps(doc)
            written = _profiles(new_text, path, lenient=True)
    except (TOMLKitError, KeyError, TypeError, ValueError) as exc:
        raise UsageError(
            f"cannot edit {path}: {short_message(exc)}",
            hint=f"edit it by hand: [profiles.{profile}] {key} = ...",
        ) from exc
    if written != expected:
        raise UsageError(
            f"cannot edit {path} without changing more than {profile}.{key}",
            hint=f"edit it by hand: [profiles.{profile}] {key} = ...",
        )
    atomic_write_bytes(path, new_text.encode("utf-8"), error=UsageError, sweep_stale=True)
    return True


def resolve_settings(
    *,
    home: str | None,
    profile: str | None,
    registry: str | None,
    output: str | None,
    debug: bool = False,
    env: Mapping[str, str] | None = None,
    allow_missing_profile: bool = False,
    lenient: bool = False,
) -> Settings:
    """Resolve every setting: flag > environment > profile > default.

    Raises :class:`UsageError` for a bad value at any layer, naming where it came from.
    With ``lenient`` (the ``config`` commands, which must be able to repair a bad
    profile), a bad profile or environment value is recorded in ``Settings.invalid`` and
    the next layer applies; a bad flag is still an error.
    """
    env = os.environ if env is None else env
    if home == "" or (home is None and env.get("OMICTL_HOME") == ""):
        # an unset CI variable must not send omictl to the user's real keystore
        where = "--home" if home == "" else "OMICTL_HOME"
        raise UsageError(
            f"{where} is set but empty",
            hint="name the folder omictl should use, or unset OMICTL_HOME for the user's "
            "own folders",
        )
    home_value = home if home is not None else env.get("OMICTL_HOME") or None
    if (
        home_value
        and Path(home_value).expanduser().exists()
        and not Path(home_value).expanduser().is_dir()
    ):
        raise UsageError(
            f"home {home_value!r} is not a folder",
            hint="--home / OMICTL_HOME names the folder omictl keeps keys, state and receipts in",
        )
    paths = Paths.for_home(Path(home_value) if home_value else None)
    profile_name = validate_profile_name(
        profile if profile is not None else env.get("OMICTL_PROFILE") or DEFAULT_PROFILE
    )
    # every profile is read leniently: a bad value in a profile this run does not use
    # must not stop it; the selected profile's bad values are refused below (unless
    # lenient)
    profiles = load_config(paths.config_file, lenient=True)
    if (
        profile_name not in profiles
        and profile_name != DEFAULT_PROFILE
        and not allow_missing_profile
    ):
        raise missing_profile(profile_name, paths.config_file)
    table = profiles.get(profile_name, {})
    for key, value in table.items():
        if isinstance(value, Invalid) and not lenient:
            raise UsageError(value.message, hint=repair_hint(profile_name, key))
    flags = {"registry": registry, "output": output}
    env_names = {
        "registry": "OMICTL_REGISTRY",
        "key": "OMICTL_KEY",
        "output": "OMICTL_OUTPUT",
        "timeout": "OMICTL_TIMEOUT",
        "concurrency": "OMICTL_CONCURRENCY",
    }
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    invalid: dict[str, tuple[str, str]] = {}
    for key in PROFILE_KEYS:
        flag = flags.get(key)
        env_value = env.get(env_names[key]) or None
        if flag is not None:
            values[key], sources[key] = parse_setting(key, flag, source="the command line"), "flag"
            continue
        if env_value is not None:
            try:
                values[key] = parse_setting(key, env_value, source=env_names[key])
                sources[key] = "env"
                continue
            except UsageError as exc:
                exc.hint = f"fix or unset {env_names[key]}"
                if not lenient:
                    raise
                invalid[key] = (exc.message, exc.hint)
                if isinstance(table.get(key), Invalid):  # both bad: the profile's is met
                    # first by the other commands, so it is said first
                    invalid[key] = (
                        f"{table[key].message}; and {exc.message}",
                        f"{repair_hint(profile_name, key)}; and {exc.hint}",
                    )
        if key in table and not isinstance(table[key], Invalid):
            values[key], sources[key] = table[key], "profile"
        else:
            sources[key] = "default"
    for key, value in table.items():  # lenient only (else refused above)
        # a bad value the environment or a flag hides is still refused by every other
        # command, and a setting omictl does not know too: both are shown
        if isinstance(value, Invalid) and key not in invalid:
            invalid[key] = (value.message, repair_hint(profile_name, key))
    settings = Settings(
        paths=paths,
        profile=profile_name,
        debug=debug,
        sources=sources,
        invalid=invalid,
        **values,
    )
    if lenient and "key" not in invalid and sources.get("key") in ("env", "profile"):
        problem = key_ref_problem(settings)  # shown by config show; refused where used
        if problem is not None:
            invalid["key"] = problem
    return settings
