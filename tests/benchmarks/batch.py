"""Batch benchmark: ``omictl decommission APP --all`` against a bare-httpx baseline.

Not a test (pytest ignores ``tests/benchmarks``). Run it by hand:

    python tests/benchmarks/batch.py                       # 500 services, c = 1, 8, 32
    python tests/benchmarks/batch.py --services 20         # a quick smoke run
    python tests/benchmarks/batch.py --repeat 3 --tmpdir ~/bench-tmp

For each concurrency level C, every measurement gets a **fresh** in-process sandbox of N
services (same master key every time):

* **omictl**: ``python -m omictl -o json decommission APP --all --yes --concurrency C`` as a
  subprocess, the way CI runs it: a fresh ``OMICTL_HOME`` per run (under ``--tmpdir``;
  all removed when the benchmark ends, not between runs, see run_omictl),
  ``OMICTL_REGISTRY`` = the sandbox, ``OMICTL_KEY=env:VAR`` with the seed in hex. Its wall
  time is the whole process (startup, key, listing, every service, the JSON output); its
  peak RSS is that child's own ``ru_maxrss`` from ``os.wait4`` (``RUSAGE_CHILDREN`` would be
  the maximum over every child so far). A run counts only if it exits 0, reports N results
  all ``REVOKED``, and the sandbox holds all N bindings ``REVOKED``; otherwise exit 2.
* **baseline**: a child process signs N termination and N unbind envelopes *before* its
  clock starts, then sends ``DELETE`` then ``POST .../unbind`` per service with one bare
  ``httpx.Client`` on C threads, checking only for HTTP 200 (then the sandbox is checked
  all ``REVOKED``). It runs in its own process, like omictl, so neither client shares the
  sandbox's GIL. Its unbind carries no ``provider_receipt`` (the receipt does not exist
  before the DELETE; PROTOCOL.md section 3 makes it optional), so its registry skips one
  receipt check per service: that makes the baseline a little faster, never slower.

``--without journal,bundle`` adds, for cost attribution only, a third run per measurement:
omictl through ``without.py`` with the journal log and/or the evidence bundle switched off.

The sandbox (registry, providers, Auth/Billing purge receivers; two purge POSTs per unbind)
runs in *this* process and competes with the client for the machine's cores: the figures
are for the pair, not for omictl alone. ``--repeat R`` takes the median of R runs. Exit 1
when a target is missed (ratio at c=8 above 1.5x, peak RSS at or above 150 MiB).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

TARGET_RATIO = 1.5
TARGET_RATIO_AT = 8
TARGET_RSS_MIB = 150.0
SEED_VAR = "OMICTL_BENCH_SEED"


class NotHonest(Exception):
    """A run did not end with every binding REVOKED: its figure would mean nothing."""


@dataclass(frozen=True)
class Child:
    """What one child process did."""

    code: int
    out: bytes
    err: bytes
    wall: float  # seconds, spawn to exit
    rss_mib: float  # its own peak resident set
    cpu: float  # its user + system seconds
    sandbox_cpu: float  # user + system seconds of this process (the sandbox) meanwhile


@dataclass(frozen=True)
class Run:
    """One measured run."""

    wall: float
    rss_mib: float
    client_cpu: float
    sandbox_cpu: float


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMICTL_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # users have cached bytecode (see startup.py)
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


def omictl_env(home: str, registry_url: str, seed: bytes, **extra: str) -> dict[str, str]:
    """The environment omictl runs in: a fresh home, the sandbox as registry, the key as
    ``env:VAR`` (the seed goes in the environment, never in argv)."""
    return _env(
        OMICTL_HOME=home,
        OMICTL_REGISTRY=registry_url,
        OMICTL_KEY=f"env:{SEED_VAR}",
        **{SEED_VAR: seed.hex()},
        **extra,
    )


def run_child(cmd: list[str], env: dict[str, str], stdin: bytes = b"") -> Child:
    """Run ``cmd`` to completion; its output goes through files (no pipe to drain)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        cpu0 = _cpu_self()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=out, stderr=err)
        assert proc.stdin is not None
        proc.stdin.write(stdin)
        proc.stdin.close()
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
        wall = time.perf_counter() - start
        sandbox_cpu = _cpu_self() - cpu0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Child(
            code=proc.returncode,
            out=out.read(),
            err=err.read(),
            wall=wall,
            rss_mib=usage.ru_maxrss / 1024.0,  # Linux reports kilobytes
            cpu=usage.ru_utime + usage.ru_stime,
            sandbox_cpu=sandbox_cpu,
        )


def _tail(child: Child) -> str:
    return child.err.decode("utf-8", "replace")[-2000:]


def run_omictl(
    seed: bytes, services: int, concurrency: int, tmpdir: str | None, without: str = ""
) -> Run:
    """``omictl decommission --all`` against a fresh sandbox; checked all-REVOKED.

    ``without`` (e.g. ``journal,bundle``) runs omictl through ``without.py`` with those
    local writes switched off, to attribute their cost."""
    from omictl.core.envelope import Signer
    from omictl.sandbox import start_sandbox

    master = Signer(seed)
    # Each run gets a fresh home, removed only when the benchmark ends (see main): removing
    # a run's 1,000 files right before the next run would slow that run's file creations on
    # an ext4 without a journal, which scans recently freed inodes for about 30 s.
    home = tempfile.mkdtemp(prefix="run-", dir=tmpdir)
    with start_sandbox(master_public_key=master.public_key, services=services) as sandbox:
        env = omictl_env(home, sandbox.registry_url, seed, OMICTL_BENCH_WITHOUT=without)
        entry = [os.path.join(os.path.dirname(os.path.abspath(__file__)), "without.py")]
        cmd = [sys.executable, *(entry if without else ["-m", "omictl"])]
        cmd += ["-o", "json", "decommission", sandbox.app_id]
        cmd += ["--all", "--yes", "--concurrency", str(concurrency)]
        child = run_child(cmd, env)
        if child.code != 0:
            raise NotHonest(f"omictl exited {child.code}:\n{_tail(child)}")
        results = json.loads(child.out)["results"]
        statuses = sorted({r["status"] for r in results})
        if len(results) != services or statuses != ["REVOKED"]:
            raise NotHonest(f"omictl reported {len(results)} results with statuses {statuses}")
        _check_all_revoked(sandbox, services, "omictl")
    return Run(child.wall, child.rss_mib, child.cpu, child.sandbox_cpu)


def run_baseline(seed: bytes, services: int, concurrency: int) -> Run:
    """The bare-httpx baseline, in a child process, against a fresh sandbox."""
    from omictl.core.envelope import Signer
    from omictl.sandbox import start_sandbox

    master = Signer(seed)
    with start_sandbox(master_public_key=master.public_key, services=services) as sandbox:
        job = {
            "registry_url": sandbox.registry_url,
            "app_id": sandbox.app_id,
            "services": [[s.service_id, s.endpoint_url] for s in sandbox.services()],
            "concurrency": concurrency,
        }
        cmd = [sys.executable, os.path.abspath(__file__), "--baseline-worker"]
        child = run_child(cmd, _env(**{SEED_VAR: seed.hex()}), json.dumps(job).encode())
        if child.code != 0:
            raise NotHonest(f"baseline exited {child.code}:\n{_tail(child)}")
        answer = json.loads(child.out)
        _check_all_revoked(sandbox, services, "baseline")
    return Run(float(answer["wall"]), child.rss_mib, float(answer["cpu"]), child.sandbox_cpu)


def _check_all_revoked(sandbox: object, services: int, who: str) -> None:
    ids = sandbox.service_ids  # type: ignore[attr-defined]
    stored = sorted({sandbox.binding_status(s) for s in ids})  # type: ignore[attr-defined]
    if len(ids) != services or stored != ["REVOKED"]:
        raise NotHonest(f"after {who}, the sandbox holds bindings {stored}")


def baseline_worker() -> int:
    """Child side of the baseline: pre-sign everything, then time the sends only."""
    import httpx

    from omictl.core.envelope import Signer, sign_envelope
    from omictl.core.messages import termination_request_data, unbind_request_data

    job = json.loads(sys.stdin.read())
    signer = Signer(bytes.fromhex(os.environ[SEED_VAR]))
    app_id, base = job["app_id"], job["registry_url"]
    now = int(time.time())  # stays fresh: the run is far shorter than the 300 s window
    work: list[tuple[str, bytes, str, bytes]] = []
    for service_id, endpoint in job["services"]:
        delete = termination_request_data(
            app_id=app_id,
            service_id=service_id,
            timestamp=now,
            nonce=secrets.token_urlsafe(16),
            data_handling="wipe",
        )
        unbind = unbind_request_data(
            app_id=app_id,
            service_id=service_id,
            timestamp=now,
            nonce=secrets.token_urlsafe(16),
            receipt=None,
        )
        work.append(
            (
                endpoint,
                json.dumps(sign_envelope(delete, signer).to_json()).encode(),
                f"{base}/v1/apps/{app_id}/services/{service_id}/unbind",
                json.dumps(sign_envelope(unbind, signer).to_json()).encode(),
            )
        )
    headers = {"Content-Type": "application/json"}
    with httpx.Client(timeout=30.0) as client:

        def one(item: tuple[str, bytes, str, bytes]) -> None:
            endpoint, delete_body, unbind_url, unbind_body = item
            for method, url, body in (
                ("DELETE", endpoint, delete_body),
                ("POST", unbind_url, unbind_body),
            ):
                answer = client.request(method, url, content=body, headers=headers)
                if answer.status_code != 200:
                    raise RuntimeError(f"{method} {url}: HTTP {answer.status_code}")

        cpu0 = _cpu_self()
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=job["concurrency"]) as pool:
            list(pool.map(one, work))
        wall = time.perf_counter() - start
        cpu = _cpu_self() - cpu0
    print(json.dumps({"wall": wall, "cpu": cpu}))
    return 0


def _median(runs: list[Run]) -> Run:
    return Run(
        wall=statistics.median(r.wall for r in runs),
        rss_mib=max(r.rss_mib for r in runs),  # peak: the worst run counts
        client_cpu=statistics.median(r.client_cpu for r in runs),
        sandbox_cpu=statistics.median(r.sandbox_cpu for r in runs),
    )


def main() -> int:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=500, help="services per run (1-1000)")
    parser.add_argument("--concurrency", default="1,8,32", help="levels, comma-separated")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement (median)")
    parser.add_argument(
        "--tmpdir", default=None, help="where OMICTL_HOME is created [default: system temp]"
    )
    parser.add_argument(
        "--without",
        default="",
        help="cost attribution only: also run omictl with these local writes switched off "
        "(journal, bundle; comma-separated) and print that run as a third column",
    )
    parser.add_argument("--baseline-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_worker:
        return baseline_worker()
    if not 1 <= args.services <= 1000:
        parser.error("--services must be between 1 and 1000 (the sandbox's limit)")
    if not 1 <= args.repeat <= 20:
        parser.error("--repeat must be between 1 and 20")
    try:
        levels = sorted({int(x) for x in args.concurrency.split(",") if x.strip()})
    except ValueError:
        parser.error("--concurrency takes integers, e.g. 1,8,32")
    if not levels or levels[0] < 1:
        parser.error("--concurrency levels must be at least 1")

    n = args.services
    seed = secrets.token_bytes(32)
    print(
        f"omictl batch benchmark: {n} services, concurrency {levels}, median of {args.repeat}; "
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs; OMICTL_HOME under {args.tmpdir or tempfile.gettempdir()}"
    )
    print(
        "the sandbox runs in this process and competes with the client for the CPUs; "
        f"load average at start {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    without = ",".join(w.strip() for w in args.without.split(",") if w.strip())
    rows: list[tuple[int, Run, Run]] = []
    stripped: dict[int, Run] = {}
    homes = tempfile.TemporaryDirectory(prefix="omictl-bench-", dir=args.tmpdir)
    try:
        for c in levels:
            mine: list[Run] = []
            base: list[Run] = []
            bare: list[Run] = []
            for _ in range(args.repeat):  # interleaved, so drift in machine load hits all
                base.append(run_baseline(seed, n, c))
                mine.append(run_omictl(seed, n, c, homes.name))
                if without:
                    bare.append(run_omictl(seed, n, c, homes.name, without))
            m, b = _median(mine), _median(base)
            rows.append((c, m, b))
            line = (
                f"  c={c:<3} omictl {m.wall:6.2f} s {n / m.wall:6.1f}/s rss {m.rss_mib:5.1f} MiB"
                f" | baseline {b.wall:6.2f} s {n / b.wall:6.1f}/s | {m.wall / b.wall:4.2f}x"
            )
            if without:
                stripped[c] = w = _median(bare)
                line += f" | without {without} {w.wall:6.2f} s {w.wall / b.wall:4.2f}x"
            print(line, flush=True)
    except NotHonest as exc:
        print(f"benchmark invalid: {exc}", file=sys.stderr)
        return 2
    finally:
        homes.cleanup()

    print()
    print(
        "| concurrency | omictl wall (s) | services/s | peak RSS (MiB) | baseline wall (s) "
        "| baseline services/s | ratio | CPU s omictl / sandbox | CPU s baseline / sandbox |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c, m, b in rows:
        print(
            f"| {c} | {m.wall:.2f} | {n / m.wall:.1f} | {m.rss_mib:.1f} | {b.wall:.2f} "
            f"| {n / b.wall:.1f} | {m.wall / b.wall:.2f}x "
            f"| {m.client_cpu:.1f} / {m.sandbox_cpu:.1f} "
            f"| {b.client_cpu:.1f} / {b.sandbox_cpu:.1f} |"
        )
    if stripped:
        print(f"\nCost attribution: omictl with {without} switched off (without.py; not a mode")
        print("omictl has: no crash safety, no evidence). The difference to the row above is")
        print("what those writes cost.\n")
        print("| concurrency | wall (s) | ratio | CPU s client / sandbox |")
        print("|---:|---:|---:|---:|")
        for c, _, b in rows:
            w = stripped[c]
            print(
                f"| {c} | {w.wall:.2f} | {w.wall / b.wall:.2f}x "
                f"| {w.client_cpu:.1f} / {w.sandbox_cpu:.1f} |"
            )
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")

    missed = []
    at = {c: (m, b) for c, m, b in rows}
    if TARGET_RATIO_AT in at:
        m, b = at[TARGET_RATIO_AT]
        ok = m.wall / b.wall <= TARGET_RATIO
        print(
            f"target: c={TARGET_RATIO_AT} within {TARGET_RATIO}x of the baseline: "
            f"{m.wall / b.wall:.2f}x {'met' if ok else 'MISSED'}"
        )
        if not ok:
            missed.append("ratio")
    peak = max(m.rss_mib for _, m, _ in rows)
    ok = peak < TARGET_RSS_MIB
    print(
        f"target: peak RSS under {TARGET_RSS_MIB:.0f} MiB for {n} services: "
        f"{peak:.1f} MiB {'met' if ok else 'MISSED'}"
    )
    if not ok:
        missed.append("rss")
    for (c1, m1, b1), (c2, m2, b2) in itertools.pairwise(rows):
        print(
            f"throughput c={c1} -> c={c2}: omictl {n / m1.wall:.1f} -> {n / m2.wall:.1f}/s "
            f"({m1.wall / m2.wall - 1:+.0%}), baseline {n / b1.wall:.1f} -> {n / b2.wall:.1f}/s "
            f"({b1.wall / b2.wall - 1:+.0%})"
        )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
