"""Many clients at once: no lost revocations, one revocation per service, every purge kept."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from omictl.core.envelope import Signer
from omictl.sandbox import Sandbox, start_sandbox
from tests.sandbox.helpers import receipt_for, send_delete, send_unbind, termination, unbind_request


@pytest.fixture
def pool_client() -> Iterator[httpx.Client]:
    """A client whose pool allows many parallel loopback connections."""
    limits = httpx.Limits(max_connections=128, max_keepalive_connections=128)
    with httpx.Client(trust_env=False, timeout=20.0, limits=limits) as client:
        yield client


def _run_together(tasks: list[Callable[[], int]], workers: int) -> list[int]:
    """Run ``tasks`` on ``workers`` threads, released at once; their results in order."""
    go = threading.Event()

    def start(task: Callable[[], int]) -> int:
        go.wait(timeout=10)
        return task()

    with ThreadPoolExecutor(max_workers=workers) as executor:
        futures = [executor.submit(start, task) for task in tasks]
        go.set()
        return [future.result() for future in futures]


@pytest.mark.parametrize("on_disk", [False, True], ids=["memory", "wal-file"])
def test_200_lookups_and_50_unbinds_in_parallel(
    on_disk: bool, tmp_path: Path, master: Signer, pool_client: httpx.Client
) -> None:
    """200 lookups and 50 unbinds of distinct services from threads: all succeed, all purged."""
    state = tmp_path / "sandbox.db" if on_disk else None
    with start_sandbox(master_public_key=master.public_key, services=50, state=state) as sb:
        sids = sb.service_ids
        receipts = {sid: receipt_for(pool_client, sb, sid, master) for sid in sids[::2]}
        lookup_paths = [
            f"/v1/apps/{sb.app_id}/services/{sids[i % 50]}" if i % 4 else "/v1/registry"
            for i in range(200)
        ]

        def lookup(path: str) -> Callable[[], int]:
            return lambda: pool_client.get(sb.registry_url + path).status_code

        def unbind(sid: str) -> Callable[[], int]:
            return lambda: (
                send_unbind(
                    pool_client, sb, sid, unbind_request(sb, sid, master, receipts.get(sid))
                ).status_code
            )

        tasks = [lookup(p) for p in lookup_paths] + [unbind(s) for s in sids]
        started = time.monotonic()
        statuses = _run_together(tasks, workers=64)
        elapsed = time.monotonic() - started
        assert statuses == [200] * 250
        assert elapsed < 20
        assert [sb.binding_status(s) for s in sids] == ["REVOKED"] * 50
        purged = Counter((p["service_id"], p["target"]) for p in sb.purges())
        assert purged == Counter({(s, t): 1 for s in sids for t in ("auth", "billing")})
        assert {d["status"] for d in sb.deliveries()} == {"delivered"}
        assert len(sb.snapshot()["revocations"]) == 50
        assert {s for s in sids if sb.stored_receipt(s) is not None} == set(receipts)


def test_concurrent_unbinds_of_one_service_revoke_once(
    sb: Sandbox, master: Signer, pool_client: httpx.Client
) -> None:
    """Ten simultaneous valid unbinds of one service: one 200, nine 409, two purges."""
    sid = sb.service_ids[0]
    envelopes = [unbind_request(sb, sid, master) for _ in range(10)]

    def unbind(envelope: dict[str, object]) -> Callable[[], int]:
        return lambda: send_unbind(pool_client, sb, sid, envelope).status_code

    tasks = [unbind(e) for e in envelopes]
    statuses = _run_together(tasks, workers=10)
    assert sorted(statuses) == [200] + [409] * 9
    assert len(sb.purges()) == 2
    assert len(sb.snapshot()["revocations"]) == 1


def test_concurrent_deletes_of_one_tenant_share_one_receipt(
    sb: Sandbox, master: Signer, pool_client: httpx.Client
) -> None:
    """Ten simultaneous valid DELETEs of one tenant all answer the same receipt bytes."""
    sid = sb.service_ids[0]
    envelopes = [termination(sb, sid, master) for _ in range(10)]
    bodies: list[bytes] = []
    lock = threading.Lock()

    def delete(envelope: dict[str, object]) -> Callable[[], int]:
        def run() -> int:
            response = send_delete(pool_client, sb, sid, envelope)
            with lock:
                bodies.append(response.content)
            return response.status_code

        return run

    assert _run_together([delete(e) for e in envelopes], workers=10) == [200] * 10
    assert len(set(bodies)) == 1
