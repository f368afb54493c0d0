"""Many decommissions in one run: a thread pool, one journal per service, one key unlock.

One failing service never stops or corrupts the others; the run's exit code is the worst
of the results (:func:`worst_exit_code`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omictl.core.envelope import parse_json
from omictl.errors import (
    Interrupted,
    OmictlError,
    PartiallyDone,
    RemoteUnavailable,
    UsageError,
    refused_path,
)
from omictl.fsutil import read_capped
from omictl.workflow.decommission import (
    Deps,
    Result,
    Target,
    decommission,
    record_step,
    still_listed,
    unconfirmed_revocation,
)

if TYPE_CHECKING:
    from omictl.core.messages import Binding

MAX_PLAN_BYTES = 4 * 1024 * 1024
MAX_PLAN_ENTRIES = 10_000
#: How bad each exit code is, for "the exit code is the worst of the results":
#: a bug, then anything that failed verification, then usage/key problems, then remote
#: rejections and outages, then an abort, then "partly done, re-run to resume".
#: The exit status of a run stopped by Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED_EXIT = 130
_SEVERITY = {0: 0, 8: 1, 7: 2, INTERRUPTED_EXIT: 2, 6: 3, 4: 4, 3: 5, 2: 6, 5: 7, 1: 8}


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
    stop: threading.Event | None = None,
) -> list[Result]:
    """Decommission ``targets`` with up to ``concurrency`` at once; results in input order.

    Never raises for one service's failure: each :class:`Result` carries its own status,
    error and exit code. ``deps_for`` gives each target its dependencies (sharing the
    unlocked signer and HTTP clients); consent must already have been given.

    With more than one target, the last step of each decommission (re-read the binding
    and confirm it is REVOKED) is done for all of them at the end, with one listing of
    each app's bindings (binding by binding for an app with fewer than
    :data:`LISTING_FROM` of them) instead of one lookup per service
    (:func:`recheck_revoked`); ``on_result`` has then already been called, and a service
    the re-read shows not REVOKED turns FAILED (exit 5) in the returned results.
    """
    if concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    defer = len(targets) > 1

    def one(target: Target) -> Result:
        if stop is not None and stop.is_set():
            return _not_started(target)  # stopping: nothing starts after the signal
        try:
            deps = replace(deps_for(target), confirm=None, defer_check=defer)
            result = decommission(target, deps)
        except OmictlError as exc:
            partial = exc.details.get("result")
            result = _result_from_error(target, exc, partial)
        except Exception as exc:  # a bug in one service must not sink the batch
            # a path the environment refuses is exit 2 as it is for one service (cli.app);
            # anything else is a bug (exit 1)
            error = refused_path(exc) or OmictlError(f"internal error: {type(exc).__name__}: {exc}")
            # what the run did before the failure (receipt, record, bundle) stays in its result
            result = _result_from_error(target, error, getattr(exc, "omictl_partial", None))
        if on_result is not None:
            # progress only: a closed stderr (BrokenPipeError) or a bug in the printer
            # must not stop the other services or lose the batch's results
            with contextlib.suppress(Exception):
                on_result(result)
        return result

    with ThreadPoolExecutor(
        max_workers=min(concurrency, len(targets)) or 1, thread_name_prefix="omictl"
    ) as pool:
        futures = [pool.submit(one, target) for target in targets]
        if stop is not None:
            pending = set(futures)
            while pending and not stop.is_set():
                pending = wait(pending, timeout=0.2).not_done  # returns as soon as all are done
            if stop.is_set():
                raise BatchInterrupted(_after_stop(futures, targets))
        results = [future.result() for future in futures]
        try:
            recheck_revoked(targets, results, deps_for, map_=pool.map)
        except Exception as exc:  # a bug must not lose the results of a finished batch
            for result in results:
                if result.check_pending:
                    _settle_quietly(result, _internal(exc))
    if stop is not None and stop.is_set():  # a signal during the re-read: still reported
        raise BatchInterrupted(results)
    return results


class BatchInterrupted(KeyboardInterrupt):
    """:func:`run_batch`'s ``stop`` was set (Ctrl-C, SIGTERM): the services in flight
    finished, none was started after it. ``results`` holds every target's result, in
    input order; those never started are ``ABORTED`` (exit 130)."""

    def __init__(self, results: list[Result]) -> None:
        super().__init__("interrupted")
        self.results = results


def _after_stop(futures: Sequence[Future[Result]], targets: Sequence[Target]) -> list[Result]:
    """The results once ``stop`` is set: queued services are cancelled (never started),
    those in flight finish (each is at a step its journal resumes from anyway)."""
    for future in futures:
        future.cancel()
    wait(futures)
    results = [
        _not_started(target) if future.cancelled() else future.result()
        for future, target in zip(futures, targets, strict=True)
    ]
    for result in results:
        if result.check_pending:  # no re-read after an interrupt
            result.check_pending = False
            record_step(
                result,
                lambda event: None,  # printing stopped with the batch
                "check_revoked",
                "skipped",
                "interrupted before the bindings were re-read",
            )
            if result.check_required:  # a 409 without its record: nothing confirms it
                error = unconfirmed_revocation(
                    result.service_id,
                    result.receipt_id,
                    Interrupted("the batch was interrupted before it"),
                    without_receipt=Interrupted,  # exit 130 (8 with a receipt)
                )
                # PARTIAL with a receipt; else FAILED, as ABORTED says "never started"
                _settle_quietly(result, error)
    return results


def _not_started(target: Target) -> Result:
    return Result(
        app_id=target.app_id,
        service_id=target.service_id,
        data_handling=target.data_handling,
        status="ABORTED",
        exit_code=INTERRUPTED_EXIT,
        error={
            "code": "interrupted",
            "message": "not started: the batch was interrupted (Ctrl-C or SIGTERM); "
            "nothing was sent",
            "exit_code": INTERRUPTED_EXIT,
        },
    )


def recheck_revoked(
    targets: Sequence[Target],
    results: Sequence[Result],
    deps_for: Callable[[Target], Deps],
    *,
    map_: Callable[..., Any] = map,
) -> None:
    """Re-read, after the fact, the bindings whose results say the check is pending.

    One ``GET /v1/apps/{app_id}/services`` per app (and registry) re-reads them all; an
    app with fewer than :data:`LISTING_FROM` services to re-read is asked binding by
    binding. A service the listing leaves out, or a listing that cannot be used (refused,
    malformed, over the size limit), falls back to one binding lookup per service (run
    through ``map_``, the batch's pool). Outcomes mirror the one-service step: REVOKED is
    done; any other status is a :class:`~omictl.errors.VerificationError` (the result
    turns FAILED, exit 5); another error of a lookup fails that service with its exit
    code; a registry that does not answer leaves a warning and the result as it is. A bug
    (any other exception) fails the services it hit with exit 1 (``internal_error``).
    """
    groups: dict[tuple[int, str], list[tuple[Deps, Result]]] = {}
    for target, result in zip(targets, results, strict=True):
        if result.check_pending:
            deps = deps_for(target)
            groups.setdefault((id(deps.registry), target.app_id), []).append((deps, result))
    for (_, app_id), members in groups.items():
        try:
            _recheck_app(app_id, members, map_)
        except Exception as exc:  # a bug must not lose the results of a finished batch
            for deps, result in members:
                if result.check_pending:
                    _judge_safely(result, deps, _internal(exc))


#: Apps with fewer services than this to re-read are asked binding by binding: a listing
#: returns every binding of the app, which for a few services is more to fetch and parse.
LISTING_FROM = 3


def _recheck_app(app_id: str, members: list[tuple[Deps, Result]], map_: Callable[..., Any]) -> None:
    registry = members[0][0].registry
    listed: dict[str, Binding] = {}
    if len(members) >= LISTING_FROM:
        try:
            listed = {b.service_id: b for b in registry.list_services(app_id)}
        except RemoteUnavailable as exc:
            for deps, result in members:
                _judge_safely(result, deps, exc)
            return
        except Exception:
            listed = {}  # no usable listing (refused, malformed, even a bug): ask one by one
    for deps, result in members:
        if result.service_id in listed:
            _judge_safely(result, deps, listed[result.service_id], how="in the app's listing")

    def lookup(member: tuple[Deps, Result]) -> None:
        deps, result = member
        try:
            seen: Binding | OmictlError = deps.registry.get_binding(
                result.app_id, result.service_id
            )
        except OmictlError as exc:
            seen = exc
        except Exception as exc:  # a bug: this service fails alone
            seen = _internal(exc)
        _judge_safely(result, deps, seen)

    list(map_(lookup, [(d, r) for d, r in members if r.check_pending]))


def _settle_quietly(result: Result, error: OmictlError) -> None:
    """Fail a pending result without reporting events (when reporting itself failed)."""
    result.check_pending = False
    result.status = "PARTIAL" if isinstance(error, PartiallyDone) else "FAILED"
    result.exit_code = int(error.exit_code)
    result.error = error.to_json()


def _internal(exc: Exception) -> OmictlError:
    """A bug met while re-reading, as the error of the services it hit (exit 1)."""
    return OmictlError(  # the base class: exit 1, code internal_error
        f"internal error while re-reading the binding: {type(exc).__name__}: {exc}",
        hint="this is a bug in omictl: please report it; the revocation itself is recorded",
    )


def _judge_safely(
    result: Result, deps: Deps, seen: Binding | OmictlError, *, how: str = ""
) -> None:
    """:func:`_judge`, and a bug in it (or in reporting) fails this service alone."""
    try:
        _judge(result, deps, seen, how=how)
    except Exception as exc:
        if result.check_pending:
            _settle_quietly(result, _internal(exc))


def _judge(result: Result, deps: Deps, seen: Binding | OmictlError, *, how: str = "") -> None:
    """Settle one pending re-read with what the registry said (a binding or an error).

    The result stays pending until the step is reported, so a failure to report it is
    still caught (and settled) by the caller."""
    if isinstance(seen, RemoteUnavailable) and result.check_required:
        unconfirmed = unconfirmed_revocation(result.service_id, result.receipt_id, seen)
        _settle_quietly(result, unconfirmed)
        record_step(result, deps.events, "check_revoked", "failed", unconfirmed.message)
        return
    if isinstance(seen, RemoteUnavailable):
        message = f"could not re-read the binding: {seen.message}"
        record_step(result, deps.events, "check_revoked", "warning", message)
        result.check_pending = False
        return
    if isinstance(seen, OmictlError):
        error: OmictlError | None = seen
    else:
        error = still_listed(seen) if seen.status != "REVOKED" else None
    if error is not None:
        _settle_quietly(result, error)  # first: a failure to report it cannot change it
        record_step(result, deps.events, "check_revoked", "failed", error.message)
        return
    suffix = f", re-read {how}" if how else ""
    message = f"binding is REVOKED (no longer discoverable{suffix})"
    record_step(result, deps.events, "check_revoked", "done", message)
    result.check_pending = False


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
