"""Before/after: two source trees of omictl, alternated, each run against its own baseline.

Not a test (pytest ignores ``tests/benchmarks``). Make the trees with ``git archive``, then
run it by hand:

    mkdir -p /tmp/old /tmp/new
    git archive eb2c661 | tar -x -C /tmp/old
    git archive HEAD | tar -x -C /tmp/new
    python tests/benchmarks/ab.py /tmp/old /tmp/new --repeat 6

Each round runs ``batch.py``'s bare-httpx baseline, then ``python -m omictl -o json
decommission APP --all --yes --concurrency C`` once per tree (the order alternates from
round to round), every run against a fresh in-process sandbox of N services, with the tree
first on ``PYTHONPATH`` and the same environment ``batch.py`` gives omictl. A run counts
only if omictl exits 0 and the sandbox holds every binding REVOKED. Printed per round: the
baseline's wall time, then per tree its wall time, ratio and client CPU-seconds; at the
end the medians. The client's CPU-seconds are the steadier figure on a machine whose speed
drifts between runs (docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from batch import NotHonest, _check_all_revoked, omictl_env, run_baseline, run_child


def run_tree(
    tree: str, seed: bytes, services: int, concurrency: int, homes: str
) -> tuple[float, float]:
    """Wall time and client CPU-seconds of one omictl run from ``tree``."""
    from omictl.core.envelope import Signer
    from omictl.sandbox import start_sandbox

    home = tempfile.mkdtemp(prefix="run-", dir=homes)
    with start_sandbox(master_public_key=Signer(seed).public_key, services=services) as box:
        env = omictl_env(home, box.registry_url, seed, PYTHONPATH=tree)
        cmd = [sys.executable, "-m", "omictl", "-o", "json", "decommission", box.app_id]
        cmd += ["--all", "--yes", "--concurrency", str(concurrency)]
        child = run_child(cmd, env)
        if child.code != 0:
            tail = child.err.decode("utf-8", "replace")[-2000:]
            raise NotHonest(f"omictl from {tree} exited {child.code}:\n{tail}")
        _check_all_revoked(box, services, tree)
    return child.wall, child.cpu


def main() -> int:
    """Run the comparison and print it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs=2, metavar="TREE", help="two omictl source trees")
    parser.add_argument("--repeat", type=int, default=6, help="rounds (default 6)")
    parser.add_argument("--services", type=int, default=500, help="services per run")
    parser.add_argument("--concurrency", type=int, default=8, help="omictl and baseline threads")
    parser.add_argument("--tmpdir", default=None, help="where the OMICTL_HOMEs are made")
    args = parser.parse_args()
    for tree in args.trees:
        if not os.path.isfile(os.path.join(tree, "omictl", "__init__.py")):
            parser.error(f"{tree} holds no omictl package (make it with git archive)")
    if not 1 <= args.services <= 1000 or not 1 <= args.repeat <= 50 or args.concurrency < 1:
        parser.error("--services 1-1000, --repeat 1-50, --concurrency at least 1")
    seed = secrets.token_bytes(32)
    homes = tempfile.mkdtemp(prefix="omictl-bench-", dir=args.tmpdir)
    results: dict[str, list[tuple[float, float, float]]] = {t: [] for t in args.trees}
    try:
        for round_ in range(args.repeat):
            base = run_baseline(seed, args.services, args.concurrency).wall
            order = args.trees if round_ % 2 == 0 else args.trees[::-1]
            for tree in order:
                wall, cpu = run_tree(tree, seed, args.services, args.concurrency, homes)
                results[tree].append((wall, cpu, base))
            shown = [f"baseline {base:.2f} s"]
            for tree in args.trees:
                wall, cpu, _ = results[tree][-1]
                shown.append(f"{tree}: {wall:.2f} s ({wall / base:.2f}x, client CPU {cpu:.2f} s)")
            print(" | ".join(shown), flush=True)
    except NotHonest as exc:
        print(f"comparison invalid: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(homes, ignore_errors=True)
    print()
    for tree in args.trees:
        runs = results[tree]
        print(
            f"{tree}: median wall {statistics.median(r[0] for r in runs):.2f} s, "
            f"median ratio {statistics.median(r[0] / r[2] for r in runs):.3f}x, "
            f"median client CPU {statistics.median(r[1] for r in runs):.2f} s"
        )
    bases = [r[2] for r in results[args.trees[0]]]
    print(f"baseline: median {statistics.median(bases):.2f} s ({min(bases):.2f}-{max(bases):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
