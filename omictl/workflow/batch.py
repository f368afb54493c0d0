"""Many decommissions in one run: a thread pool, one journal per service, one key unlock.

One failing service never stops or corrupts the others; the run's exit code is the worst
of the results (:func:`worst_exit_code`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from omictl.core.envelope import parse_json
from omictl.errors import ExitCode, OmictlError, UsageError
from omictl.fsutil import read_capped
from omictl.workflow.decommission import Deps, Result, Target, decommission

MAX_PLAN_BYTES = 4 * 1024 * 1024
MAX_PLAN_ENTRIES = 10_000
#: How bad each exit code is, for "the exit code is the worst of the results":
#: a bug, then anything that failed verification, then usage/key problems, then remote
#: rejections and outages, then an abort, then "partly done, re-run to resume".
_SEVERITY = {0: 0, 8: 1, 7: 2, 6: 3, 4: 4, 3: 5, 2: 6, 5: 7, 1: 8}


def worst_exit_code(codes: Sequence[int]) -> int:
    """The most severe exit code among ``codes`` (0 when empty)."""
    return max(codes, key=lambda code: _SEVERITY.get(code, 8), default=0)


def load_plan(path: Path | str) -> list[Target]:
    """Read a plan file: a JSON list of ``{app_id, service_id, data_handling?,
    skip_provider?}`` (or ``{"targets": [...]}``). ``-`` reads stdin.

    Raises :class:`UsageError` naming the entry and field that is wrong; duplicates are
    refused (the same service twice would race on its own journal).
    """
    import sys

    if str(path) == "-":
        raw: bytes = sys.stdin.buffer.read(MAX_PLAN_BYTES + 1)
        if len(raw) > MAX_PLAN_BYTES:
            raise UsageError("plan on stdin is larger than 4 MiB")
        where = "plan on stdin"
    else:
        raw = read_capped(Path(path), limit=MAX_PLAN_BYTES, error=UsageError)
        where = f"plan {path}"
    doc = parse_json(raw, what=where, error=UsageError)
    if isinstance(doc, dict) and "targets" in doc:
        doc = doc["targets"]
    if not isinstance(doc, list) or not doc:
        raise UsageError(
            f"{where} must be a non-empty JSON list of targets",
            hint='e.g. [{"app_id": "...", "service_id": "..."}]',
        )
    if len(doc) > MAX_PLAN_ENTRIES:
        raise UsageError(f"{where} has more than {MAX_PLAN_ENTRIES} entries")
    targets: list[Target] = []
    seen: set[tuple[str, str]] = set()
    allowed = {"app_id", "service_id", "data_handling", "skip_provider"}
    for index, entry in enumerate(doc):
        label = f"{where} entry {index}"
        if not isinstance(entry, dict):
            raise UsageError(f"{label} must be an object")
        unknown = set(entry) - allowed
        if unknown:
            raise UsageError(
                f"{label} has unknown field(s) {', '.join(sorted(unknown))}",
                hint=f"fields: {', '.join(sorted(allowed))}",
            )
        app_id, service_id = entry.get("app_id"), entry.get("service_id")
        if not isinstance(app_id, str) or not isinstance(service_id, str):
            raise UsageError(f"{label} needs string app_id and service_id")
        handling = entry.get("data_handling", "wipe")
        skip = entry.get("skip_provider", False)
        if not isinstance(skip, bool) or not isinstance(handling, str):
            raise UsageError(f"{label}: skip_provider must be true/false, data_handling a string")
        try:
            target = Target(app_id, service_id, handling, skip).validate()
        except UsageError as exc:
            raise UsageError(f"{label}: {exc.message}", hint=exc.hint) from exc
        if (app_id, service_id) in seen:
            raise UsageError(f"{label} repeats {app_id}/{service_id}")
        seen.add((app_id, service_id))
        targets.append(target)
    return targets


def run_batch(
    targets: Sequence[Target],
    deps_for: Callable[[Target], Deps],
    *,
    concurrency: int,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Decommission ``targets`` with up to ``concurrency`` at once; results in input order.

    Never raises for one service's failure: each :class:`Result` carries its own status,
    error and exit code. ``deps_for`` gives each target its dependencies (sharing the
    unlocked signer and HTTP clients); consent must already have been given.
    """
    if concurrency < 1:
        raise UsageError("--concurrency must be at least 1")

    def one(target: Target) -> Result:
        try:
            deps = replace(deps_for(target), confirm=None)
            result = decommission(target, deps)
        except OmictlError as exc:
            partial = exc.details.get("result")
            result = _result_from_error(target, exc, partial)
        except Exception as exc:  # a bug in one service must not sink the batch
            result = Result(
                app_id=target.app_id,
                service_id=target.service_id,
                status="FAILED",
                exit_code=int(ExitCode.INTERNAL),
                error={
                    "code": "internal_error",
                    "message": f"internal error: {type(exc).__name__}: {exc}",
                    "exit_code": int(ExitCode.INTERNAL),
                },
            )
        if on_result is not None:
            on_result(result)
        return result

    with ThreadPoolExecutor(
        max_workers=min(concurrency, len(targets)) or 1, thread_name_prefix="omictl"
    ) as pool:
        return list(pool.map(one, targets))


def _result_from_error(target: Target, exc: OmictlError, partial: Any) -> Result:
    result = Result(
        app_id=target.app_id, service_id=target.service_id, data_handling=target.data_handling
    )
    if isinstance(partial, dict):
        for key in (
            "receipt_id",
            "receipt",
            "revocation_record",
            "propagation",
            "steps",
            "resumed_from",
            "bundle",
        ):
            if key in partial:
                setattr(result, key, partial[key])
    result.status = partial.get("status", "FAILED") if isinstance(partial, dict) else "FAILED"
    result.exit_code = int(exc.exit_code)
    error = exc.to_json()
    error.get("details", {}).pop("result", None)
    if not error.get("details"):
        error.pop("details", None)
    result.error = error
    return result
