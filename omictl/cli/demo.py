"""``omictl demo``: the whole decommission against an embedded sandbox, start to finish."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from omictl.cli.app import Invocation, get_invocation
from omictl.cli.render import StepPrinter, result_text


def demo_command(
    ctx: typer.Context,
    services: Annotated[int, typer.Option("--services", metavar="N", help="Services to bind.")] = 3,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the temporary home folder (to inspect it).")
    ] = False,
) -> None:
    """Run the whole decommission against an embedded sandbox on 127.0.0.1.

    A temporary home, a throwaway master key, a sandbox registry with SERVICES bound
    Domain Services on an ephemeral port; then one service is decommissioned with every
    step shown, the evidence bundle is verified offline, and everything is cleaned up.
    """
    from omictl.config import Paths, Settings
    from omictl.core.envelope import Signer
    from omictl.core.evidence import verify_bundle
    from omictl.sandbox import start_sandbox
    from omictl.workflow.archive import Archive
    from omictl.workflow.decommission import Deps, Target, decommission
    from omictl.workflow.session import open_session

    inv = get_invocation(ctx)
    out = inv.out
    if not 1 <= services <= 100:
        from omictl.errors import UsageError

        raise UsageError("--services must be between 1 and 100")
    tmp = tempfile.mkdtemp(prefix="omictl-demo-")
    try:
        home = Path(tmp)
        settings = Settings(paths=Paths.for_home(home), output=inv.settings.output)
        demo_inv = Invocation(settings=settings, out=out)
        signer = Signer(os.urandom(32), name="demo-master")
        out.info(f"[bold]omictl demo[/bold]  home {home}", markup=True)
        out.info(f"  throwaway master key {signer.key_id} (in memory only)")
        with start_sandbox(master_public_key=signer.public_key, services=services) as sandbox:
            service_id = sandbox.service_ids[0]
            info = sandbox.service(service_id)
            out.info(f"  sandbox registry {sandbox.registry_url}  app {sandbox.app_id}")
            for sid in sandbox.service_ids:
                out.info(f"    bound {sid} at {sandbox.service(sid).endpoint_url}")
            out.info(
                f"\n[bold]Decommissioning {service_id}[/bold] ({info.service_type}): "
                "provider wipe, then registry revocation",
                markup=True,
            )
            with open_session(demo_inv.settings, registry_url=sandbox.registry_url) as session:
                deps = Deps(
                    registry=session.registry,
                    provider=session.provider,
                    signer=signer,
                    journals=session.journals,
                    archive=session.archive,
                    registry_url=session.registry_url,
                    events=StepPrinter(out),
                    confirm=None,
                    consent="the demo: its own sandbox only",
                )
                result = decommission(Target(sandbox.app_id, service_id), deps)
                remaining = session.registry.list_services(sandbox.app_id, active_only=True)
            assert result.bundle is not None
            report = verify_bundle(Archive.load(Path(result.bundle)))
            purges = sandbox.purges()
        out.info("\n[bold]Checked[/bold]", markup=True)
        out.success(
            f"{service_id} is REVOKED; {len(remaining)} ACTIVE binding(s) remain "
            f"discoverable ({', '.join(b.service_id for b in remaining) or 'none'})"
        )
        targets = sorted({str(p.get("target")) for p in purges})
        out.success(f"purge received by {', '.join(targets) or 'nobody'}")
        out.success(f"evidence bundle verifies offline: {'; '.join(report.checks)}")
        if out.json_mode:
            doc = result.to_json()
            doc["bundle_verified"] = report.to_json()
            doc["purged_targets"] = targets
            # the bundle path is under this home, which is removed unless --keep
            doc["demo_home"] = {"path": tmp, "kept": keep}
            out.emit_json(doc)
        else:
            out.line(result_text(result))
        out.info("\nNext: try it yourself with `omictl sandbox` in another terminal (see README).")
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM: nothing to resume, the home goes
        from omictl.errors import Interrupted

        setattr(
            exc,
            Interrupted.RESUME_HINT_ATTR,
            f"the demo's home is kept at {tmp}; `omictl demo` starts afresh"
            if keep
            else "the demo's sandbox and temporary home are gone; `omictl demo` starts afresh",
        )
        raise
    finally:
        if keep:
            out.info(f"kept {tmp}")
        else:
            import shutil

            try:
                # what is on disk, whatever step failed or was interrupted after the archive
                bundled = False
                with contextlib.suppress(Exception):  # only a message depends on it
                    bundled = bool(Archive(Path(tmp) / "receipts").scan()[0])
                out.info(
                    f"(the demo home {tmp} is removed now"
                    + (", the evidence bundle above with it" if bundled else "")
                    + "; --keep keeps it to inspect)"
                )
            finally:  # a second Ctrl-C during the message still removes the home
                shutil.rmtree(tmp, ignore_errors=True)
