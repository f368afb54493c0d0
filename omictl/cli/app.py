"""The ``omictl`` command: global options, sub-command groups, and the one error boundary.

Commands are thin: parse, call one library/workflow function, render. Heavy imports
(httpx, the sandbox) happen inside the commands that need them, so ``omictl --version``
and ``omictl keys list`` start fast.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from omictl import __version__
from omictl.cli import output
from omictl.cli.output import Output, is_terminal, render_error
from omictl.config import Settings, resolve_settings
from omictl.errors import ExitCode, Interrupted, OmictlError, UsageError, refused_path

app = typer.Typer(
    name="omictl",
    help=(
        "Decommission OMI Domain Services with your master key: the provider wipes the "
        "tenant and signs a receipt, then the App Registry revokes the binding.\n\n"
        "Start with:  omictl demo"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,  # locals can hold key seeds (STYLE.md 2)
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass
class Invocation:
    """What every command gets from the global options."""

    settings: Settings
    out: Output


_json_mode_for_errors = False
_debug = False


def get_invocation(ctx: typer.Context) -> Invocation:
    """The :class:`Invocation` built by the global callback."""
    obj = ctx.find_root().obj
    if not isinstance(obj, Invocation):  # pragma: no cover - wiring bug
        raise OmictlError("internal: global options were not parsed")
    return obj


def _version(value: bool) -> None:
    if value:
        if _json_mode_for_errors:  # -o json (flag or OMICTL_OUTPUT): one JSON document
            output.write_json({"version": __version__}, sys.stdout)
        else:
            print(f"omictl {__version__}")
        raise typer.Exit(0)


@app.callback()
def main_callback(
    ctx: typer.Context,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            metavar="NAME",
            help="Config profile to use [env: OMICTL_PROFILE].",
            show_default=False,
        ),
    ] = None,
    registry: Annotated[
        str | None,
        typer.Option(
            "--registry",
            metavar="URL",
            help="Registry base URL [env: OMICTL_REGISTRY]; "
            "else the profile's; else derived from the AppID.",
            show_default=False,
        ),
    ] = None,
    home: Annotated[
        str | None,
        typer.Option(
            "--home",
            metavar="DIR",
            help="One folder for keys, state, receipts and config [env: OMICTL_HOME].",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="text|json",
            help="text or json [env: OMICTL_OUTPUT]. json: exactly one JSON document on stdout.",
            show_default=False,
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Global options."""
    global _json_mode_for_errors, _debug
    _debug = debug
    if output is not None and output not in ("text", "json"):
        raise UsageError(f"--output must be 'text' or 'json', not {output!r}")
    _json_mode_for_errors = (output or os.environ.get("OMICTL_OUTPUT")) == "json"
    options: dict[str, Any] = dict(
        home=home, profile=profile, registry=registry, output=output, debug=debug
    )
    try:
        settings = resolve_settings(
            **options,
            # `config set` is how a new profile comes to exist, and how a bad value is
            # repaired
            allow_missing_profile=ctx.invoked_subcommand == "config",
            lenient=ctx.invoked_subcommand == "config",
        )
    except UsageError:
        if not _json_mode_for_errors:  # a profile's `output = "json"` still gets its document
            with contextlib.suppress(OmictlError):
                lenient = resolve_settings(**options, allow_missing_profile=True, lenient=True)
                _json_mode_for_errors = lenient.output == "json"
        raise
    _json_mode_for_errors = settings.output == "json"
    ctx.obj = Invocation(
        settings=settings, out=Output(json_mode=_json_mode_for_errors, debug=debug)
    )


#: Sub-commands in help order: name -> (module, attribute, kind). Registered lazily, so a
#: run imports only the command module it needs (start-up time; see
#: tests/benchmarks/startup.py); ``--help`` and unknown names register them all.
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "decommission": ("omictl.cli.decommission", "decommission_command", "command"),
    "status": ("omictl.cli.status", "status_command", "command"),
    "keys": ("omictl.cli.keys", "app", "group"),
    "receipts": ("omictl.cli.receipts", "app", "group"),
    "registry": ("omictl.cli.registry", "app", "group"),
    "config": ("omictl.cli.config_cmd", "app", "group"),
    "sandbox": ("omictl.cli.sandbox", "sandbox", "command"),
    "demo": ("omictl.cli.demo", "demo_command", "command"),
}
_registered: set[str] = set()
#: Global options that take a value, to find the sub-command name in argv.
_VALUE_OPTIONS = {"--profile", "--registry", "--home", "--output", "-o"}


def _command_index(args: list[str]) -> int | None:
    """Where the sub-command's name is in ``args`` (after the global options), or None."""
    skip = False
    for index, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg == "--":
            return None
        if arg.startswith("-"):
            skip = arg in _VALUE_OPTIONS
            continue
        return index
    return None


def _command_name(args: list[str]) -> str | None:
    index = _command_index(args)
    return None if index is None else args[index]


def _register(args: list[str] | None = None) -> None:
    """Register the sub-command named in ``args`` (or all of them) on the Typer app."""
    import importlib

    name = _command_name(args) if args is not None else None
    names = [name] if name in _COMMANDS else list(_COMMANDS)
    for command in names:
        if command in _registered:
            continue
        module_name, attr, kind = _COMMANDS[command]
        target = getattr(importlib.import_module(module_name), attr)
        if kind == "group":
            app.add_typer(target, name=command)
        else:
            helptext = getattr(importlib.import_module(module_name), "HELP", None)
            app.command(command, help=helptext)(target)
        _registered.add(command)
    # keep the help listing in a stable order, whatever was registered first
    order = list(_COMMANDS)
    app.registered_commands.sort(key=lambda c: order.index(c.name or ""))
    app.registered_groups.sort(key=lambda g: order.index(g.name or ""))


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return the exit status; the single error boundary (STYLE.md 1).

    Click's own usage errors (an unknown option, a missing argument, a bad value) are
    rendered here like every :class:`OmictlError`: ``omictl: error: ...`` and a ``hint:``
    on stderr, or one JSON error document with ``-o json``, exit 2. Anything else is
    reported as a bug.
    """
    global _json_mode_for_errors, _debug
    args = sys.argv[1:] if argv is None else argv
    _json_mode_for_errors = _wants_json(args)
    _debug = False
    output.document_written = False
    click_error, click_abort = _click_exceptions()
    try:
        _register(args)
        from omictl.cli.common import interrupt_on_signals

        try:
            with interrupt_on_signals() as caught:
                status = app(args=args, prog_name="omictl", standalone_mode=False)
            if caught.interrupt is not None and not caught.interrupt.answered:
                raise caught.interrupt  # Typer made it a quiet exit 130: report it
        except click_error as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # a group without its command
                exc.show()  # type: ignore[attr-defined]  # the group's help, on stderr
                if _json_mode_for_errors:  # scripts still get their one document
                    command = getattr(getattr(exc, "ctx", None), "command_path", "omictl")
                    output.write_json(
                        {
                            "error": UsageError(
                                f"{command} needs a sub-command",
                                hint=f"see '{command} --help'",
                            ).to_json()
                        },
                        sys.stdout,
                    )
                return int(getattr(exc, "exit_code", ExitCode.USAGE))
            raise _from_click(exc, args) from None
        except click_abort:
            print("omictl: aborted", file=sys.stderr)
            return int(ExitCode.ABORTED)
        return status if isinstance(status, int) else 0
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):  # Click's usage errors no longer come this way (above)
            return code
        print(code, file=sys.stderr)
        return int(ExitCode.INTERNAL)
    except OmictlError as exc:
        if _debug:
            traceback.print_exc()
        render_error(exc, json_mode=_json_mode_for_errors)
        return int(exc.exit_code)
    except KeyboardInterrupt as exc:  # a SignalInterrupt, or Ctrl-C outside the handlers
        if is_terminal(sys.stderr):
            print(file=sys.stderr)  # off the line a prompt or progress left open
        error = Interrupted.of(exc, hint=_interrupt_hint(_command_name(args)))
        partial = getattr(exc, "partial", None)
        if isinstance(partial, dict) and isinstance(partial.get("error"), dict):
            # a command may have set another hint after the result was built (omictl demo)
            partial["error"]["hint"] = error.hint
        if partial is not None and _json_mode_for_errors and not output.document_written:
            # as for any failed decommission: its result (status ABORTED) is the document
            render_error(error, json_mode=False)
            output.write_json(partial, sys.stdout)
        else:
            render_error(error, json_mode=_json_mode_for_errors)
        return int(error.exit_code)
    except Exception as exc:  # the boundary: a bug, not an expected failure
        if _debug:
            traceback.print_exc()
        usage = refused_path(exc)
        if usage is not None:
            # a path the system refuses before omictl's own checks can; any other OSError
            # that escapes (EIO, EMFILE, ...) stays a bug (exit 1)
            render_error(usage, json_mode=_json_mode_for_errors)
            return int(usage.exit_code)
        render_error(
            OmictlError(
                f"internal error: {type(exc).__name__}",
                hint="this is a bug in omictl; re-run with --debug and report the traceback",
            ),
            json_mode=_json_mode_for_errors,
        )
        return int(ExitCode.INTERNAL)
    return 0


def _interrupt_hint(command: str | None) -> str:
    """What to do after an interrupt that came before (or outside) the command's own
    handling: only a decommission has a journal to resume from."""
    if command == "decommission":
        return Interrupted.RESUME_HINT
    if command == "demo":
        return "`omictl demo` starts afresh (its sandbox and temporary home are gone)"
    return "re-run the same command"


def _click_exceptions() -> tuple[type[Exception], type[BaseException]]:
    """Click's ClickException (from the Click Typer carries: vendored in recent Typers,
    the separate package in older ones) and Typer's Abort."""
    import importlib

    try:
        module = importlib.import_module("typer._click.exceptions")
    except ImportError:  # pragma: no cover - a Typer that depends on Click
        module = importlib.import_module("click.exceptions")
    click_error: type[Exception] = module.ClickException
    return click_error, typer.Abort


def _from_click(exc: Exception, args: list[str]) -> OmictlError:
    """A Click usage error as omictl's own (exit 2 for usage, as Click has it)."""
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    ctx = getattr(exc, "ctx", None)
    command = getattr(ctx, "command_path", "") or "omictl"
    misplaced = _misplaced_global(args)
    hint = (
        f"{misplaced} is a global option: put it before the sub-command, "
        "e.g. omictl -o json decommission APP_ID --all --yes"
        if misplaced
        else f"see '{command} --help'"
    )
    error = UsageError(message[:1].lower() + message[1:], hint=hint)
    error.exit_code = ExitCode(getattr(exc, "exit_code", ExitCode.USAGE))
    return error


_GLOBAL_OPTIONS = (*_VALUE_OPTIONS, "--debug")


def _misplaced_global(args: list[str]) -> str | None:
    """The first global option given after the sub-command's name (where Click does not
    know it), or None. Sub-commands define none of these names; only exact spellings
    count (``-o``, ``-ojson``, ``-otext``, ``--output[=...]``, ``--registry[=...]``, ...), so
    an option value that merely starts with ``-o`` is not taken for one."""
    index = _command_index(args)
    if index is None:
        return None
    after = args[index + 1 :]
    for arg in after[: after.index("--")] if "--" in after else after:
        option = arg.split("=", 1)[0] if arg.startswith("--") else arg
        if option in _GLOBAL_OPTIONS:
            return option
        if arg in ("-ojson", "-otext"):
            return "-o"
    return None


def _wants_json(args: list[str]) -> bool:
    """Whether this run asked for ``-o json`` (read before Click parses, so that even its
    own usage errors can be answered with a JSON document)."""
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg in ("-o", "--output") and i + 1 < len(args):
            return args[i + 1] == "json"
        if arg in ("-ojson", "--output=json"):
            return True
        if arg.startswith(("-o", "--output=")) and arg not in ("-o", "--output"):
            return False
    return os.environ.get("OMICTL_OUTPUT") == "json"


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())
