"""URL rules of the client (PROTOCOL.md section 6), without importing httpx.

Kept apart from :mod:`omictl.transport.http` so the pin store (and ``registry forget``)
can normalize URLs without loading the HTTP stack.
"""

from __future__ import annotations

import functools
import ipaddress
import urllib.parse

from omictl.errors import OmictlError, UsageError

_DEFAULT_PORTS = {"https": 443, "http": 80}
MAX_URL_CHARS = 2048


@functools.lru_cache(maxsize=64)  # asked for every request; a run meets a few hosts
def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1`` (the hosts plain HTTP may reach)."""
    host = host.lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hint_for(url: str) -> str:
    if "://" not in url and url and not url.startswith("/"):
        bare = url.rstrip("/")
        host = bare.split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
        scheme = "http" if is_loopback_host(host) else "https"  # the sandbox serves http
        return f"did you mean {scheme}://{bare}?"
    return "use an https:// URL such as https://registry.example.org"


def normalize_url(
    url: str,
    *,
    what: str = "URL",
    error: type[OmictlError] = UsageError,
    resolve_dot_segments: bool = False,
) -> str:
    """Check the shape of an http(s) URL and return its normal form.

    The normal form has the scheme and host lower-cased, a trailing dot of the host and the
    default port (443/80) dropped, and no trailing slash. Raises ``error`` naming ``what``
    for: anything but ``http`` or ``https``, no host, user info (``user:pass@``), a query
    or fragment, a bad port, ``.`` or ``..`` path segments, whitespace or control
    characters. ``resolve_dot_segments`` is for reading pins written before dot segments
    were refused: they are resolved as httpx resolved them when it sent the requests.
    """
    if not isinstance(url, str) or not url:
        raise error(f"{what} is empty", hint=_hint_for(""))
    if len(url) > MAX_URL_CHARS:
        raise error(f"{what} is longer than {MAX_URL_CHARS} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise error(f"{what} {url!r} contains whitespace or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:  # e.g. an unbalanced "[" of an IPv6 literal
        raise error(f"{what} {url!r} is not a valid URL: {exc}", hint=_hint_for(url)) from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not url.lower().startswith(f"{scheme}://"):
        raise error(f"{what} {url!r} is not an https:// URL", hint=_hint_for(url))
    if "@" in parts.netloc:
        raise error(
            f"{what} must not contain user info (user:password@)",
            hint="omictl authenticates with signatures; remove the credentials from the URL",
        )
    host = (parts.hostname or "").lower()
    if host.endswith(".") and not host.endswith(".."):
        host = host[:-1]  # "reg.example." is the DNS name "reg.example": one pin, not two
    if not host:
        raise error(f"{what} {url!r} has no host", hint=_hint_for(url))
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise error(f"{what} {url!r} must not have a query (?...) or fragment (#...)")
    try:
        port = parts.port
    except ValueError as exc:
        raise error(f"{what} {url!r} has an invalid port") from exc
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    path = parts.path
    if any(segment in (".", "..") for segment in path.split("/")):
        if not resolve_dot_segments:
            # httpx would resolve them; refused so that one URL has one spelling (pins, logs)
            raise error(f"{what} {url!r} must not contain '.' or '..' path segments")
        path = _remove_dot_segments(path)
    path = path.rstrip("/")
    return f"{scheme}://{netloc}{path}"


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4 for an absolute path (the trailing slash is dropped after)."""
    kept: list[str] = []
    for segment in path.split("/")[1:]:
        if segment == "..":
            if kept:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
    return "/" + "/".join(kept)


def check_url(
    url: str,
    *,
    insecure: bool = False,
    what: str = "URL",
    error: type[OmictlError] = UsageError,
) -> str:
    """Apply PROTOCOL.md section 6 to ``url`` and return its normal form (see
    :func:`normalize_url`).

    ``https://`` is always allowed; ``http://`` only to a loopback host, or anywhere when
    ``insecure`` is true (TLS verification is never switched off: ``insecure`` only allows
    plain HTTP). A malformed URL raises ``error`` (default :class:`UsageError`); plain HTTP
    to another host without ``insecure`` always raises :class:`UsageError`, since the
    remedy is the user's explicit ``--insecure``.
    """
    normal = normalize_url(url, what=what, error=error)
    parts = urllib.parse.urlsplit(normal)
    if parts.scheme == "http" and not insecure and not is_loopback_host(parts.hostname or ""):
        raise UsageError(
            f"refusing plain http:// to {parts.hostname} for the {what}: "
            "only loopback hosts may be reached without TLS",
            hint="use https://, or pass --insecure to send signed requests unencrypted "
            "(anyone on the path can read and delay them)",
        )
    return normal


def plain_http_warning(url: str, *, what: str) -> str | None:
    """The loud warning PROTOCOL.md section 6 asks of ``--insecure`` when ``url`` (already
    checked) is plain ``http://`` to a non-loopback host; ``None`` otherwise."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or is_loopback_host(parts.hostname or ""):
        return None
    return (
        f"--insecure: the {what} {host_of(url)} is plain HTTP; signed requests and the "
        "answers omictl acts on travel unencrypted, and anyone on the path can read, "
        "delay or alter them"
    )


def host_of(url: str) -> str:
    """The host (and non-default port) of ``url`` for messages; never raises."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or "?"
        port = parts.port
    except ValueError:
        return "?"
    return f"{host}:{port}" if port is not None else host
