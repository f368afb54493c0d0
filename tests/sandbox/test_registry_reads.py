"""Registry lookups (PROTOCOL.md section 3) and the HTTP rules every sandbox endpoint keeps."""

from __future__ import annotations

import json
import logging
import socket

import httpx
import pytest

from omictl.core.envelope import Signer
from omictl.core.messages import parse_app, parse_binding, parse_binding_list, parse_registry_info
from omictl.sandbox import Sandbox
from tests.sandbox.helpers import PROBLEM, problem_code


def test_registry_info_names_its_signing_key(sb: Sandbox, http: httpx.Client) -> None:
    """GET /v1/registry answers the registry's public key and version 1.0."""
    response = http.get(f"{sb.registry_url}/v1/registry")
    assert response.headers["content-type"] == "application/json"
    info = parse_registry_info(response.json())
    assert (info.public_key, info.version) == (sb.registry_public_key, "1.0")


def test_app_record_has_master_key(sb: Sandbox, http: httpx.Client, master: Signer) -> None:
    """GET /v1/apps/{app_id} answers the master public key on file, status ACTIVE."""
    app = parse_app(http.get(f"{sb.registry_url}/v1/apps/{sb.app_id}").json(), app_id=sb.app_id)
    assert (app.master_public_key, app.status) == (master.public_key, "ACTIVE")


def test_default_app_id_is_a_valid_rdaid_from_the_master_key(sb: Sandbox, master: Signer) -> None:
    """The default AppID is org.omiappreg.sandbox.demo.<first 12 hex of the key id>."""
    assert sb.app_id == f"org.omiappreg.sandbox.demo.{master.key_id[:12]}"


def test_service_ids_cycle_through_kinds(sb: Sandbox) -> None:
    """Services are numbered and typed in a fixed cycle."""
    assert sb.service_ids == ["cms-article-1", "storage-blob-2", "search-index-3"]
    assert [sb.service(s).service_type for s in sb.service_ids] == ["CMS", "Storage", "Search"]


def test_binding_matches_service_info(sb: Sandbox, http: httpx.Client) -> None:
    """GET of one binding answers endpoint and service key as ServiceInfo reports them."""
    info = sb.service(sb.service_ids[1])
    response = http.get(f"{sb.registry_url}/v1/apps/{sb.app_id}/services/{info.service_id}")
    binding = parse_binding(response.json(), app_id=sb.app_id, service_id=info.service_id)
    assert binding.to_json() == {
        "app_id": sb.app_id,
        "service_id": info.service_id,
        "service_type": "Storage",
        "endpoint_url": f"{sb.registry_url}/providers/{info.service_id}/api/v1",
        "public_key": info.public_key.hex(),
        "status": "ACTIVE",
        "revoked_at": None,
    }


def test_service_list_holds_every_binding(sb: Sandbox, http: httpx.Client) -> None:
    """GET /services lists all bindings of the app in creation order."""
    response = http.get(f"{sb.registry_url}/v1/apps/{sb.app_id}/services")
    bindings = parse_binding_list(response.json(), app_id=sb.app_id)
    assert [b.service_id for b in bindings] == sb.service_ids


@pytest.mark.parametrize("status", ["active", "DELETED", ""])
def test_unknown_status_filter_is_malformed(status: str, sb: Sandbox, http: httpx.Client) -> None:
    """?status= accepts only ACTIVE or REVOKED."""
    response = http.get(f"{sb.registry_url}/v1/apps/{sb.app_id}/services?status={status}")
    assert response.status_code == 400
    assert problem_code(response) == "malformed_request"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/apps/org.omiappreg.x.y.abcdef",
        "/v1/apps/org.omiappreg.x.y.abcdef/services",
        "/v1/apps/org.omiappreg.x.y.abcdef/services/cms-article-1",
        "/v1/apps/not-an-app-id",
    ],
    ids=["app", "list", "binding", "not-rdaid"],
)
def test_unknown_app_lookups_are_404(path: str, sb: Sandbox, http: httpx.Client) -> None:
    """Every lookup under an unknown app is unknown_app (404)."""
    response = http.get(sb.registry_url + path)
    assert response.status_code == 404
    assert problem_code(response) == "unknown_app"


def test_unknown_binding_is_404(sb: Sandbox, http: httpx.Client) -> None:
    """A binding the app does not have is unknown_service (404)."""
    response = http.get(f"{sb.registry_url}/v1/apps/{sb.app_id}/services/cms-article-9")
    assert response.status_code == 404
    assert problem_code(response) == "unknown_service"


@pytest.mark.parametrize(
    "path", ["/", "/v1", "/v1/registry/", "/v2/registry", "/providers/cms-article-1"]
)
def test_unknown_path_is_404_problem(path: str, sb: Sandbox, http: httpx.Client) -> None:
    """Paths outside the URL layout answer a 404 problem, not HTML."""
    response = http.get(sb.registry_url + path)
    assert response.status_code == 404
    assert problem_code(response) == "not_found"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/v1/registry", "GET"),
        ("DELETE", "/v1/apps/{app}/services/cms-article-1", "GET"),
        ("GET", "/v1/apps/{app}/services/cms-article-1/unbind", "POST"),
        ("POST", "/providers/cms-article-1/api/v1", "DELETE"),
        ("GET", "/auth/v1/purge", "POST"),
    ],
)
def test_wrong_method_is_405_with_allow(
    method: str, path: str, allow: str, sb: Sandbox, http: httpx.Client
) -> None:
    """A known path with the wrong method answers 405 and an Allow header."""
    response = http.request(method, sb.registry_url + path.format(app=sb.app_id))
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert problem_code(response) == "method_not_allowed"


def test_body_over_one_mib_is_413(sb: Sandbox, http: httpx.Client) -> None:
    """A request body over 1 MiB is refused with 413 before it is read; nothing changes."""
    before = sb.snapshot()
    sid = sb.service_ids[0]
    response = http.post(
        f"{sb.registry_url}/v1/apps/{sb.app_id}/services/{sid}/unbind",
        content=b"{" + b" " * (1024 * 1024) + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert problem_code(response) == "payload_too_large"
    assert response.headers["connection"] == "close"
    assert sb.snapshot() == before
    assert sb.unbind_count(sid) == 1


def test_body_of_exactly_one_mib_is_read(sb: Sandbox, http: httpx.Client) -> None:
    """1 MiB exactly is within the cap (and then judged as JSON)."""
    sid = sb.service_ids[0]
    response = http.post(
        f"{sb.registry_url}/v1/apps/{sb.app_id}/services/{sid}/unbind",
        content=b"[" + b" " * (1024 * 1024 - 2) + b"]",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert problem_code(response) == "malformed_request"


def test_chunked_body_is_refused(sb: Sandbox, http: httpx.Client) -> None:
    """A chunked request body (no Content-Length) is malformed_request."""

    def chunks() -> object:
        yield b"{}"

    sid = sb.service_ids[0]
    response = http.post(
        f"{sb.registry_url}/v1/apps/{sb.app_id}/services/{sid}/unbind",
        content=chunks(),  # type: ignore[arg-type]
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert problem_code(response) == "malformed_request"


def test_keep_alive_connection_serves_many_requests(sb: Sandbox) -> None:
    """Several requests on one raw socket each get a complete answer (HTTP/1.1)."""
    host, port = sb.registry_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        request = f"GET /v1/registry HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        conn.sendall(request * 3)
        received = b""
        while received.count(b"HTTP/1.1 200 OK") < 3 or not received.endswith(b"}"):
            received += conn.recv(65536)
    assert received.count(b'"version":"1.0"') == 3


def test_head_has_no_body(sb: Sandbox, http: httpx.Client) -> None:
    """HEAD on a GET-only path is 405 with headers only (never a body)."""
    response = http.head(f"{sb.registry_url}/v1/registry")
    assert response.status_code == 405
    assert response.content == b""
    assert response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GARBAGE\r\n\r\n", 400, "malformed_request"),
        (b"OPTIONS /v1/registry HTTP/1.1\r\nHost: x\r\n\r\n", 501, "not_implemented"),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414, "uri_too_long"),
        (b"GET /v1/registry HTTP/2.0\r\n\r\n", 505, "http_version_not_supported"),
        (b"GET /v1/registry HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", 431, None),
    ],
    ids=["bad-request-line", "unknown-method", "uri-too-long", "http-2", "header-too-long"],
)
def test_what_the_server_refuses_before_a_handler_is_problem_json_too(
    sb: Sandbox, request_bytes: bytes, status: int, code: str | None
) -> None:
    """A bad request line, an unknown method, an over-long URI or header: problem+json
    (PROTOCOL.md section 5), never the standard library's HTML page, and the connection
    closes."""
    host, port = sb.registry_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(request_bytes)
        received = b""
        while chunk := conn.recv(65536):  # the server closes the connection after it
            received += chunk
    if received.startswith(b"HTTP/"):
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {status} ".encode())
        assert b"\r\ncontent-type: application/problem+json" in head.lower()
    else:  # a request line the server cannot read is answered as HTTP/0.9: a body only
        assert request_bytes.startswith((b"GARBAGE", b"GET /v1/registry HTTP/2"))
        body = received
    problem = json.loads(body)
    assert problem["status"] == status
    assert problem["type"] == f"urn:omi:error:{code or 'headers_too_large'}"
    assert b"<html" not in body.lower()


def test_a_request_path_is_logged_inert(sb: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    """``omictl sandbox`` logs each request to the terminal: a path carrying an escape
    sequence is logged escaped, so a client cannot drive that terminal."""
    caplog.set_level(logging.INFO, logger="omictl.sandbox")
    host, port = sb.registry_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(b"GET /\x1b[2J\x1b]0;owned\x07 HTTP/1.1\r\nConnection: close\r\n\r\n")
        while conn.recv(65536):
            pass
    lines = [r.getMessage() for r in caplog.records if r.name == "omictl.sandbox"]
    assert any("-> 404" in line for line in lines)
    assert not any("\x1b" in line or "\x07" in line for line in lines)


def test_a_client_that_resets_its_connection_leaves_no_traceback(
    sb: Sandbox, capfd: pytest.CaptureFixture[str]
) -> None:
    """A client that resets the connection mid-request (a timeout, a killed omictl): the
    sandbox logs one line at most, never socketserver's traceback, and serves on."""
    import struct
    import time

    host, port = sb.registry_url.removeprefix("http://").split(":")
    for request in (b"", b"GET /v1/registry HTTP/1.1\r\n\r\n", b"POST /v1/x HTTP/1.1\r\n"):
        conn = socket.create_connection((host, int(port)), timeout=5)
        conn.sendall(request)  # nothing, a kept-alive request, half a request
        time.sleep(0.05)  # the handler is waiting for more
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # RST, not FIN
    time.sleep(0.2)
    with socket.create_connection((host, int(port)), timeout=5) as conn:  # still serving
        conn.sendall(b"GET /v1/registry HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert conn.recv(65536).startswith(b"HTTP/1.1 200")
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception occurred" not in err
