"""Where a batch's wall time goes: before the batch, the batch, after it.

Not a test (pytest ignores ``tests/benchmarks``). Run it by hand:

    python tests/benchmarks/phases.py                  # 500 services, c=8, 3 runs
    python tests/benchmarks/phases.py --services 50 --repeat 1

Each run decommissions N services of a fresh in-process sandbox with
``omictl -o json decommission APP --all --yes --concurrency C`` and the environment
``batch.py`` gives omictl, but started through ``without.py`` (nothing switched off,
``OMICTL_BENCH_PHASES`` set) so the child records when the batch (``run_batch``) started
and ended, and with its output read through pipes. Printed per run (seconds, then ratios):

* **before**: spawn to the first service (interpreter start, imports, the key, the HTTP
  client, the listing, the plan on stderr);
* **batch**: every service plus the batched re-read of the bindings;
* **after**: closing the HTTP client, the JSON document and the interpreter's exit.

Each run is paired with ``batch.py``'s bare-httpx baseline (run just before it, against its
own fresh sandbox). That baseline starts its clock after its imports and its signing, so
the *batch* column is the closest to like for like (it still includes omictl's signing
and its re-read of the bindings), while ``batch.py``'s ratio (the *total* column here)
also charges omictl the other two.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from batch import omictl_env, run_baseline  # the same environment as batch.py


def one_run(seed: bytes, services: int, concurrency: int, tmpdir: str) -> dict[str, float]:
    from omictl.core.envelope import Signer
    from omictl.sandbox import start_sandbox

    here = os.path.dirname(os.path.abspath(__file__))
    marks_file = os.path.join(tmpdir, f"phases-{secrets.token_hex(4)}.json")
    home = tempfile.mkdtemp(prefix="run-", dir=tmpdir)
    with start_sandbox(master_public_key=Signer(seed).public_key, services=services) as box:
        env = omictl_env(
            home, box.registry_url, seed, OMICTL_BENCH_WITHOUT="", OMICTL_BENCH_PHASES=marks_file
        )
        cmd = [sys.executable, os.path.join(here, "without.py"), "-o", "json", "decommission"]
        cmd += [box.app_id, "--all", "--yes", "--concurrency", str(concurrency)]
        spawned = time.time()
        done = subprocess.run(cmd, env=env, capture_output=True, check=False)
        ended = time.time()
        if done.returncode != 0:
            raise SystemExit(f"omictl exited {done.returncode}:\n{done.stderr.decode()[-2000:]}")
        statuses = {r["status"] for r in json.loads(done.stdout)["results"]}
        if statuses != {"REVOKED"}:
            raise SystemExit(f"omictl reported statuses {sorted(statuses)}")
    with open(marks_file, encoding="utf-8") as handle:
        marks = json.load(handle)
    if "batch_end" not in marks:
        raise SystemExit("omictl never ran a batch (run_batch): nothing to split")
    return {
        "before": marks["batch_start"] - spawned,
        "batch": marks["batch_end"] - marks["batch_start"],
        "after": ended - marks["batch_end"],
        "total": ended - spawned,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--services", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    seed = secrets.token_bytes(32)
    runs = []
    with tempfile.TemporaryDirectory(prefix="omictl-phases-") as tmpdir:
        for _ in range(args.repeat):
            baseline = run_baseline(seed, args.services, args.concurrency).wall
            run = one_run(seed, args.services, args.concurrency, tmpdir)
            run["baseline"] = baseline
            run["total/baseline"] = run["total"] / baseline
            run["batch/baseline"] = run["batch"] / baseline
            runs.append(run)
            print("  ".join(f"{k} {v:5.2f}" for k, v in run.items()), flush=True)
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(
        f"medians of {len(runs)} ({args.services} services, c={args.concurrency}; each "
        "column's own median, so they need not add up): "
        + "  ".join(f"{k} {v:5.2f}" for k, v in median.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
