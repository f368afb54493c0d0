"""HTTP plumbing: one stdlib ``ThreadingHTTPServer`` serving every sandbox peer on one port.

URL layout (``BASE`` = ``http://HOST:PORT``)::

    BASE/v1/...                                  App Registry (PROTOCOL.md section 3)
    BASE/providers/{service_id}/api/v1           Domain Service endpoint (section 4)
    BASE/auth/v1/purge, BASE/billing/v1/purge    core-service purge receivers

Bodies above 1 MiB are refused with 413 before being read; every error is
``application/problem+json``; success is ``application/json``.
"""

from __future__ import annotations

import logging
import socket
import socketserver
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from omictl.errors import OmictlError, inert
from omictl.sandbox import provider, purge, registry
from omictl.sandbox.context import MAX_BODY, PURGE_TARGETS, Context
from omictl.sandbox.problems import REFUSED_BY_SERVER, Reply, SandboxProblem, unavailable

log = logging.getLogger("omictl.sandbox")


class SandboxServer(ThreadingHTTPServer):
    """The listening server; ``context`` is the shared sandbox world."""

    daemon_threads = True  # a slow or hung handler never blocks stop()
    request_queue_size = 512  # bursts of concurrent clients are not dropped at accept

    def __init__(self, address: tuple[str, int], context: Context, *, ipv6: bool) -> None:
        if ipv6:
            self.address_family = socket.AF_INET6
        self.context = context
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that failed outside any handler (the client reset it, a socket
        timed out): one log line, never socketserver's traceback on stderr."""
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.debug("connection from %s dropped: %s", client_address, exc)
        else:
            log.warning(
                "connection from %s failed: %s: %s",
                client_address,
                type(exc).__name__,
                inert(str(exc)),
            )

    def server_bind(self) -> None:
        """Bind without HTTPServer's ``getfqdn`` (a reverse DNS lookup: loopback only)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every answer carries Content-Length
    server_version = "omictl-sandbox"
    sys_version = ""
    timeout = 60  # an idle keep-alive connection does not hold a thread forever
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall
    server: SandboxServer

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What the server refuses before a handler runs (a bad request line, an unknown
        method, a URI or header too long) is problem+json too, never the standard
        library's HTML page (PROTOCOL.md section 5); the connection is closed."""
        self.close_connection = True
        self._body_read = True  # nothing of the request is read after this
        problem = SandboxProblem(
            REFUSED_BY_SERVER.get(code, "malformed_request"), message or HTTPStatus(code).phrase
        )
        log.info("%s -> %s", inert(self.requestline or "(no request line)"), problem.status)
        self._send(Reply.problem(problem))

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _handle(self) -> None:
        ctx = self.server.context
        self._body_read = False
        try:
            reply = self._dispatch(ctx)
        except SandboxProblem as problem:
            reply = Reply.problem(problem)
        except OmictlError as exc:  # a core error that escaped translation: still a problem
            reply = Reply.problem(SandboxProblem("malformed_request", exc.message))
        except Exception:  # never a traceback on the wire
            if ctx.stopped:  # a slow request outlived stop(): its state is closed
                reply = Reply.problem(unavailable("the sandbox is stopping"))
            else:
                log.exception("sandbox handler failed")
                reply = Reply.problem(SandboxProblem("internal_error", "the sandbox hit a bug"))
        log.info(  # the path is the client's: inert, so it cannot drive the terminal
            "%s %s -> %s", self.command, inert(self.path), "dropped" if reply.drop else reply.status
        )
        self._send(reply)

    def _dispatch(self, ctx: Context) -> Reply:
        parts = urlsplit(self.path)
        content_type = self.headers.get("Content-Type")
        match parts.path.split("/")[1:]:
            case ["v1", "registry"]:
                self._allow("GET")
                return registry.registry_info(ctx)
            case ["v1", "apps", app_id]:
                self._allow("GET")
                return registry.get_app(ctx, app_id)
            case ["v1", "apps", app_id, "services"]:
                self._allow("GET")
                status = parse_qs(parts.query, keep_blank_values=True).get("status")
                return registry.list_services(ctx, app_id, status[-1] if status else None)
            case ["v1", "apps", app_id, "services", service_id]:
                self._allow("GET")
                return registry.get_binding(ctx, app_id, service_id)
            case ["v1", "apps", app_id, "services", service_id, "unbind"]:
                ctx.counters.count(ctx.counters.unbinds, service_id)
                self._allow("POST")
                return registry.unbind(ctx, app_id, service_id, self._read_body(), content_type)
            case ["providers", service_id, "api", "v1"]:
                ctx.counters.count(ctx.counters.deletes, service_id)
                self._allow("DELETE")
                return provider.delete(ctx, service_id, self._read_body(), content_type)
            case [target, "v1", "purge"] if target in PURGE_TARGETS:
                self._allow("POST")
                return purge.receive(ctx, target, self._read_body(), content_type)
        raise SandboxProblem("not_found", f"no endpoint at {parts.path}")

    def _allow(self, allowed: str) -> None:
        """Refuse another method with 405 and an Allow header."""
        if self.command != allowed:
            raise SandboxProblem(
                "method_not_allowed",
                f"use {allowed} here, not {self.command}",
                headers={"Allow": allowed},
            )

    def _read_body(self) -> bytes:
        self._body_read = True
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise SandboxProblem("malformed_request", "send a Content-Length, not a chunked body")
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        if not raw.isdigit():
            self.close_connection = True
            raise SandboxProblem("malformed_request", "Content-Length is not a number")
        length = int(raw)
        if length > MAX_BODY:
            self.close_connection = True  # the unread body must not be parsed as a request
            raise SandboxProblem(
                "payload_too_large", f"request body of {length} bytes exceeds {MAX_BODY} bytes"
            )
        return self.rfile.read(length)

    def _send(self, reply: Reply) -> None:
        if reply.drop:
            self.close_connection = True
            return
        if not self._body_read and (
            self.headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in self.headers
        ):
            self.close_connection = True  # an unread body must not be parsed as a request
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client stopped reading (e.g. an oversize body)
