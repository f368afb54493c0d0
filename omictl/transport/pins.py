"""Pinned registry keys, like SSH ``known_hosts`` (PROTOCOL.md section 3, "Registry key
pinning").

The file (``Paths.pins_file``, ``known_registries.json``) is JSON, written atomically with
mode 0600::

    {"version": 1,
     "registries": {"https://omiappreg.org": {"public_key": "<64 hex>", "key_id": "<16 hex>",
                                              "pinned_at": "2025-01-16T12:00:00Z",
                                              "name": "OMI App Registry"}}}

Registry URLs are keys in their normal form (:func:`omictl.transport.urls.normalize_url`),
so ``HTTPS://Reg.Example:443/`` and ``https://reg.example`` share one pin. The file is read
strictly: anything unexpected is an error naming the file, never a silently empty store
(an empty store would mean "trust whatever key comes next").
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from omictl.core.envelope import PUBLIC_KEY_BYTES, key_id, parse_hex, parse_json
from omictl.errors import UsageError, VerificationError
from omictl.fsutil import atomic_write_json, read_capped, updating
from omictl.transport.urls import normalize_url

#: one process-wide lock: every PinStore of the process shares the pin file
_THREAD_LOCK = threading.Lock()

PINS_FORMAT_VERSION = 1
MAX_PINS_BYTES = 1024 * 1024
_ENTRY_MEMBERS = frozenset({"public_key", "key_id", "pinned_at", "name"})


def repin_hint(registry_url: str) -> str:
    """What to tell a user whose pinned registry key no longer matches."""
    return (
        "if the registry really rotated its key, confirm the new key id out of band, then: "
        f"omictl registry pin {registry_url} --public-key HEX"
    )


def first_use_note(registry_url: str, public_key: bytes) -> str:
    """What to tell a user when a contact pinned ``registry_url``'s key (trust on first
    use): the key id to compare out of band."""
    return (
        f"first contact with {registry_url}: pinned its key {key_id(public_key)} "
        "(trust on first use; compare it out of band: omictl registry show)"
    )


#: Marks, in memory only, a registry whose spellings pin different keys (see _load).
_CONFLICT = "conflicting spellings"


class PinStore:
    """The registry keys this user has pinned, one per normalized registry base URL."""

    def __init__(self, path: Path, *, now: Callable[[], float] = time.time) -> None:
        self.path = path
        self._now = now

    # ------------------------------------------------------------------ reading

    def _corrupt(self, why: str) -> UsageError:
        return UsageError(
            f"pin file {self.path} is corrupt: {why}",
            hint=f"fix or remove {self.path}; registries in it will then be trusted on first "
            "contact again, so check their key ids out of band",
            code="pin_file_corrupt",
        )

    def _load(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        raw = read_capped(self.path, limit=MAX_PINS_BYTES, error=UsageError)
        try:
            doc = parse_json(raw, what="it", error=UsageError)
        except UsageError as exc:
            raise self._corrupt(exc.message) from exc
        if not isinstance(doc, dict) or doc.get("version") != PINS_FORMAT_VERSION:
            raise self._corrupt(f"expected an object with version {PINS_FORMAT_VERSION}")
        registries = doc.get("registries")
        if not isinstance(registries, dict):
            raise self._corrupt("'registries' must be an object")
        spellings: dict[str, dict[str, dict[str, Any]]] = {}
        for url, entry in registries.items():
            try:
                # a pin written by an older omictl may be in its older normal form (a host's
                # trailing dot, dot segments): it is read under today's (the URL httpx sent)
                normal = normalize_url(url, what="pinned registry URL", resolve_dot_segments=True)
            except UsageError as exc:
                raise self._corrupt(exc.message) from exc
            spellings.setdefault(normal, {})[url] = self._check_entry(url, entry)
        out: dict[str, dict[str, Any]] = {}
        for normal, entries in spellings.items():
            if len({e["public_key"] for e in entries.values()}) > 1:
                # two spellings of one registry, two keys: neither is chosen silently
                # (PROTOCOL.md section 3); kept as they are until the user settles it
                out[normal] = {_CONFLICT: entries}
            else:
                out[normal] = entries.get(normal) or next(iter(entries.values()))
        return out

    def _usable(self, url: str, entry: dict[str, Any] | None) -> dict[str, Any] | None:
        """``entry``, unless two spellings of ``url`` pin different keys (then an error)."""
        if entry is None or _CONFLICT not in entry:
            return entry
        found = ", ".join(f"{u!r} (key id {e['key_id']})" for u, e in entry[_CONFLICT].items())
        raise UsageError(
            f"{self.path} pins {url} twice with different keys: {found}",
            hint=f"keep the key you trust: omictl registry pin {url} --public-key HEX "
            f"(replaces both), or omictl registry forget {url} (removes both)",
            code="pin_conflict",
        )

    def _check_entry(self, url: str, entry: object) -> dict[str, Any]:
        if not isinstance(entry, dict) or set(entry) != _ENTRY_MEMBERS:
            raise self._corrupt(f"the entry for {url} must have {sorted(_ENTRY_MEMBERS)}")
        try:
            public_key = parse_hex(
                entry["public_key"], field="public_key", length=PUBLIC_KEY_BYTES, error=UsageError
            )
        except UsageError as exc:
            raise self._corrupt(f"{url}: {exc.message}") from exc
        if entry["key_id"] != key_id(public_key):
            raise self._corrupt(f"{url}: key_id does not match public_key")
        if not isinstance(entry["pinned_at"], str) or not isinstance(entry["name"], str):
            raise self._corrupt(f"{url}: pinned_at and name must be strings")
        return dict(entry)

    @contextlib.contextmanager
    def _updating(self) -> Iterator[None]:
        """Serialize read-modify-write of the pin file across threads and processes, so two
        first contacts at once cannot lose a pin (a lost pin means the next contact trusts
        whatever key it is shown)."""
        with _THREAD_LOCK, updating(self.path, error=UsageError):
            yield

    def _save(self, registries: dict[str, dict[str, Any]]) -> None:
        flat: dict[str, dict[str, Any]] = {}
        for url, entry in registries.items():
            flat.update(entry.get(_CONFLICT, {url: entry}))
        atomic_write_json(
            self.path,
            {"version": PINS_FORMAT_VERSION, "registries": flat},
            error=UsageError,
            sweep_stale=True,
        )

    # ------------------------------------------------------------------ API

    def get(self, registry_url: str) -> bytes | None:
        """The pinned raw public key for ``registry_url``, or None if not pinned.

        Raises :class:`UsageError` for a bad URL or a corrupt pin file.
        """
        entry = self.entry(registry_url)
        return None if entry is None else bytes.fromhex(entry["public_key"])

    def entry(self, registry_url: str) -> dict[str, Any] | None:
        """The pin of ``registry_url`` (``public_key``, ``key_id``, ``pinned_at``, ``name``),
        or None. Raises :class:`UsageError` for a bad URL, a corrupt pin file, or two
        spellings of this registry pinning different keys (code ``pin_conflict``)."""
        url = normalize_url(registry_url, what="registry URL")
        return self._usable(url, self._load().get(url))

    def pin(
        self, registry_url: str, public_key: bytes, *, replace: bool = False, name: str = ""
    ) -> tuple[list[bytes], str]:
        """Pin ``public_key`` for ``registry_url`` (atomic write, mode 0600); return the keys
        pinned before (none, one, or those of conflicting spellings, sorted) and the name
        the pin now holds, both read under the pin file's lock.

        Pinning the key already pinned changes nothing. Raises :class:`VerificationError`
        if another key is pinned and ``replace`` is false: a changed key is never re-pinned
        silently (PROTOCOL.md section 3). Raises :class:`UsageError` for a bad URL or key
        length, or a corrupt or unwritable pin file.
        """
        url = normalize_url(registry_url, what="registry URL")
        kid = key_id(public_key)
        with self._updating():
            return self._pin_locked(url, public_key, kid, replace=replace, name=name)

    def _pin_locked(
        self, url: str, public_key: bytes, kid: str, *, replace: bool, name: str
    ) -> tuple[list[bytes], str]:
        registries = self._load()
        old = registries.get(url)
        before = _keys_of(old)
        learnt = ""
        if old is not None and _CONFLICT in old:
            if not replace:
                self._usable(url, old)  # raises: which of the two keys would it keep?
            # an explicit pin settles the conflict: one entry, one key, and the name the
            # registry gave with that key (else this spelling's, else any other's)
            spellings = old[_CONFLICT]
            first = sorted(
                spellings, key=lambda u: (spellings[u]["public_key"] != public_key.hex(), u != url)
            )
            names = [spellings[u]["name"] for u in first]
            learnt = next((n for n in names if n), "")
            old = None
        if old is not None:
            if old["public_key"] == public_key.hex():
                return before, old["name"]
            if not replace:
                raise VerificationError(
                    f"registry {url} is pinned to key {old['key_id']}, not {kid}; "
                    "refusing to re-pin silently",
                    hint=repin_hint(url),
                    code="registry_key_mismatch",
                )
        # an explicit re-pin (no name given) keeps the name learnt before
        kept = (name or (old["name"] if old is not None else learnt))[:200]
        registries[url] = {
            "public_key": public_key.hex(),
            "key_id": kid,
            "pinned_at": datetime.fromtimestamp(int(self._now()), UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "name": kept,
        }
        self._save(registries)
        return before, kept

    def forget(self, registry_url: str) -> bool:
        """Remove the pin for ``registry_url``; True if there was one.

        Raises :class:`UsageError` for a bad URL or a corrupt or unwritable pin file.
        """
        url = normalize_url(registry_url, what="registry URL")
        with self._updating():
            registries = self._load()
            if registries.pop(url, None) is None:
                return False
            self._save(registries)
            return True

    def all(self) -> dict[str, dict[str, Any]]:
        """Every pin by URL (copies); a registry whose spellings pin different keys maps to
        ``{"conflicting spellings": {spelling: entry}}``.

        Raises :class:`UsageError` for a corrupt pin file.
        """
        return self._load()


def _keys_of(entry: dict[str, Any] | None) -> list[bytes]:
    """The distinct keys of a loaded pin entry (several for conflicting spellings), sorted."""
    if entry is None:
        return []
    entries = entry[_CONFLICT].values() if _CONFLICT in entry else [entry]
    return [bytes.fromhex(h) for h in sorted({e["public_key"] for e in entries})]


@dataclass(frozen=True)
class PinChange:
    """What a ``registry pin`` did: the key pinned before (if any) and the key now."""

    url: str
    old_key: bytes | None
    new_key: bytes
    name: str
    #: "explicit" (``--public-key``) or "tofu" (the key the registry presented)
    source: str
    #: every key pinned before, when there were several (two spellings of the URL that an
    #: older omictl pinned to different keys, settled by this pin); else empty
    settled: tuple[bytes, ...] = ()

    @property
    def changed(self) -> bool:
        """True when the pin file now holds another key than before."""
        return self.old_key != self.new_key

    def to_json(self) -> dict[str, Any]:
        """The ``-o json`` document."""
        return {
            "url": self.url,
            "name": self.name,
            "public_key": self.new_key.hex(),
            "key_id": key_id(self.new_key),
            "previous_key_id": key_id(self.old_key) if self.old_key is not None else None,
            # all of them: one, or the conflicting keys this pin settled
            "previous_key_ids": [key_id(k) for k in self.settled]
            if self.settled
            else ([key_id(self.old_key)] if self.old_key is not None else []),
            "changed": self.changed,
            "source": self.source,
        }


def pin_explicit(pins: PinStore, registry_url: str, public_key_hex: str) -> PinChange:
    """Pin a key the user obtained out of band, replacing any older pin (the explicit
    re-pin of PROTOCOL.md section 3). No network.

    Raises :class:`UsageError` for a malformed URL or key, or a corrupt pin file.
    """
    public_key = parse_hex(
        public_key_hex,
        field="--public-key",
        length=PUBLIC_KEY_BYTES,
        error=UsageError,
        typed=True,
    )
    url = normalize_url(registry_url, what="registry URL")
    # read under the lock with the write: two (or more) when two spellings pinned two keys
    before, name = pins.pin(url, public_key, replace=True)
    return PinChange(
        url=url,
        old_key=before[0] if len(before) == 1 else None,
        new_key=public_key,
        name=name,
        source="explicit",
        settled=tuple(before) if len(before) > 1 else (),
    )
