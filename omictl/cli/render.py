"""Render workflow events and results as text (stderr for progress, stdout for data)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from omictl.cli.output import Output
from omictl.errors import inert

if TYPE_CHECKING:
    from omictl.workflow.decommission import Plan, Result, StepEvent

_MARKS = {
    "done": ("green", "✓"),
    "skipped": ("dim", "-"),
    "warning": ("yellow", "!"),
    "failed": ("red", "✗"),
}


class StepPrinter:
    """Prints one line per finished step on stderr (and the starting step on a TTY).

    Thread-safe, so a batch can share it; ``prefix`` adds the service id to each line.
    Not on a terminal (CI logs), the lines are plain text written without Rich: the same
    characters Rich would print there, with no markup or emoji codes interpreted.
    """

    def __init__(self, out: Output, *, prefix: bool = False, quiet: bool = False) -> None:
        self.out = out
        self.prefix = prefix
        self.quiet = quiet
        self._lock = threading.Lock()

    def __call__(self, event: StepEvent) -> None:
        if self.quiet and event.status not in ("failed", "warning"):
            return
        terminal = self.out.live()
        if event.status == "start" and not (terminal and not self.prefix):
            return
        colour, mark = _MARKS.get(event.status, ("", "•"))
        if not terminal:
            head = f"{inert(event.service_id)} " if self.prefix else ""
            with self._lock:
                self.out.info(f"{mark} {head}{event.step}: {inert(event.message)}")
            return
        from rich.markup import escape

        head = f"[bold]{escape(inert(event.service_id))}[/bold] " if self.prefix else ""
        message = escape(inert(event.message))  # server text inside: make it inert
        with self._lock:
            if event.status == "start":
                self.out.err.print(f"[dim]… {event.step}: {message}[/dim]")
                return
            shown = f"[{colour}]{mark}[/{colour}]" if colour else mark
            self.out.err.print(f"{shown} {head}{event.step}: {message}")


def when(timestamp: object) -> str:
    """A Unix time as UTC ISO 8601 (``2026-11-29T11:31:17Z``) for text output; JSON keeps
    the number. Anything else (a peer's odd value) is shown as it is, made inert."""
    from datetime import UTC, datetime

    if isinstance(timestamp, int) and not isinstance(timestamp, bool):
        try:
            return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        except (OverflowError, OSError, ValueError):
            pass
    return inert(str(timestamp))


def render_plan(out: Output, plan: Plan) -> None:
    """Show what a decommission will do, on stderr, before the prompt."""
    from rich.markup import escape as _escape

    def escape(text: str) -> str:  # the binding's fields are the registry's words
        return _escape(inert(text))

    t = plan.target
    lines = [
        "[bold]About to decommission[/bold]",
        f"  app        {escape(t.app_id)}",
        f"  service    {escape(t.service_id)} ({escape(plan.binding.service_type or '?')}), "
        f"{plan.binding.status}",
        f"  provider   DELETE {escape(plan.endpoint_url)}  data handling: {t.data_handling}",
        f"  registry   {escape(plan.registry_url)} (key {plan.registry_key_id})",
        f"  signed by  master key {plan.signer_key_id}",
    ]
    if plan.held_receipt_id:
        lines.append(f"  resuming   receipt {escape(plan.held_receipt_id)} is held: no DELETE")
    elif t.skip_provider:
        lines.append(
            "  [yellow]--skip-provider: the provider will NOT be asked to wipe the "
            "tenant or stop billing[/yellow]"
        )
    elif t.data_handling == "wipe":
        lines.append("  [red]The provider will permanently wipe this tenant's data.[/red]")
    for line in lines:
        out.err.print(line)


def result_text(result: Result) -> str:
    """One line summarising a result, for stdout."""
    parts = [result.status, f"{result.app_id}/{result.service_id}"]
    if result.receipt_id:
        parts.append(f"receipt {result.receipt_id}")
    if result.already_revoked:
        parts.append("(already revoked; nothing sent)")
    if result.bundle:
        parts.append(f"evidence {result.bundle}")
    if result.error:
        parts.append(f"error: {result.error.get('message', '')}")
        if result.error.get("hint"):  # what to do (a journal to move, a re-run), as for one
            parts.append(f"hint: {result.error['hint']}")
    return inert("  ".join(parts))


def summary_json(results: list[Result], exit_code: int) -> dict[str, Any]:
    """The ``-o json`` document of a batch run."""
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    return {
        "results": [r.to_json() for r in results],
        "summary": {"total": len(results), **counts},
        "exit_code": exit_code,
    }
