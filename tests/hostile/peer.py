"""A hand-built hostile HTTP/1.1 peer on 127.0.0.1 (ephemeral port), raw sockets only.

It answers each request with whatever a test scripts, byte for byte: trickled headers or
bodies, endless redirects, gzip bombs, 100 KB headers, wrong content types, lies. It
never uses an HTTP library to answer, so nothing "fixes" the hostile bytes on the way out.

:class:`FakeOmi` builds an *honest* OMI registry + Domain Service on top of it (real
signatures, so the happy path completes); a test then replaces one route with a hostile
answer. Every request is logged (:attr:`HostilePeer.requests`), so a test can prove that
nothing destructive was sent.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omictl.core.envelope import Signer, sign_envelope
from omictl.core.messages import problem_json, verify_request

MAX_REQUEST_HEAD = 64 * 1024
READ_TIMEOUT = 5.0


@dataclass(frozen=True)
class Request:
    """One request as the peer received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def route(self) -> str:
        """The path without the query string."""
        return urllib.parse.urlsplit(self.path).path

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    """What to send back. ``body`` that is not bytes is sent as JSON.

    ``head_pace``/``body_pace``: seconds between single bytes of the head/body (slowloris).
    ``headers`` are sent as given (duplicates allowed); ``Content-Length`` is added unless
    ``content_length`` is False; ``raw`` replaces everything with exact bytes; ``hold``
    keeps the connection open that many seconds after sending (a silent peer).
    """

    status: int = 200
    body: Any = b""
    content_type: str | None = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    head_pace: float = 0.0
    body_pace: float = 0.0
    content_length: bool = True
    raw: bytes | None = None
    hold: float = 0.0

    def encode(self) -> tuple[bytes, bytes]:
        """(head bytes, body bytes)."""
        body = self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()
        lines = [f"HTTP/1.1 {self.status} {_REASONS.get(self.status, 'Whatever')}"]
        if self.content_type is not None:
            lines.append(f"Content-Type: {self.content_type}")
        lines.extend(f"{name}: {value}" for name, value in self.headers)
        if self.content_length:
            lines.append(f"Content-Length: {len(body)}")
        lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), body


_REASONS = {200: "OK", 302: "Found", 401: "Unauthorized", 404: "Not Found", 409: "Conflict"}

Handler = Callable[[Request], Reply]


class HostilePeer:
    """A threaded raw-socket server; ``handler(request)`` decides every answer."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.05)
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._serve, name="hostile-peer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ observations
    def seen(self, method: str | None = None, route_part: str = "") -> list[Request]:
        """Logged requests, optionally filtered by method and a substring of the path."""
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method) and route_part in r.route
            ]

    # ------------------------------------------------------------------ lifecycle
    def stop(self) -> None:
        """Stop accepting, and cut short every trickle in progress."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def __enter__(self) -> HostilePeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ internals
    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with contextlib.closing(conn):
            conn.settimeout(READ_TIMEOUT)
            try:
                request = self._read_request(conn)
            except (OSError, ValueError):
                return
            if request is None:
                return
            with self._lock:
                self.requests.append(request)
            reply = self.handler(request)
            with contextlib.suppress(OSError):
                self._send(conn, reply)

    def _read_request(self, conn: socket.socket) -> Request | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
            if len(data) > MAX_REQUEST_HEAD:
                raise ValueError("request head too large")
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            rest += chunk
        return Request(method=method, path=path, headers=headers, body=rest[:length])

    def _send(self, conn: socket.socket, reply: Reply) -> None:
        if reply.raw is not None:
            conn.sendall(reply.raw)
        else:
            head, body = reply.encode()
            self._trickle(conn, head, reply.head_pace)
            self._trickle(conn, body, reply.body_pace)
        # stop() cuts the hold short, so a test never waits on its own peer
        self._stop.wait(reply.hold)

    def _trickle(self, conn: socket.socket, data: bytes, pace: float) -> None:
        if not pace:
            conn.sendall(data)
            return
        for i in range(len(data)):
            if self._stop.is_set():
                return
            conn.sendall(data[i : i + 1])
            self._stop.wait(pace)


# ====================================================================== a fake OMI world


def problem(code: str, status: int, title: str, detail: str, **extra: Any) -> Reply:
    """A problem+json error answer."""
    return Reply(
        status=status,
        body=problem_json(code, title, status, detail, **extra),
        content_type="application/problem+json",
    )


def gzip_bomb(decompressed_mib: int = 64) -> bytes:
    """A JSON-looking body of ``decompressed_mib`` MiB of spaces, gzip-compressed to a few
    dozen KiB on the wire."""
    buffer = io.BytesIO()
    block = b" " * (1024 * 1024)
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=9) as handle:
        handle.write(b"{")
        for _ in range(decompressed_mib):
            handle.write(block)
        handle.write(b"}")
    return buffer.getvalue()


Route = Callable[[Request], "Reply | None"]


class FakeOmi:
    """An honest OMI registry and one Domain Service on one hostile peer.

    Routes (``"info"``, ``"app"``, ``"binding"``, ``"services"``, ``"delete"``,
    ``"unbind"``) answer honestly unless ``overrides[route]`` is set; an override
    returning ``None`` falls back to the honest answer. ``binding_patch`` is merged into
    every binding answer (e.g. a hostile ``endpoint_url``).
    """

    def __init__(
        self,
        master: Signer,
        *,
        app_id: str = "org.omiappreg.hostile.test.a1b2c3",
        service_id: str = "cms-article-1",
    ) -> None:
        self.master = master
        self.registry_signer = Signer(bytes(range(32)), name="fake-registry")
        self.service_signer = Signer(bytes(range(32, 64)), name="fake-service")
        self.app_id = app_id
        self.service_id = service_id
        self.status = "ACTIVE"
        self.revoked_at: int | None = None
        self.receipt: dict[str, Any] | None = None
        self.overrides: dict[str, Route] = {}
        self.binding_patch: dict[str, Any] = {}
        self.registry_name = "Fake Registry"
        self.peer = HostilePeer(self._dispatch)
        self.url = self.peer.url

    # ------------------------------------------------------------------ honest answers
    @property
    def endpoint_url(self) -> str:
        return f"{self.url}/provider/{self.service_id}/api/v1"

    def binding(self) -> dict[str, Any]:
        return {
            "app_id": self.app_id,
            "service_id": self.service_id,
            "service_type": "CMS",
            "endpoint_url": self.endpoint_url,
            "public_key": self.service_signer.public_key.hex(),
            "status": self.status,
            "revoked_at": self.revoked_at,
            **self.binding_patch,
        }

    def receipt_data(self, **changes: Any) -> dict[str, Any]:
        """The ``data`` of an honest termination receipt, with ``changes`` applied."""
        return {
            "app_id": self.app_id,
            "service_id": self.service_id,
            "status": "success",
            "message": "Instance purged",
            "receipt_id": "RCPT-HOSTILE-1",
            "terminated_at": int(time.time()),
            "data_handling": "wipe",
            **changes,
        }

    def record_data(self, **changes: Any) -> dict[str, Any]:
        """The ``data`` of an honest revocation record, with ``changes`` applied."""
        return {
            "app_id": self.app_id,
            "service_id": self.service_id,
            "status": "REVOKED",
            "revoked_at": self.revoked_at or int(time.time()),
            "receipt_id": "RCPT-HOSTILE-1",
            "context": "revocation_record",
            "propagation": [
                {"target": "auth", "status": "delivered"},
                {"target": "billing", "status": "delivered"},
            ],
            **changes,
        }

    def _honest(self, route: str, request: Request) -> Reply:
        if route == "info":
            return Reply(
                body={
                    "name": self.registry_name,
                    "public_key": self.registry_signer.public_key.hex(),
                    "version": "1.0",
                }
            )
        if route == "app":
            return Reply(
                body={
                    "app_id": self.app_id,
                    "master_public_key": self.master.public_key.hex(),
                    "status": "ACTIVE",
                }
            )
        if route == "binding":
            return Reply(body=self.binding())
        if route == "services":
            return Reply(body={"app_id": self.app_id, "services": [self.binding()]})
        if route == "delete":
            self._check_signed(request, "permanent_termination")
            if self.receipt is None:
                self.receipt = sign_envelope(self.receipt_data(), self.service_signer).to_json()
            return Reply(body=self.receipt)
        if route == "unbind":
            self._check_signed(request, "decommission")
            self.status, self.revoked_at = "REVOKED", int(time.time())
            return Reply(body=sign_envelope(self.record_data(), self.registry_signer).to_json())
        return problem("not_found", 404, "Not found", f"no route {request.route}")

    def _check_signed(self, request: Request, context: str) -> None:
        # an honest peer verifies what omictl signed: proves the client's side is right
        verify_request(
            request.json(),
            public_key=self.master.public_key,
            context=context,
            now=int(time.time()),
            what=context,
        )

    # ------------------------------------------------------------------ dispatch
    def route_of(self, request: Request) -> str:
        base = f"/v1/apps/{self.app_id}"
        path = request.route
        if request.method == "GET" and path == "/v1/registry":
            return "info"
        if request.method == "GET" and path == base:
            return "app"
        if request.method == "GET" and path == f"{base}/services":
            return "services"
        if request.method == "GET" and path == f"{base}/services/{self.service_id}":
            return "binding"
        if request.method == "POST" and path == f"{base}/services/{self.service_id}/unbind":
            return "unbind"
        if request.method == "DELETE" and path.startswith("/provider/"):
            return "delete"
        return "unknown"

    def _dispatch(self, request: Request) -> Reply:
        route = self.route_of(request)
        override = self.overrides.get(route)
        if override is not None:
            reply = override(request)
            if reply is not None:
                return reply
        return self._honest(route, request)

    # ------------------------------------------------------------------ observations
    def deletes(self) -> int:
        """DELETE requests that reached the fake provider."""
        return len(self.peer.seen("DELETE"))

    def unbinds(self) -> int:
        """Unbind requests that reached the fake registry."""
        return len(self.peer.seen("POST", "/unbind"))

    def stop(self) -> None:
        self.peer.stop()
