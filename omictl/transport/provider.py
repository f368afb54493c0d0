"""The Domain Service client (PROTOCOL.md section 4)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx

from omictl.core.envelope import Envelope
from omictl.errors import ProtocolError
from omictl.transport.http import RetryPolicy, check_url, request_json
from omictl.transport.registry import encode_body
from omictl.transport.urls import host_of, plain_http_warning


class ProviderClient:
    """Sends the signed termination request to a service's endpoint."""

    def __init__(
        self,
        *,
        client: httpx.Client,
        policy: RetryPolicy,
        insecure: bool = False,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self._client = client
        self._policy = policy
        self._insecure = insecure
        self._warn = warn  # told once per host reached over plain HTTP (--insecure)
        self._warned: set[str] = set()
        self._warned_lock = threading.Lock()

    def terminate(self, endpoint_url: str, *, sign: Callable[[], Envelope]) -> Any:
        """``DELETE {endpoint_url}`` with ``sign()`` (called afresh for every try) as the
        JSON body; returns the parsed JSON of the 2xx answer, *unverified*: the caller
        verifies it (``messages.verify_receipt``) and may archive a bad one for inspection.

        The endpoint comes from the registry binding: a malformed or non-http(s) endpoint
        raises :class:`ProtocolError` (the registry's record is broken, exit 5); plain
        ``http://`` to a non-loopback host without ``insecure`` raises
        :class:`~omictl.errors.UsageError` (exit 2, nothing sent: the user may consent
        with ``--insecure``). Otherwise raises the :func:`request_json` errors.
        """
        # checked, then sent exactly as the binding gives it (PROTOCOL.md section 4:
        # DELETE {endpoint_url}); the normal form drops a trailing slash, which a provider
        # may route differently
        check_url(
            endpoint_url, insecure=self._insecure, what="service endpoint", error=ProtocolError
        )
        self.announce(endpoint_url)
        answer = request_json(
            self._client,
            "DELETE",
            endpoint_url,
            body=lambda: encode_body(sign()),
            policy=self._policy,
            what="termination request",
        )
        return answer.body

    def announce(self, endpoint_url: str) -> None:
        """Say loudly, once per host, that ``--insecure`` lets the DELETE to
        ``endpoint_url`` go over plain HTTP to a non-loopback host (PROTOCOL.md section 6).
        The workflow calls it with the plan, so the warning comes before the confirmation
        prompt and in a dry run too; :meth:`terminate` calls it again (said once). Never
        raises: a malformed URL is :meth:`terminate`'s to refuse."""
        if not self._insecure or self._warn is None:
            return
        try:
            warning = plain_http_warning(endpoint_url, what="service endpoint")
        except ValueError:  # not a URL at all: terminate refuses it
            return
        if warning is None:
            return
        with self._warned_lock:
            host = host_of(endpoint_url)
            if host in self._warned:
                return
            self._warned.add(host)
        self._warn(warning)
