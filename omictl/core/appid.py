"""AppIDs (RDAIDs) and the registry URL derived from them (PROTOCOL.md section 2).

``org.omiappreg.alice.business_app.7f8a9d`` is the reversed registry domain (two labels or
more), then a namespace, a project slug and a unique hash of six or more lower-case hex
characters. Every label matches ``[a-z0-9][a-z0-9_-]*``. Anything else is refused before
any network call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from omictl.errors import OmictlError, UsageError

_LABEL_RE = re.compile(r"[a-z0-9][a-z0-9_-]*")
_HASH_RE = re.compile(r"[0-9a-f]{6,}")
#: Service ids are path segments in the registry API; keep them to a safe alphabet.
_SERVICE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_APP_ID_CHARS = 253


@dataclass(frozen=True)
class AppId:
    """A parsed AppID."""

    domain_labels: tuple[str, ...]  # as written, reversed: ("org", "omiappreg")
    namespace: str
    project: str
    unique_hash: str

    @property
    def registry_domain(self) -> str:
        """The registry's DNS name: the domain labels in normal order."""
        return ".".join(reversed(self.domain_labels))

    def __str__(self) -> str:
        return ".".join((*self.domain_labels, self.namespace, self.project, self.unique_hash))


def parse_app_id(value: str, *, error: type[OmictlError] = UsageError) -> AppId:
    """Parse and validate an AppID. Raises ``error`` saying which part is wrong."""
    hint = "an AppID looks like org.omiappreg.alice.business_app.7f8a9d"
    if not isinstance(value, str) or not value:
        raise error("AppID is empty", hint=hint)
    if len(value) > MAX_APP_ID_CHARS:
        raise error(f"AppID is longer than {MAX_APP_ID_CHARS} characters", hint=hint)
    labels = value.split(".")
    if len(labels) < 5:
        raise error(
            f"AppID {value!r} has {len(labels)} labels; it needs a domain of two or more "
            "labels, a namespace, a project and a hash",
            hint=hint,
        )
    for label in labels:
        if not _LABEL_RE.fullmatch(label):
            raise error(
                f"AppID {value!r} has an invalid label {label!r} "
                "(labels are lower-case a-z, 0-9, '_' and '-', starting with a letter or digit)",
                hint=hint,
            )
    unique_hash = labels[-1]
    if not _HASH_RE.fullmatch(unique_hash):
        raise error(
            f"AppID {value!r} must end in a hash of 6 or more lower-case hex characters",
            hint=hint,
        )
    return AppId(
        domain_labels=tuple(labels[:-3]),
        namespace=labels[-3],
        project=labels[-2],
        unique_hash=unique_hash,
    )


def registry_url_for(app_id: AppId | str) -> str:
    """The default registry base URL: ``https://`` + the domain labels reversed."""
    parsed = app_id if isinstance(app_id, AppId) else parse_app_id(app_id)
    return f"https://{parsed.registry_domain}"


def validate_service_id(value: str, *, error: type[OmictlError] = UsageError) -> str:
    """Check a service id is a safe path segment (1-128 of ``[A-Za-z0-9._-]``)."""
    if not isinstance(value, str) or not _SERVICE_ID_RE.fullmatch(value) or value in {".", ".."}:
        raise error(
            f"service id {value!r} is not valid",
            hint="service ids are 1-128 characters of A-Z, a-z, 0-9, '.', '_' and '-'",
        )
    return value
