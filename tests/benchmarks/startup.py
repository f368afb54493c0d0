"""Startup benchmark: ``omictl --version`` and ``omictl keys list`` against ``import typer``.

Not a test (pytest ignores ``tests/benchmarks``). Run it by hand:

    python tests/benchmarks/startup.py [-n 15]

It prints the median wall time of each command over N runs, and its ratio to a bare
``python -c "import typer"`` (the floor any Typer CLI pays). The target is <= 1.5x.
Exit status 1 when a ratio is above the target (useful in a perf CI job).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

TARGET_RATIO = 1.5


def median_seconds(cmd: list[str], runs: int, env: dict[str, str]) -> float:
    """Median wall time of ``cmd`` over ``runs`` runs, after one warm-up run."""
    subprocess.run(cmd, env=env, capture_output=True, check=True)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=15, help="runs per command")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMICTL_")}
    # Measure what users get: an installed package has its bytecode cached. Without this,
    # PYTHONDONTWRITEBYTECODE (set in some CI and sandboxes) recompiles omictl every run.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    py = sys.executable
    with tempfile.TemporaryDirectory() as home:
        commands = {
            'python -c "import typer"': [py, "-c", "import typer"],
            "python -m omictl --version": [py, "-m", "omictl", "--version"],
            "omictl keys list": [py, "-m", "omictl", "--home", home, "keys", "list"],
        }
        results = {label: median_seconds(cmd, args.runs, env) for label, cmd in commands.items()}
    base = results['python -c "import typer"']
    worst = 0.0
    print(f"median of {args.runs} runs ({sys.version.split()[0]}):")
    for label, seconds in results.items():
        ratio = seconds / base
        worst = max(worst, ratio)
        print(f"  {label:<30} {seconds * 1000:7.1f} ms   {ratio:4.2f}x")
    verdict = "ok" if worst <= TARGET_RATIO else "ABOVE TARGET"
    print(f"target <= {TARGET_RATIO}x typer import: {verdict}")
    return 0 if worst <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
