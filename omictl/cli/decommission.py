"""``omictl decommission``: provider cleanup, then registry revocation."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from omictl.cli.app import Invocation, get_invocation
from omictl.cli.common import ask_consent, load_key, stdin_is_tty, stop_on_signals
from omictl.cli.output import Output, render_error
from omictl.cli.render import StepPrinter, render_plan, result_text, summary_json
from omictl.errors import OmictlError, UsageError, json_text

if TYPE_CHECKING:
    from omictl.core.envelope import Signer
    from omictl.core.messages import Binding
    from omictl.workflow.decommission import Plan, Result, Target
    from omictl.workflow.session import Session

HELP = """Decommission a Domain Service: the provider wipes the tenant and signs a
termination receipt; the App Registry verifies it and revokes the binding.

Steps: resolve the binding and check your key is the app's master key; confirm (type the
service id, or --yes); sign and send the DELETE; verify the receipt; sign and send the
unbind with the receipt; verify the registry's signed record; archive the evidence
bundle; re-read the binding. An interrupted run, re-run with the same arguments, resumes
from its journal: no second DELETE once a receipt is held.

Examples:

\b
  omictl decommission org.omiappreg.alice.shop.7f8a9d cms-article-77
  omictl -o json decommission APP_ID SERVICE_ID --yes      # CI: no prompt
  omictl decommission APP_ID --all --yes --concurrency 16  # every ACTIVE binding
  omictl decommission --from plan.json --yes

Exit codes: 0 done (or already revoked), 2 usage, 3 key, 4 rejected by a remote,
5 verification failed, 6 remote unavailable, 7 declined, 8 partly done (re-run to
resume), 130 interrupted (re-run to resume), 1 a bug. A batch exits with its worst result.
Settings: --timeout / OMICTL_TIMEOUT, --concurrency / OMICTL_CONCURRENCY, or a profile.
"""


def decommission_command(
    ctx: typer.Context,
    app_id: Annotated[
        str | None, typer.Argument(help="The AppID.", show_default=False, metavar="APP_ID")
    ] = None,
    service_id: Annotated[
        str | None,
        typer.Argument(
            help="The service to decommission.", show_default=False, metavar="SERVICE_ID"
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            metavar="KEY",
            help="Key reference: NAME, file:PATH or env:VAR "
            "[env: OMICTL_KEY; default: profile's key, else 'master'].",
            show_default=False,
        ),
    ] = None,
    data_handling: Annotated[
        str,
        typer.Option("--data-handling", metavar="wipe|retain", help="wipe (default) or retain."),
    ] = "wipe",
    yes: Annotated[
        bool,
        typer.Option(
            "--yes",
            "-y",
            help="Consent without a prompt (needs explicit "
            "APP_ID and SERVICE_ID, --all, or --from).",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the signed envelopes; send nothing.")
    ] = False,
    skip_provider: Annotated[
        bool,
        typer.Option(
            "--skip-provider",
            help="Revoke in the registry without a provider "
            "receipt (for a provider that is gone). The tenant is NOT wiped.",
        ),
    ] = False,
    endpoint: Annotated[
        str | None,
        typer.Option(
            "--endpoint",
            metavar="URL",
            help="Override the provider endpoint from the binding.",
            show_default=False,
        ),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Allow plain http:// to non-loopback hosts (TLS is still verified for https).",
        ),
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            help="Connect/read timeout in seconds [default: 10; env: OMICTL_TIMEOUT].",
            show_default=False,
        ),
    ] = None,
    all_services: Annotated[
        bool, typer.Option("--all", help="Every ACTIVE binding of APP_ID (needs --yes).")
    ] = False,
    plan_file: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="PLAN.json",
            help="A plan file (JSON list of {app_id, "
            "service_id, data_handling?, skip_provider?}); - for stdin.",
            show_default=False,
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            metavar="N",
            help="Services at once with --all/--from [default: 8; env: OMICTL_CONCURRENCY].",
            show_default=False,
        ),
    ] = None,
    passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--passphrase-file",
            metavar="FILE",
            help="Read the key's passphrase from "
            "this file [else OMICTL_PASSPHRASE, else a prompt].",
            show_default=False,
        ),
    ] = None,
) -> None:
    from omictl.config import parse_setting

    inv = get_invocation(ctx)
    settings = inv.settings.with_overrides(
        timeout=None if timeout is None else parse_setting("timeout", timeout, source="--timeout"),
        concurrency=None
        if concurrency is None
        else parse_setting("concurrency", concurrency, source="--concurrency"),
    )
    inv = Invocation(settings=settings, out=inv.out)
    from omictl.workflow.decommission import Target

    batch = bool(plan_file) or all_services
    if plan_file and (app_id or service_id or all_services):
        raise UsageError("--from takes no APP_ID, SERVICE_ID or --all")
    if all_services and (not app_id or service_id):
        raise UsageError("--all takes an APP_ID and no SERVICE_ID")
    if not batch and not (app_id and service_id):
        hint = "omictl decommission --help shows examples"
        if app_id and "/" in app_id and not service_id:
            app_part, _, service_part = app_id.partition("/")
            hint = f"give them as two arguments: omictl decommission {app_part} {service_part}"
        raise UsageError(
            "decommission needs APP_ID and SERVICE_ID (or --all, or --from)", hint=hint
        )
    if endpoint and batch:
        raise UsageError("--endpoint applies to one service, not to --all or --from")
    if data_handling not in ("wipe", "retain"):
        raise UsageError(f"--data-handling must be wipe or retain, not {data_handling!r}")
    if all_services and not yes and not dry_run:
        raise UsageError(
            "--all needs --yes: it removes every ACTIVE binding of the app",
            hint=f"omictl decommission {app_id} --all --yes",
        )
    if not yes and not dry_run and not stdin_is_tty():
        # checked before anything is read or sent; CI=true is never consent (CLI.md)
        raise UsageError(
            "refusing to decommission without confirmation: stdin is not a terminal and "
            "--yes was not given",
            hint="pass --yes with an explicit APP_ID and SERVICE_ID (or --from PLAN)",
        )

    if not batch:
        assert app_id is not None and service_id is not None
        target = Target(app_id, service_id, data_handling, skip_provider).validate()
        signer = load_key(inv, key, passphrase_file)
        _run_single(
            inv, target, signer, yes=yes, dry_run=dry_run, endpoint=endpoint, insecure=insecure
        )
        return

    from omictl.workflow.batch import load_plan

    targets: list[Target] | None = None
    if plan_file:
        targets = load_plan(plan_file)
        if skip_provider or data_handling != "wipe":
            raise UsageError("with --from, set data_handling/skip_provider per entry in the plan")
    else:
        from omictl.core.appid import parse_app_id

        parse_app_id(app_id or "")
    signer = load_key(inv, key, passphrase_file)
    _run_many(
        inv,
        signer,
        targets,
        app_id=app_id,
        data_handling=data_handling,
        skip_provider=skip_provider,
        yes=yes,
        dry_run=dry_run,
        insecure=insecure,
    )


def _confirm_single(inv: Invocation) -> Callable[[Plan], bool]:
    def confirm(plan: Plan) -> bool:
        render_plan(inv.out, plan)
        answer = ask_consent(f"Type the service id ({plan.target.service_id}) to confirm: ")
        return answer is not None and answer.strip() == plan.target.service_id

    return confirm


def _run_single(
    inv: Invocation,
    target: Target,
    signer: Signer,
    *,
    yes: bool,
    dry_run: bool,
    endpoint: str | None,
    insecure: bool,
) -> None:
    from omictl.transport.http import check_url
    from omictl.workflow.decommission import Deps, decommission
    from omictl.workflow.session import (
        open_session,
        registry_is_derived,
        registry_url_for_app,
    )

    out = inv.out
    if endpoint:  # checked now; sent as given (a trailing slash may matter to the provider)
        check_url(endpoint, insecure=insecure, what="--endpoint")
    if target.skip_provider:
        out.warn(
            "--skip-provider: the registry will revoke the binding WITHOUT a provider "
            "receipt; the provider is not asked to wipe the tenant or stop billing"
        )
    registry_url = registry_url_for_app(inv.settings, target.app_id)
    derived = registry_is_derived(inv.settings)
    with open_session(
        inv.settings,
        registry_url=registry_url,
        insecure=insecure,
        derived=derived,
        warn=out.warn,
    ) as session:
        deps = Deps(
            registry=session.registry,
            provider=session.provider,
            signer=signer,
            journals=session.journals,
            archive=session.archive,
            registry_url=session.registry_url,
            events=StepPrinter(out),
            confirm=None if yes else _confirm_single(inv),
            endpoint_override=endpoint,
            dry_run=dry_run,
        )
        try:
            result = decommission(target, deps)
        except OmictlError as exc:
            if out.json_mode:
                partial = exc.details.get("result")
                render_error(exc, json_mode=False)
                out.emit_json(partial if partial is not None else {"error": exc.to_json()})
                raise typer.Exit(int(exc.exit_code)) from exc
            raise
    _render_result(inv, result)


@contextlib.contextmanager
def _stop_on_signal(out: Output) -> Iterator[threading.Event | None]:
    """During a batch, the first Ctrl-C or SIGTERM (a cancelled CI job, ``timeout``,
    Kubernetes) sets the yielded event: nothing more starts, the services in flight
    finish, and the results are printed. A second Ctrl-C stops at once (exit 130, no
    results: the services in flight stop mid-step and their journals resume them); a
    SIGTERM after the first signal changes nothing (GitHub Actions sends SIGINT, then
    SIGTERM 7.5 s later, while the run is still finishing what is in flight). Only the
    main thread can install handlers; elsewhere this yields None."""
    import os
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield None
        return

    def say() -> None:
        out.info(
            "omictl: stopping: no new service starts; waiting for those in flight "
            "(press Ctrl-C again to stop now)"
        )

    def again(signum: int) -> None:
        if signum != signal.SIGINT:
            return  # SIGTERM after the first signal: already stopping
        with contextlib.suppress(Exception):
            out.info(
                "omictl: stopped at once: the services in flight stopped mid-step; "
                "re-run the same command to resume them"
            )
            sys.stdout.flush()
        os._exit(130)  # not SystemExit: worker threads would be waited for

    with stop_on_signals(on_stop=say, on_again=again) as stop:
        yield stop


def _render_result(inv: Invocation, result: Result) -> None:
    out = inv.out
    if out.json_mode:
        out.emit_json(result.to_json())
        return
    if result.status == "DRY_RUN" and result.dry_run is not None:
        out.info("dry run: these envelopes would be sent (nothing was sent)")
        out.line(json_text(result.dry_run, indent=2))  # the registry's words inside
        return
    out.line(result_text(result))


def _run_many(
    inv: Invocation,
    signer: Signer,
    targets: list[Target] | None,
    *,
    app_id: str | None,
    data_handling: str,
    skip_provider: bool,
    yes: bool,
    dry_run: bool,
    insecure: bool,
) -> None:
    from omictl.workflow.batch import (
        INTERRUPTED_EXIT,
        BatchInterrupted,
        run_batch,
        worst_exit_code,
    )
    from omictl.workflow.decommission import Deps, Target
    from omictl.workflow.session import (
        open_session,
        registry_is_derived,
        registry_url_for_app,
    )

    out = inv.out
    settings = inv.settings
    sessions: dict[str, Session] = {}
    lock = threading.Lock()
    with contextlib.ExitStack() as stack:

        def session_for(target_app: str) -> Session:
            url = registry_url_for_app(settings, target_app)
            with lock:
                if url not in sessions:
                    sessions[url] = stack.enter_context(
                        open_session(
                            settings,
                            registry_url=url,
                            insecure=insecure,
                            derived=registry_is_derived(settings),
                            warn=inv.out.warn,
                        )
                    )
                return sessions[url]

        listed: dict[tuple[str, str], Binding] = {}
        will = "would be" if dry_run else "will be"
        if targets is None:
            assert app_id is not None
            bindings = session_for(app_id).registry.list_services(app_id, active_only=True)
            listed = {(b.app_id, b.service_id): b for b in bindings}
            targets = [
                Target(app_id, b.service_id, data_handling, skip_provider).validate()
                for b in bindings
                if b.status == "ACTIVE"
            ]
            if targets:
                out.info(f"{len(targets)} ACTIVE binding(s) of {app_id} {will} decommissioned:")
        else:
            out.info(f"plan: {len(targets)} service(s) {will} decommissioned:")
        for t in targets:
            extra = " (skip provider)" if t.skip_provider else ""
            out.info(f"  {t.app_id}/{t.service_id}  {t.data_handling}{extra}")
        skipping = sum(t.skip_provider for t in targets)
        if skipping:  # as loud as for one service: these tenants are not wiped
            out.warn(
                f"{skipping} service(s) marked skip provider: the registry will revoke them "
                "WITHOUT a provider receipt; their providers are not asked to wipe the "
                "tenant or stop billing"
            )
        if not targets:
            out.info(f"{app_id} has no ACTIVE bindings: nothing to decommission")
            if out.json_mode:
                out.emit_json(summary_json([], 0))
            return
        if not yes and not dry_run:
            answer = ask_consent(f"Type the number of services ({len(targets)}) to confirm: ")
            if answer is None or answer.strip() != str(len(targets)):
                from omictl.errors import Aborted

                raise Aborted("declined at the confirmation prompt; nothing was sent")

        printer = StepPrinter(out, prefix=True, quiet=True)
        done_count = [0]
        progress = None
        task = None
        bar_stopped = [False]

        def stop_bar() -> None:
            if progress is not None and not bar_stopped[0]:
                bar_stopped[0] = True
                progress.stop()

        if out.live():
            from rich.progress import Progress

            # stdout is data: the bar must never take it over (Rich redirects it by default);
            # stopped once, before the report (a second stop prints a stray newline)
            progress = Progress(console=out.err, transient=True, redirect_stdout=False)
            progress.start()
            stack.callback(stop_bar)
            task = progress.add_task("decommissioning", total=len(targets))

        def on_result(result: Result) -> None:
            with lock:
                done_count[0] += 1
                if progress is not None and task is not None:
                    progress.advance(task)
                else:
                    out.info(f"[{done_count[0]}/{len(targets)}] {result_text(result)}")

        def deps_for(target: Target) -> Deps:
            session = session_for(target.app_id)
            return Deps(
                registry=session.registry,
                provider=session.provider,
                signer=signer,
                journals=session.journals,
                archive=session.archive,
                registry_url=session.registry_url,
                events=printer,
                confirm=None,
                consent="--yes" if yes else "the count typed at the batch's prompt",
                dry_run=dry_run,
                known_binding=listed.get((target.app_id, target.service_id)),
            )

        # the stop handlers stay in place until the report is out: a SIGTERM arriving while
        # it is printed (GitHub Actions sends one 7.5 s after its SIGINT) cannot cut it
        with _stop_on_signal(out) as stop:
            interrupted = False
            try:
                results = run_batch(
                    targets,
                    deps_for,
                    concurrency=settings.concurrency,
                    on_result=on_result,
                    stop=stop,
                )
            except BatchInterrupted as exc:  # report what was done, then exit 130
                results = exc.results
                interrupted = True
                skipped = sum(r.status == "ABORTED" for r in results)
                out.info(
                    f"omictl: interrupted: the services in flight finished; {skipped} of "
                    f"{len(results)} not started (re-run the same command to go on)"
                )
            stop_bar()  # the bar is gone before the report is printed
            # interrupted: at least 130 (or a worse failure), even if every service got
            # done (their re-reads were not)
            codes = [r.exit_code for r in results] + ([INTERRUPTED_EXIT] if interrupted else [])
            code = worst_exit_code(codes)
            if out.json_mode:
                out.emit_json(summary_json(results, code))
            else:
                if any(r.dry_run is not None for r in results):
                    out.info("dry run: these envelopes would be sent (nothing was sent)")
                for result in results:
                    out.line(result_text(result))
                    if result.status == "DRY_RUN" and result.dry_run is not None:
                        # as for one service (CLI.md: --dry-run prints the signed envelopes)
                        out.line(json_text(result.dry_run, indent=2))
                counts = summary_json(results, code)["summary"]
                out.info("summary: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if code:
        raise typer.Exit(code)
